//! Fuzzing the checkpoint readers: `load_state_dict`, `load_module` and
//! `TrainingCheckpoint::load` followed by `restore` (model, optimizer, grad
//! scaler, scheduler), on damaged safetensors files and on random headers.
//!
//! Each case must end in `Ok` or in a [`CheckpointError`] that names the
//! file; never a panic, a hang or an allocation out of proportion to the
//! file. The tests after the properties keep the inputs that once broke a
//! reader.

// The damage strategies and guards are shared with wgrad-data's fuzz tests.
#[path = "../../../data/tests/main/common/fuzz.rs"]
mod fuzz;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use fuzz::{apply, assert_names, assert_proportionate, config, damage, guarded};
use proptest::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use wgrad_autograd::{Device, Generator, Tensor};
use wgrad_nn::amp::GradScaler;
use wgrad_nn::checkpoint::{
    load_module, load_state_dict, save_module, save_state_dict, CheckpointError, TrainingCheckpoint,
};
use wgrad_nn::optim::{Optimizer, Sgd, SgdOptions};
use wgrad_nn::schedule::{CosineAnnealingLR, LrScheduler};
use wgrad_nn::state::StateDict;
use wgrad_nn::*;

/// A fresh, empty folder for one case.
fn case_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz_checkpoint").join(format!("{tag}-{n}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mlp(dev: &Device) -> Sequential {
    let mut init = Init::new(dev, 3);
    Sequential::new().add(Linear::builder(4, 3).build(&mut init)).add(ReLU).add(Linear::builder(3, 2).build(&mut init))
}

fn optimizer(model: &Sequential) -> Sgd {
    Sgd::with_options(model.parameters(), 0.1, SgdOptions { momentum: 0.9, ..SgdOptions::default() })
}

/// The valid files the damage starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seed {
    /// `save_module` of [`mlp`]; read with `load_module`.
    Module,
    /// A state dict of every dtype wgrad writes, with metadata; read with `load_state_dict`.
    State,
    /// Dtypes only other writers use (BF16, F64, I64, I32), as PyTorch
    /// writes them; read with `load_state_dict`.
    Foreign,
    /// A training checkpoint of [`mlp`], SGD with momentum after one step, a
    /// grad scaler and a cosine schedule; read with `TrainingCheckpoint::load` and restored.
    Training,
}

/// Each seed's bytes, written once.
fn seed_bytes(seed: Seed) -> &'static [u8] {
    static FILES: OnceLock<Vec<(Seed, Vec<u8>)>> = OnceLock::new();
    let files = FILES.get_or_init(|| {
        let dir = case_dir("seeds");
        let dev = Device::cpu();
        let model = mlp(&dev);
        save_module(dir.join("module"), &model).unwrap();

        let mut s = StateDict::new();
        s.tensors.insert("a.weight".into(), Tensor::from_vec(&[1.5, -2.0, 0.25, 8.0, 0.0, -0.5], &[2, 3], &dev));
        let halves: Vec<half::f16> = [0.5f32, -2.0, 3.0].iter().map(|&x| half::f16::from_f32(x)).collect();
        s.tensors.insert("half".into(), Tensor::from_f16(&halves, &[3], &dev));
        s.tensors.insert("idx".into(), Tensor::from_u32(&[0, 7, u32::MAX, 1], &[2, 2], &dev));
        s.tensors.insert("scalar".into(), Tensor::scalar(42.0, &dev));
        s.meta.insert("format".into(), "pt".into());
        s.meta.insert("note".into(), "ünïcode".into());
        save_state_dict(dir.join("state"), &s).unwrap();

        let bf16: Vec<u8> = [1.0f32, -3.5].iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect();
        let f64s: Vec<u8> = [0.1f64, 2.0, -7.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let i64s: Vec<u8> = [5i64, -1].iter().flat_map(|x| x.to_le_bytes()).collect();
        let i32s: Vec<u8> = [9i32].iter().flat_map(|x| x.to_le_bytes()).collect();
        let views = [
            ("b", TensorView::new(Dtype::BF16, vec![2], &bf16).unwrap()),
            ("d", TensorView::new(Dtype::F64, vec![3, 1], &f64s).unwrap()),
            ("num_batches_tracked", TensorView::new(Dtype::I64, vec![2], &i64s).unwrap()),
            ("i", TensorView::new(Dtype::I32, vec![], &i32s).unwrap()),
        ];
        let foreign = safetensors::serialize(views, None).unwrap();

        let mut opt = optimizer(&model);
        let x = Tensor::from_vec(&[0.5; 8], &[2, 4], &dev);
        model.forward(&x).sum_all().backward();
        opt.step();
        let mut sched = CosineAnnealingLR::new(&mut opt, 10, 0.0);
        sched.step(&mut opt);
        let mut ck = TrainingCheckpoint::capture(&model, &opt).with_scaler(&GradScaler::new());
        ck.scheduler = sched.state_dict();
        ck.epoch = 2;
        ck.step = 17;
        ck.rng.insert("data".into(), Generator { seed: 11, offset: 4 });
        ck.metrics = r#"{"loss":[0.5]}"#.into();
        ck.save(dir.join("training")).unwrap();

        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        vec![
            (Seed::Module, read("module")),
            (Seed::State, read("state")),
            (Seed::Foreign, foreign),
            (Seed::Training, read("training")),
        ]
    });
    &files.iter().find(|(s, _)| *s == seed).unwrap().1
}

/// Reads `path` the way `seed`'s file is meant to be read, all the way to
/// restoring a model (and optimizer, scaler, schedule) from it.
fn read_as(seed: Seed, path: &Path) -> Result<(), CheckpointError> {
    let dev = Device::cpu();
    match seed {
        Seed::Module => {
            load_module(path, &mlp(&dev), false)?;
            load_module(path, &mlp(&dev), true).map(drop)
        }
        Seed::State | Seed::Foreign => load_state_dict(path, &dev).map(drop),
        Seed::Training => {
            let ck = TrainingCheckpoint::load(path, &dev)?;
            let model = mlp(&dev);
            let mut opt = optimizer(&model);
            ck.restore(&model, &mut opt)?;
            ck.restore_scaler(&mut GradScaler::new())?;
            let mut sched = CosineAnnealingLR::new(&mut opt, 10, 0.0);
            sched.load_state_dict(&ck.scheduler).map_err(|e| CheckpointError::State {
                context: format!("{}: restoring the schedule", path.display()),
                source: e,
            })?;
            // A restored run takes a step: what was loaded must be usable.
            model.forward(&Tensor::from_vec(&[0.5; 4], &[1, 4], &dev)).sum_all().backward();
            opt.step();
            sched.step(&mut opt);
            Ok(())
        }
    }
}

/// Reads `bytes` as `seed`'s file in a guarded thread and checks the outcome.
fn check_read(seed: Seed, bytes: &[u8]) {
    let dir = case_dir("case");
    let path = dir.join("checkpoint.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let p = path.clone();
    let (result, largest) = guarded(move || read_as(seed, &p));
    // F16/BF16 widen to f32 and I32 to i64 on the way to the device.
    assert_proportionate("checkpoint reader", largest, bytes.len(), 8);
    if let Err(e) = result {
        let msg = e.to_string();
        assert_names(&msg, &path);
        if let Some(p) = e.path() {
            assert_eq!(p, path, "{msg}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn any_seed() -> impl Strategy<Value = Seed> {
    prop::sample::select(vec![Seed::Module, Seed::State, Seed::Foreign, Seed::Training])
}

/// A tensor entry of a generated header.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    dtype: &'static str,
    shape: Vec<u64>,
    /// `None`: the offsets that follow the previous entry for this shape.
    offsets: Option<(u64, u64)>,
}

/// Dimensions: mostly small, sometimes edges that overflow products.
fn dim() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..4,
        1 => prop::sample::select(vec![1u64 << 31, 1 << 32, 1 << 40, 1 << 62, i64::MAX as u64, u64::MAX]),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    let names = vec!["0.weight", "0.bias", "2.weight", "model.0.weight", "optim.state.0.momentum_buffer", "x", ""];
    let dtypes =
        vec!["F32", "F16", "BF16", "U32", "I64", "I32", "F64", "BOOL", "U8", "I8", "F8_E4M3", "C64", "F4", "Q"];
    (
        prop::sample::select(names),
        prop::sample::select(dtypes),
        prop::collection::vec(dim(), 0..4),
        prop::option::weighted(0.2, (0u64..64, 0u64..64)),
    )
        .prop_map(|(name, dtype, shape, offsets)| Entry { name: name.to_string(), dtype, shape, offsets })
}

/// Metadata a training checkpoint or optimizer state reads, with values
/// that are right, out of range or not numbers.
fn metadata() -> impl Strategy<Value = Vec<(&'static str, &'static str)>> {
    let keys = vec![
        "wgrad.kind",
        "wgrad.version",
        "epoch",
        "step",
        "rng.data.seed",
        "rng.data.offset",
        "optim.kind",
        "optim.options.momentum",
        "optim.param_groups.0.lr",
        "optim.param_groups.0.params",
        "optim.state.0.step",
        "scaler.scale",
        "format",
    ];
    prop::collection::vec((prop::sample::select(keys), odd_value()), 0..8)
}

/// Metadata values: some right for some key, most wrong for every key.
fn odd_value() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "training_checkpoint",
        "1",
        "0",
        "SGD",
        "0,1,2,3",
        "-1",
        "-0.5",
        "NaN",
        "inf",
        "1e40",
        "18446744073709551615",
        "18446744073709551616",
        "9223372036854775807",
        "x",
        "",
    ])
}

/// A change to one entry of a valid training checkpoint's state.
#[derive(Clone, Debug)]
enum Edit {
    /// Set a metadata entry (picked among the existing ones) to a value.
    SetMeta(prop::sample::Index, &'static str),
    /// Remove a metadata entry.
    RemoveMeta(prop::sample::Index),
    /// Remove a tensor.
    RemoveTensor(prop::sample::Index),
    /// Replace a tensor with one of another shape.
    Reshape(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), odd_value()).prop_map(|(i, v)| Edit::SetMeta(i, v)),
        1 => any::<prop::sample::Index>().prop_map(Edit::RemoveMeta),
        1 => any::<prop::sample::Index>().prop_map(Edit::RemoveTensor),
        1 => any::<prop::sample::Index>().prop_map(Edit::Reshape),
    ]
}

/// The training seed's state changed by `change` and saved again: a
/// well-formed file whose values may be wrong.
fn rewritten_training_file(change: impl FnOnce(&mut StateDict)) -> Vec<u8> {
    let dir = case_dir("edit");
    let path = dir.join("training");
    std::fs::write(&path, seed_bytes(Seed::Training)).unwrap();
    let dev = Device::cpu();
    let mut s = load_state_dict(&path, &dev).unwrap();
    change(&mut s);
    save_state_dict(&path, &s).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    bytes
}

/// The training seed with `edits` applied to its entries.
fn edited_training_file(edits: &[Edit]) -> Vec<u8> {
    rewritten_training_file(|s| {
        let dev = Device::cpu();
        for e in edits {
            let meta_key = |i: &prop::sample::Index| s.meta.keys().nth(i.index(s.meta.len())).cloned();
            let tensor_key = |i: &prop::sample::Index| s.tensors.keys().nth(i.index(s.tensors.len())).cloned();
            match e {
                Edit::SetMeta(i, v) => {
                    if let Some(k) = meta_key(i) {
                        s.meta.insert(k, v.to_string());
                    }
                }
                Edit::RemoveMeta(i) => {
                    if let Some(k) = meta_key(i) {
                        s.meta.remove(&k);
                    }
                }
                Edit::RemoveTensor(i) => {
                    if let Some(k) = tensor_key(i) {
                        s.tensors.remove(&k);
                    }
                }
                Edit::Reshape(i) => {
                    if let Some(k) = tensor_key(i) {
                        s.tensors.insert(k, Tensor::from_vec(&[1.0, 2.0], &[2], &dev));
                    }
                }
            }
        }
    })
}

fn bytes_per_element(dtype: &str) -> u64 {
    match dtype {
        "F64" | "I64" | "C64" => 8,
        "F32" | "U32" | "I32" => 4,
        "F16" | "BF16" => 2,
        _ => 1,
    }
}

/// A file from generated parts: the header's JSON (tensors, metadata) and
/// `data_len` data bytes, or exactly what the header describes when `None`.
fn file_from(entries: &[Entry], meta: &[(&str, &str)], data_len: Option<u64>) -> Vec<u8> {
    let mut fields = Vec::new();
    if !meta.is_empty() {
        let m: serde_json::Map<String, serde_json::Value> =
            meta.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
        fields.push(format!("\"__metadata__\":{}", serde_json::Value::Object(m)));
    }
    let mut end = 0u64;
    for e in entries {
        let size = e.shape.iter().fold(bytes_per_element(e.dtype), |a, &d| a.saturating_mul(d));
        let (start, stop) = e.offsets.unwrap_or((end, end.saturating_add(size)));
        end = stop;
        fields.push(format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":{:?},\"data_offsets\":[{start},{stop}]}}",
            serde_json::Value::from(e.name.as_str()),
            e.dtype,
            e.shape
        ));
    }
    let header = format!("{{{}}}", fields.join(","));
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    // A described size too large to write stands for "truncated".
    let len = data_len.unwrap_or(end).min(1 << 16);
    out.extend((0..len).map(|i| i as u8));
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_safetensors_bytes(seed in any_seed(), d in damage()) {
        check_read(seed, &apply(seed_bytes(seed), &d));
    }

    #[test]
    fn fuzz_safetensors_headers(
        seed in any_seed(),
        entries in prop::collection::vec(entry(), 0..5),
        meta in metadata(),
        data_len in prop::option::weighted(0.3, 0u64..256).prop_map(|o| o.map(|n| n * 2)),
    ) {
        check_read(seed, &file_from(&entries, &meta, data_len));
    }

    #[test]
    fn fuzz_training_checkpoint_values(edits in prop::collection::vec(edit(), 1..4)) {
        check_read(Seed::Training, &edited_training_file(&edits));
    }
}

// Inputs the properties found, kept as fixed regression tests.

/// The error reading `bytes` as `seed`'s file, and the path it was written to.
fn read_error(seed: Seed, bytes: &[u8]) -> (String, PathBuf) {
    let dir = case_dir("regression");
    let path = dir.join("checkpoint.safetensors");
    std::fs::write(&path, bytes).unwrap();
    (read_as(seed, &path).unwrap_err().to_string(), path)
}

#[test]
fn zero_sized_tensor_whose_sizes_overflow_is_an_error() {
    // safetensors accepts it (0 elements); computing its strides overflowed.
    let entry = Entry { name: "0.weight".into(), dtype: "F32", shape: [0, 1 << 31, 1 << 40].into(), offsets: None };
    let (e, path) = read_error(Seed::State, &file_from(&[entry], &[], None));
    assert_eq!(
        e,
        format!(
            "{}: tensor \"0.weight\" has shape [0, 2147483648, 1099511627776], whose sizes multiply past 2^64",
            path.display()
        )
    );
}

#[test]
fn out_of_range_values_in_a_training_checkpoint_are_errors() {
    // Each used to panic: the optimizer's checks were assertions (momentum
    // on restoring, the learning rate at the first step after it), and a
    // huge step count or schedule length overflowed at the next step.
    for (key, value, what) in [
        ("optim.options.momentum", "-1", "restoring the optimizer: SGD: invalid momentum -1 in the saved state"),
        (
            "optim.param_groups.0.lr",
            "NaN",
            "restoring the optimizer: SGD: invalid learning rate NaN in the saved state",
        ),
        (
            "optim.state.0.step",
            "18446744073709551615",
            "restoring the optimizer: SGD: step count 18446744073709551615 of parameter 0 in the saved state",
        ),
        (
            "sched.t_max",
            "9223372036854775807",
            "restoring the schedule: CosineAnnealingLR::load_state_dict: entry \"t_max\" = 9223372036854775807 \
             is larger than any run's step count (2^53)",
        ),
        (
            "sched.last_epoch",
            "18446744073709551615",
            "restoring the schedule: CosineAnnealingLR::load_state_dict: entry \"last_epoch\" = 18446744073709551615 \
             is larger than any run's step count (2^53)",
        ),
    ] {
        let bytes = rewritten_training_file(|s| {
            assert!(s.meta.insert(key.into(), value.into()).is_some(), "{key} is not in the checkpoint");
        });
        let (e, path) = read_error(Seed::Training, &bytes);
        assert_eq!(e, format!("{}: {what}", path.display()), "{key} = {value}");
    }
}
