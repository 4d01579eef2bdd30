//! [`SummaryWriter`]: TensorBoard event files, as PyTorch's
//! `torch.utils.tensorboard.SummaryWriter` writes them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use web_time::{Instant, SystemTime};

use prost::Message;
use wgrad_autograd::Tensor;

use super::proto::*;
use super::record::write_record;
use crate::train::png_image::write_png;
use crate::train::EpochRecord;

/// How long written events may wait in the buffer before they reach the
/// file (a live `tensorboard --logdir` sees a run this late at most).
const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// A hyperparameter's value for [`SummaryWriter::add_hparams`].
#[derive(Clone, Debug, PartialEq)]
pub enum HParam {
    /// A number (learning rate, batch size).
    Number(f64),
    /// A name (optimizer, model).
    Text(String),
    /// A switch (AMP on or off).
    Bool(bool),
}

impl From<f64> for HParam {
    fn from(v: f64) -> Self {
        HParam::Number(v)
    }
}

impl From<&str> for HParam {
    fn from(v: &str) -> Self {
        HParam::Text(v.to_string())
    }
}

impl From<bool> for HParam {
    fn from(v: bool) -> Self {
        HParam::Bool(v)
    }
}

/// Writes TensorBoard summaries into an event file of its own in a log
/// folder (`events.out.tfevents.<time>.<host>.<pid>.<n>`), read by
/// `tensorboard --logdir` (each folder below it is a run).
///
/// Events are buffered and reach the file at least every two seconds and
/// on [`flush`](Self::flush) or drop, so a live TensorBoard shows a run in
/// progress; a process killed mid-write leaves a file whose readers skip
/// only the record cut short. Steps are the caller's: a resumed run that
/// continues its step count continues the same curves, in a new file of
/// the same folder.
///
/// ```
/// use wgrad_nn::train::tensorboard::SummaryWriter;
/// let dir = std::env::temp_dir().join(format!("wgrad-doc-tb-{}", std::process::id()));
/// let mut tb = SummaryWriter::new(&dir).unwrap();
/// for step in 0..3 {
///     tb.add_scalar("loss/train", 1.0 / (step + 1) as f64, step).unwrap();
/// }
/// tb.add_text("notes", "a first run", 0).unwrap();
/// tb.flush().unwrap();
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub struct SummaryWriter {
    dir: PathBuf,
    path: PathBuf,
    out: BufWriter<File>,
    flushed: Instant,
    /// `add_scalars`' writers, one subfolder per series.
    series: BTreeMap<String, SummaryWriter>,
}

impl SummaryWriter {
    /// A writer of a new event file in `dir` (created when missing).
    pub fn new(dir: impl AsRef<Path>) -> io::Result<SummaryWriter> {
        static FILES: AtomicU64 = AtomicU64::new(0);
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let name = format!(
            "events.out.tfevents.{}.{}.{}.{}",
            now().floor() as u64,
            host_name(),
            std::process::id(),
            FILES.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let out = BufWriter::new(File::create(&path)?);
        let mut w = SummaryWriter { dir, path, out, flushed: Instant::now(), series: BTreeMap::new() };
        w.write(Event { wall_time: now(), step: 0, what: Some(What::FileVersion("brain.Event:2".into())) })?;
        w.flush()?;
        Ok(w)
    }

    /// The folder it writes into.
    pub fn log_dir(&self) -> &Path {
        &self.dir
    }

    /// The event file it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A scalar at `step` (a point of the chart `tag`).
    pub fn add_scalar(&mut self, tag: &str, value: f64, step: u64) -> io::Result<()> {
        self.add(step, value_of(tag, None, Kind::SimpleValue(value as f32)))
    }

    /// Several scalars in one chart `main_tag`, one line each: as PyTorch,
    /// each series is written to a subfolder `<main_tag>_<name>` (a run of
    /// its own to TensorBoard) under the tag `main_tag`.
    pub fn add_scalars(&mut self, main_tag: &str, values: &[(&str, f64)], step: u64) -> io::Result<()> {
        for (name, v) in values {
            let folder = format!("{}_{}", main_tag.replace('/', "_"), name);
            let w = match self.series.entry(folder) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let w = SummaryWriter::new(self.dir.join(e.key()))?;
                    e.insert(w)
                }
            };
            w.add_scalar(main_tag, *v, step)?;
        }
        Ok(())
    }

    /// A histogram of `values` (30 equal buckets between their smallest and
    /// largest; NaN and infinite values are left out).
    pub fn add_histogram(&mut self, tag: &str, values: &[f32], step: u64) -> io::Result<()> {
        self.add(step, value_of(tag, None, Kind::Histo(histogram(values, 30))))
    }

    /// A histogram of a tensor's values (a parameter, its gradient).
    pub fn add_histogram_tensor(&mut self, tag: &str, t: &Tensor, step: u64) -> io::Result<()> {
        self.add_histogram(tag, &t.to_vec(), step)
    }

    /// An image: a `[C, H, W]` tensor (C = 1 grey or 3 RGB) with values in
    /// [0, 1], stored as PNG.
    ///
    /// # Errors
    /// `InvalidInput` for another shape.
    pub fn add_image(&mut self, tag: &str, image: &Tensor, step: u64) -> io::Result<()> {
        let shape = image.shape();
        let [c, h, w] = shape[..] else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("add_image: shape {shape:?} is not [C, H, W]"),
            ));
        };
        if c != 1 && c != 3 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("add_image: {c} channels, not 1 or 3")));
        }
        let v = image.to_vec();
        let mut pixels = vec![0u8; c * h * w];
        for (i, px) in pixels.iter_mut().enumerate() {
            let (y, x, ch) = (i / (w * c), i / c % w, i % c);
            *px = (v[(ch * h + y) * w + x].clamp(0.0, 1.0) * 255.0).round() as u8;
        }
        let mut png = Vec::new();
        write_png(&mut png, &pixels, (w as u32, h as u32), c)?;
        let img = Image { height: h as i32, width: w as i32, colorspace: c as i32, encoded_image_string: png };
        self.add(step, value_of(tag, None, Kind::Image(img)))
    }

    /// Text (Markdown), shown by TensorBoard's Text tab.
    pub fn add_text(&mut self, tag: &str, text: &str, step: u64) -> io::Result<()> {
        let tensor = TensorProto {
            dtype: 7,
            tensor_shape: Some(TensorShapeProto { dim: vec![Dim { size: 1 }] }),
            string_val: vec![text.as_bytes().to_vec()],
        };
        let meta = plugin("text", Vec::new());
        self.add(step, value_of(&format!("{tag}/text_summary"), Some(meta), Kind::Tensor(tensor)))
    }

    /// The run's hyperparameters and its final metrics, for TensorBoard's
    /// HParams tab (which compares runs by them): the metrics are written
    /// as scalars too, under their own tags.
    pub fn add_hparams(&mut self, hparams: &[(&str, HParam)], metrics: &[(&str, f64)]) -> io::Result<()> {
        let started = now();
        let infos = hparams
            .iter()
            .map(|(name, v)| {
                let r#type = match v {
                    HParam::Text(_) => 1,
                    HParam::Bool(_) => 2,
                    HParam::Number(_) => 3,
                };
                HParamInfo { name: name.to_string(), r#type }
            })
            .collect();
        let metric_infos = metrics
            .iter()
            .map(|(tag, _)| MetricInfo { name: Some(MetricName { group: String::new(), tag: tag.to_string() }) })
            .collect();
        let experiment = Experiment { time_created_secs: started, hparam_infos: infos, metric_infos };
        let values = hparams
            .iter()
            .map(|(name, v)| {
                let kind = match v {
                    HParam::Number(x) => ProtoKind::NumberValue(*x),
                    HParam::Text(s) => ProtoKind::StringValue(s.clone()),
                    HParam::Bool(b) => ProtoKind::BoolValue(*b),
                };
                (name.to_string(), ProtoValue { kind: Some(kind) })
            })
            .collect();
        let start = SessionStartInfo { hparams: values, start_time_secs: started };
        let end = SessionEndInfo { status: 1, end_time_secs: now() };
        for (tag, data) in [
            ("_hparams_/experiment", HParamsData::Experiment(experiment)),
            ("_hparams_/session_start_info", HParamsData::SessionStartInfo(start)),
            ("_hparams_/session_end_info", HParamsData::SessionEndInfo(end)),
        ] {
            let content = HParamsPluginData { version: 0, data: Some(data) }.encode_to_vec();
            let value = Value { tag: tag.into(), metadata: Some(plugin("hparams", content)), value: None };
            self.add(0, value)?;
        }
        for (tag, v) in metrics {
            self.add_scalar(tag, *v, 0)?;
        }
        Ok(())
    }

    /// Marks a restart at `step` (a run resumed from `checkpoint`, taken
    /// after step `step - 1`): TensorBoard drops the points at `step` or
    /// later that earlier files of the folder hold, the orphans a killed
    /// run wrote after its last checkpoint, so the resumed curves have each
    /// step once.
    pub fn add_restart(&mut self, step: u64, checkpoint: &Path) -> io::Result<()> {
        let log = SessionLog { status: 1, checkpoint_path: checkpoint.display().to_string(), msg: "resumed".into() };
        self.write(Event { wall_time: now(), step: step as i64, what: Some(What::SessionLog(log)) })?;
        self.flush()
    }

    /// An epoch's record as scalars at `step` (the Trainer's: optimizer
    /// steps so far): `loss/train`, `loss/val`, `accuracy/train`,
    /// `accuracy/val`, `lr`, `metrics/<name>` (what was measured) and
    /// `epoch`, then a flush.
    pub fn add_epoch_record(&mut self, record: &EpochRecord, step: u64) -> io::Result<()> {
        self.add_scalar("epoch", record.epoch as f64, step)?;
        let fixed = [
            ("loss/train", Some(record.train_loss)),
            ("loss/val", record.val_loss),
            ("accuracy/train", record.train_acc),
            ("accuracy/val", record.val_acc),
            ("lr", Some(record.lr)),
        ];
        for (tag, v) in fixed {
            if let Some(v) = v {
                self.add_scalar(tag, v, step)?;
            }
        }
        for (name, v) in &record.metrics {
            self.add_scalar(&format!("metrics/{name}"), *v, step)?;
        }
        self.flush()
    }

    /// Writes buffered events to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.flushed = Instant::now();
        self.out.flush()?;
        self.series.values_mut().try_for_each(SummaryWriter::flush)
    }

    fn add(&mut self, step: u64, value: Value) -> io::Result<()> {
        let summary = Summary { value: vec![value] };
        self.write(Event { wall_time: now(), step: step as i64, what: Some(What::Summary(summary)) })?;
        if self.flushed.elapsed() >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    fn write(&mut self, event: Event) -> io::Result<()> {
        write_record(&mut self.out, &event.encode_to_vec())
    }
}

impl Drop for SummaryWriter {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

fn value_of(tag: &str, metadata: Option<SummaryMetadata>, kind: Kind) -> Value {
    Value { tag: tag.to_string(), metadata, value: Some(kind) }
}

fn plugin(name: &str, content: Vec<u8>) -> SummaryMetadata {
    SummaryMetadata { plugin_data: Some(PluginData { plugin_name: name.into(), content }) }
}

fn now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn host_name() -> String {
    let name = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    let name: String = name.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// `bins` equal buckets over the finite values' range.
fn histogram(values: &[f32], bins: usize) -> HistogramProto {
    let finite: Vec<f64> = values.iter().filter(|v| v.is_finite()).map(|&v| f64::from(v)).collect();
    if finite.is_empty() {
        return HistogramProto {
            min: 0.0,
            max: 0.0,
            num: 0.0,
            sum: 0.0,
            sum_squares: 0.0,
            bucket_limit: vec![],
            bucket: vec![],
        };
    }
    let (min, max) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let bins = if max > min { bins } else { 1 };
    let width = (max - min) / bins as f64;
    let mut bucket = vec![0.0; bins];
    for &v in &finite {
        let i = if width > 0.0 { (((v - min) / width) as usize).min(bins - 1) } else { 0 };
        bucket[i] += 1.0;
    }
    let bucket_limit = (1..=bins).map(|i| if i == bins { max } else { min + width * i as f64 }).collect();
    HistogramProto {
        min,
        max,
        num: finite.len() as f64,
        sum: finite.iter().sum(),
        sum_squares: finite.iter().map(|v| v * v).sum(),
        bucket_limit,
        bucket,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_count_every_finite_value() {
        let h = histogram(&[0.0, 1.0, 2.0, 3.0, f32::NAN, 3.0], 3);
        assert_eq!((h.min, h.max, h.num), (0.0, 3.0, 5.0));
        assert_eq!(h.bucket, vec![1.0, 1.0, 3.0]);
        assert_eq!(h.bucket_limit, vec![1.0, 2.0, 3.0]);
        assert_eq!(histogram(&[2.0, 2.0], 30).bucket, vec![2.0]);
        assert_eq!(histogram(&[], 30).num, 0.0);
    }
}
