//! [`History`]: one [`EpochRecord`] per epoch, saved as CSV (and loaded back
//! to resume) and drawn as one PNG of loss and accuracy curves.
//!
//! The PNG is drawn by `plotters` into an in-memory RGB buffer and encoded
//! with the `png` crate, so no system library is involved: text uses an
//! embedded subset of the DejaVu Sans font (Basic Latin plus a few symbols;
//! Bitstream Vera / DejaVu licence, see `crates/nn/assets/DejaVuSans-LICENSE.txt`)
//! rendered by `ab_glyph`, not fontconfig/freetype.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One epoch's results. Accuracies are fractions in `[0, 1]`; the optional
/// fields are `None` when not measured (no validation set, a regression task).
#[derive(Clone, Debug, PartialEq)]
pub struct EpochRecord {
    /// The epoch, counted from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training accuracy.
    pub train_acc: Option<f64>,
    /// Validation loss.
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_acc: Option<f64>,
    /// Learning rate used in the epoch (of the first parameter group).
    pub lr: f64,
    /// Further training metrics by name ([`Trainer::metric`](super::Trainer::metric)),
    /// in the order they were added; written as extra CSV columns.
    pub metrics: Vec<(String, f64)>,
}

impl EpochRecord {
    /// The value of metric `name` in [`metrics`](Self::metrics), if recorded.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }
}

/// The CSV columns, in the order written.
pub const CSV_HEADER: [&str; 6] = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"];

/// Per-epoch records of a run, in epoch order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// The records, one per epoch.
    pub records: Vec<EpochRecord>,
}

fn invalid(line: usize, msg: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("history CSV line {line}: {msg}"))
}

fn opt_cell(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an epoch's record.
    pub fn push(&mut self, record: EpochRecord) {
        self.records.push(record);
    }

    /// Number of epochs recorded.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True before the first epoch.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The latest record.
    pub fn last(&self) -> Option<&EpochRecord> {
        self.records.last()
    }

    /// The record with the lowest finite validation loss (the earliest on
    /// ties), or `None` when no validation loss was recorded.
    pub fn best_epoch(&self) -> Option<&EpochRecord> {
        self.records.iter().filter(|r| r.val_loss.is_some_and(f64::is_finite)).fold(
            None,
            |best: Option<&EpochRecord>, r| match best {
                Some(b) if b.val_loss <= r.val_loss => Some(b),
                _ => Some(r),
            },
        )
    }

    /// Drops the records after `epoch` (resuming from a checkpoint saved then,
    /// when the CSV was written later than the checkpoint).
    pub fn truncate_to_epoch(&mut self, epoch: usize) {
        self.records.retain(|r| r.epoch <= epoch);
    }

    /// The names of the further metrics any record holds, in order of
    /// first appearance.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (n, _) in self.records.iter().flat_map(|r| &r.metrics) {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        names
    }

    /// The CSV text: a header line ([`CSV_HEADER`], then one column per
    /// further metric), then one line per epoch. Floats are written in
    /// Rust's shortest round-trip form, so loading gives back the same
    /// numbers; missing values are empty cells.
    pub fn to_csv(&self) -> String {
        let extra = self.metric_names();
        let mut s = CSV_HEADER.iter().copied().chain(extra.iter().map(String::as_str)).collect::<Vec<_>>().join(",");
        s.push('\n');
        for r in &self.records {
            let _ = write!(
                s,
                "{},{},{},{},{},{}",
                r.epoch,
                r.train_loss,
                opt_cell(r.train_acc),
                opt_cell(r.val_loss),
                opt_cell(r.val_acc),
                r.lr
            );
            for name in &extra {
                let _ = write!(s, ",{}", opt_cell(r.metric(name)));
            }
            s.push('\n');
        }
        s
    }

    /// Parses CSV text written by [`to_csv`](Self::to_csv). Columns are found
    /// by header name, so their order may differ; `epoch`, `train_loss` and
    /// `lr` are required, and the numbers in columns beyond [`CSV_HEADER`]
    /// are read as further metrics (other cells, empty or not numbers, are
    /// not recorded that epoch).
    pub fn from_csv(text: &str) -> io::Result<History> {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| invalid(1, "empty file (no header)"))?;
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        let col = |name: &str| names.iter().position(|n| *n == name);
        let required =
            |name: &str| col(name).ok_or_else(|| invalid(1, format!("no `{name}` column in header `{header}`")));
        let (c_epoch, c_train_loss, c_lr) = (required("epoch")?, required("train_loss")?, required("lr")?);
        let (c_train_acc, c_val_loss, c_val_acc) = (col("train_acc"), col("val_loss"), col("val_acc"));

        let mut history = History::new();
        for (i, line) in lines {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            if cells.len() != names.len() {
                return Err(invalid(i + 1, format!("{} cells for {} columns", cells.len(), names.len())));
            }
            let float = |c: usize| -> io::Result<f64> {
                cells[c].parse().map_err(|e| invalid(i + 1, format!("`{}` in column `{}`: {e}", cells[c], names[c])))
            };
            let optional = |c: Option<usize>| -> io::Result<Option<f64>> {
                match c {
                    Some(c) if !cells[c].is_empty() => float(c).map(Some),
                    _ => Ok(None),
                }
            };
            history.push(EpochRecord {
                epoch: cells[c_epoch]
                    .parse()
                    .map_err(|e| invalid(i + 1, format!("epoch `{}`: {e}", cells[c_epoch])))?,
                train_loss: float(c_train_loss)?,
                train_acc: optional(c_train_acc)?,
                val_loss: optional(c_val_loss)?,
                val_acc: optional(c_val_acc)?,
                lr: float(c_lr)?,
                metrics: (0..names.len())
                    .filter(|&c| !CSV_HEADER.contains(&names[c]))
                    .filter_map(|c| Some((names[c].to_string(), cells[c].parse().ok()?)))
                    .collect(),
            });
        }
        Ok(history)
    }

    /// Writes [`to_csv`](Self::to_csv) to `path`.
    pub fn save_csv(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, self.to_csv())
    }

    /// Reads a history written by [`save_csv`](Self::save_csv).
    pub fn load_csv(path: impl AsRef<Path>) -> io::Result<History> {
        Self::from_csv(&std::fs::read_to_string(path)?)
    }

    /// Draws the curves into an RGB8 image of `width × height` pixels (row
    /// major, 3 bytes a pixel): loss vs epoch on the left, accuracy (in %)
    /// on the right, train and validation curves in each, the best epoch
    /// (lowest validation loss) marked by a dashed line and a ring.
    pub fn render_rgb(&self, width: u32, height: u32) -> io::Result<Vec<u8>> {
        if self.records.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "history: no epochs to plot"));
        }
        if width < 200 || height < 150 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("history: a {width}x{height} plot is too small (at least 200x150)"),
            ));
        }
        let family = font_family()?;
        let mut buf = vec![0u8; width as usize * height as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let panels = root.split_evenly((1, 2));
            let best = self.best_epoch();
            let loss = |f: fn(&EpochRecord) -> Option<f64>| self.series(f);
            let pct = |f: fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
                self.series(f).into_iter().map(|(x, y)| (x, 100.0 * y)).collect()
            };
            let loss_best = best.map(|b| (b.epoch as f64, b.val_loss.unwrap_or(f64::NAN)));
            let acc_best = best.and_then(|b| b.val_acc.map(|a| (b.epoch as f64, 100.0 * a)));
            let best_label = best
                .map(|b| (b.epoch, format!("best epoch {} (val loss {:.4})", b.epoch, b.val_loss.unwrap_or(f64::NAN))));
            self.panel(
                &panels[0],
                Panel {
                    family,
                    title: "Loss",
                    y_desc: "loss",
                    empty_range: (0.0, 1.0),
                    legend: SeriesLabelPosition::UpperRight,
                },
                &loss(|r| Some(r.train_loss)),
                &loss(|r| r.val_loss),
                best_label.clone(),
                loss_best,
            )?;
            // Accuracy curves rise, so the legend goes where they are not: low.
            self.panel(
                &panels[1],
                Panel {
                    family,
                    title: "Accuracy",
                    y_desc: "accuracy (%)",
                    empty_range: (0.0, 100.0),
                    legend: SeriesLabelPosition::LowerRight,
                },
                &pct(|r| r.train_acc),
                &pct(|r| r.val_acc),
                best_label,
                acc_best,
            )?;
            root.present().map_err(plot_err)?;
        }
        Ok(buf)
    }

    /// Writes [`render_rgb`](Self::render_rgb) to `path` as a PNG.
    pub fn save_png(&self, path: impl AsRef<Path>, width: u32, height: u32) -> io::Result<()> {
        let rgb = self.render_rgb(width, height)?;
        let file = io::BufWriter::new(std::fs::File::create(path)?);
        super::png_image::write_png(file, &rgb, (width, height), 3)
    }

    /// `(epoch, value)` points with a finite value.
    fn series(&self, f: fn(&EpochRecord) -> Option<f64>) -> Vec<(f64, f64)> {
        self.records.iter().filter_map(|r| f(r).filter(|v| v.is_finite()).map(|v| (r.epoch as f64, v))).collect()
    }

    fn panel(
        &self,
        area: &DrawingArea<BitMapBackend<'_>, Shift>,
        panel: Panel,
        train: &[(f64, f64)],
        val: &[(f64, f64)],
        best: Option<(usize, String)>,
        best_point: Option<(f64, f64)>,
    ) -> io::Result<()> {
        let Panel { family, title, y_desc, empty_range, legend } = panel;
        let font = |size: u32| (family, size).into_font();
        let first = self.records.iter().map(|r| r.epoch).min().unwrap_or(1) as f64;
        let last = self.records.iter().map(|r| r.epoch).max().unwrap_or(1) as f64;
        // A little room on both sides so the end markers are not cut by the axes.
        let pad = ((last - first) * 0.03).max(0.25);
        let (x0, x1) = if last > first { (first - pad, last + pad) } else { (first - 0.5, first + 0.5) };
        let ys = train.iter().chain(val).map(|p| p.1);
        let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| (lo.min(y), hi.max(y)));
        let (y0, y1) = if !lo.is_finite() {
            empty_range
        } else {
            let pad = if hi > lo { 0.06 * (hi - lo) } else { 0.5 * lo.abs().max(1e-3) };
            (lo - pad, hi + pad)
        };

        let mut chart = ChartBuilder::on(area)
            .caption(title, font(22))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        let max_x_labels = ((last - first) as usize + 1).min(10);
        let y_decimals = tick_decimals((y1 - y0) / 8.0);
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(y_desc)
            .x_labels(max_x_labels)
            .y_labels(8)
            // Epochs are whole numbers; ticks between them stay unlabelled.
            .x_label_formatter(&|x| if x.fract() == 0.0 { format!("{x}") } else { String::new() })
            .y_label_formatter(&|y| format_tick(*y, y_decimals))
            .label_style(font(14))
            .axis_desc_style(font(16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_err)?;

        if train.is_empty() && val.is_empty() {
            let centred = TextStyle::from(font(16)).pos(Pos::new(HPos::Center, VPos::Center));
            chart
                .draw_series(std::iter::once(Text::new("no data", ((x0 + x1) / 2.0, (y0 + y1) / 2.0), centred)))
                .map_err(plot_err)?;
            return Ok(());
        }
        let train_color = RGBColor(31, 119, 180);
        let val_color = RGBColor(255, 127, 14);
        for (points, color, name) in [(train, train_color, "train"), (val, val_color, "validation")] {
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                .map_err(plot_err)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            if points.len() <= 60 {
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(plot_err)?;
            }
        }
        if let Some((epoch, label)) = best {
            let x = epoch as f64;
            let marker = RGBColor(44, 160, 44);
            chart
                .draw_series(DashedLineSeries::new(vec![(x, y0), (x, y1)], 6, 4, marker.stroke_width(1)))
                .map_err(plot_err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], marker.stroke_width(1)));
            if let Some(p) = best_point.filter(|p| p.1.is_finite()) {
                chart.draw_series(std::iter::once(Circle::new(p, 7, marker.stroke_width(2)))).map_err(plot_err)?;
            }
        }
        chart
            .configure_series_labels()
            .label_font(font(14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .position(legend)
            .draw()
            .map_err(plot_err)?;
        Ok(())
    }
}

/// What differs between the two panels.
struct Panel {
    family: &'static str,
    title: &'static str,
    y_desc: &'static str,
    /// The y range when there is nothing to draw.
    empty_range: (f64, f64),
    legend: SeriesLabelPosition,
}

/// Decimals that tell ticks `step` apart (0 for steps of 1 or more).
fn tick_decimals(step: f64) -> usize {
    if step.is_finite() && step > 0.0 {
        (-step.log10().floor()).clamp(0.0, 6.0) as usize
    } else {
        3
    }
}

/// A tick label with just enough decimals; scientific for tiny or huge values.
fn format_tick(y: f64, decimals: usize) -> String {
    let a = y.abs();
    if a != 0.0 && !(1e-4..1e6).contains(&a) {
        format!("{y:.1e}")
    } else {
        format!("{y:.decimals$}")
    }
}

fn plot_err<E: std::error::Error + Send + Sync + 'static>(e: DrawingAreaErrorKind<E>) -> io::Error {
    io::Error::other(format!("history plot: {e}"))
}

/// The embedded font, registered once with plotters under a name of our own
/// (so a program's own `sans-serif` registration is left alone).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
const FONT_FAMILY: &str = "wgrad-dejavu-sans";

/// No curves in the browser: plotters draws text there through a canvas,
/// not the embedded font (and a page has no run folder to write to).
#[cfg(target_arch = "wasm32")]
fn font_family() -> io::Result<&'static str> {
    let _ = (FONT, FONT_FAMILY);
    Err(io::Error::other("history plot: PNG curves are not drawn on wasm32"))
}

#[cfg(not(target_arch = "wasm32"))]
fn font_family() -> io::Result<&'static str> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(FONT_FAMILY)
    } else {
        Err(io::Error::other("history plot: the embedded font does not parse"))
    }
}
