//! Checkpoints: safetensors round trips, atomic saves, corrupt files, strict
//! and lenient model loading, and bit-exact resumption of training.

use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use wgrad_autograd::{no_grad, DType, Device, Generator, Tensor};
use wgrad_gpu_core::testing::{backends, Rng};
use wgrad_nn::checkpoint::{
    load_module, load_module_state, load_state_dict, module_state_dict, save_module, save_state_dict, write_temp,
    CheckpointError, TrainingCheckpoint,
};
use wgrad_nn::loss::MSELoss;
use wgrad_nn::optim::{Optimizer, ParamGroup};
use wgrad_nn::state::StateDict;
use wgrad_nn::*;

/// A fresh, empty directory of this test's own under the target dir.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("checkpoint").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The device's name as a file-name part.
fn tag(dev: &Device) -> String {
    dev.name().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn mlp(seed: u64, dev: &Device) -> Sequential {
    let mut init = Init::new(dev, seed);
    Sequential::new().add(Linear::builder(4, 6).build(&mut init)).add(ReLU).add(Linear::builder(6, 3).build(&mut init))
}

/// Every tensor of a module by name, as host values.
fn values(m: &dyn Module) -> Vec<(String, Vec<f32>)> {
    module_state_dict(m).tensors.into_iter().map(|(k, t)| (k, t.to_vec())).collect()
}

#[test]
fn round_trip_of_every_dtype_and_metadata() {
    for dev in backends("round_trip_of_every_dtype_and_metadata") {
        let dir = scratch(&format!("round_trip_{}", tag(&dev)));
        let path = dir.join("state.safetensors");
        let f32s = vec![1.5, -0.0, f32::INFINITY, f32::MIN_POSITIVE, -3.25e-7, f32::NAN];
        let f16s: Vec<half::f16> = [0.5f32, -2.0, 65504.0, 1e-7, 3.0].iter().map(|&x| half::f16::from_f32(x)).collect();
        let u32s = vec![0, 7, u32::MAX, 1 << 31];
        let mut s = StateDict::new();
        s.tensors.insert("a.weight".into(), Tensor::from_vec(&f32s, &[2, 3], &dev));
        // A transposed view is written in its logical row-major order.
        s.tensors.insert("a.weight_t".into(), Tensor::from_vec(&f32s, &[2, 3], &dev).t());
        s.tensors.insert("half".into(), Tensor::from_f16(&f16s, &[5], &dev));
        s.tensors.insert("idx".into(), Tensor::from_u32(&u32s, &[2, 2], &dev));
        s.tensors.insert("scalar".into(), Tensor::scalar(42.0, &dev));
        s.meta.insert("format".into(), "pt".into());
        s.meta.insert("note".into(), "ünïcode, \"quotes\" and\nnewlines".into());
        s.meta.insert("empty".into(), String::new());
        save_state_dict(&path, &s).unwrap();
        assert_eq!(files_in(&dir), ["state.safetensors"], "no temporary left behind");

        // The safetensors crate reads it with the documented dtypes.
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("a.weight").unwrap().dtype(), Dtype::F32);
        assert_eq!(st.tensor("a.weight_t").unwrap().shape(), [3, 2]);
        assert_eq!(st.tensor("half").unwrap().dtype(), Dtype::F16);
        assert_eq!(st.tensor("idx").unwrap().dtype(), Dtype::U32);
        assert_eq!(st.tensor("scalar").unwrap().shape(), [] as [usize; 0]);

        let back = load_state_dict(&path, &dev).unwrap();
        assert_eq!(back.meta, s.meta);
        assert_eq!(back.tensors.keys().collect::<Vec<_>>(), s.tensors.keys().collect::<Vec<_>>());
        let a = &back.tensors["a.weight"];
        assert_eq!((a.dtype(), a.shape().to_vec()), (DType::F32, vec![2, 3]));
        assert_eq!(bits(&a.to_vec()), bits(&f32s));
        let t = &back.tensors["a.weight_t"];
        assert_eq!(bits(&t.to_vec()), bits(&[1.5, f32::MIN_POSITIVE, -0.0, -3.25e-7, f32::INFINITY, f32::NAN]));
        let h = &back.tensors["half"];
        assert_eq!((h.dtype(), h.to_vec_f16()), (DType::F16, f16s.clone()));
        let i = &back.tensors["idx"];
        assert_eq!((i.dtype(), i.shape().to_vec(), i.to_vec_u32()), (DType::U32, vec![2, 2], u32s.clone()));
        assert_eq!(back.tensors["scalar"].shape(), Vec::<usize>::new());
        assert_eq!(back.tensors["scalar"].item(), 42.0);
    }
}

/// Builds a safetensors file the way PyTorch would, with arbitrary dtypes.
fn write_raw(path: &Path, tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>) {
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

/// A module with one U32 buffer, to load integer data into.
#[derive(Module)]
struct Indexed {
    #[buffer]
    idx: Tensor,
}

impl Module for Indexed {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.clone()
    }
    fn describe(&self) -> String {
        "Indexed".into()
    }
}

#[test]
fn pytorch_dtypes_are_converted_on_load() {
    let dev = Device::cpu();
    let dir = scratch("pytorch_dtypes");
    let path = dir.join("torch.safetensors");
    write_raw(
        &path,
        vec![
            ("counter", Dtype::I64, vec![], le(&[3i64], i64::to_le_bytes)),
            ("big", Dtype::I64, vec![2], le(&[3_000_000_001i64, 5], i64::to_le_bytes)),
            ("i32", Dtype::I32, vec![2], le(&[-4i32, 9], i32::to_le_bytes)),
            ("double", Dtype::F64, vec![2], le(&[0.1f64, -2.5], f64::to_le_bytes)),
            (
                "brain",
                Dtype::BF16,
                vec![2],
                le(&[half::bf16::from_f32(1.5), half::bf16::from_f32(-0.375)], half::bf16::to_le_bytes),
            ),
        ],
    );
    let s = load_state_dict(&path, &dev).unwrap();
    for t in s.tensors.values() {
        assert_eq!(t.dtype(), DType::F32);
    }
    assert_eq!(s.tensors["counter"].item(), 3.0);
    assert_eq!(s.tensors["i32"].to_vec(), [-4.0, 9.0]);
    assert_eq!(s.tensors["double"].to_vec(), [0.1f32, -2.5]);
    assert_eq!(s.tensors["brain"].to_vec(), [1.5, -0.375]);

    // Into a model, int64 goes to the model's dtype: exactly into U32, even past 2^24.
    let m = Indexed { idx: Tensor::from_u32(&[0, 0], &[2], &dev) };
    write_raw(&path, vec![("idx", Dtype::I64, vec![2], le(&[3_000_000_001i64, 5], i64::to_le_bytes))]);
    let r = load_module(&path, &m, true).unwrap();
    assert_eq!(r.loaded, ["idx"]);
    assert_eq!(m.idx.to_vec_u32(), [3_000_000_001, 5]);
    // ... but negative integers and floats do not become U32.
    for (dtype, bytes) in
        [(Dtype::I64, le(&[-1i64, 2], i64::to_le_bytes)), (Dtype::F32, le(&[1.0f32, 2.0], f32::to_le_bytes))]
    {
        write_raw(&path, vec![("idx", dtype, vec![2], bytes)]);
        let e = load_module(&path, &m, true).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()) && e.contains("\"idx\""), "{e}");
        assert_eq!(m.idx.to_vec_u32(), [3_000_000_001, 5], "a failed load changes nothing");
    }

    // F32 file data loads into an F16 model tensor, converted.
    let h = Indexed { idx: Tensor::from_f16(&[half::f16::ZERO; 2], &[2], &dev) };
    write_raw(&path, vec![("idx", Dtype::F32, vec![2], le(&[0.5f32, 3.0], f32::to_le_bytes))]);
    load_module(&path, &h, true).unwrap();
    assert_eq!(h.idx.dtype(), DType::F16);
    assert_eq!(h.idx.to_vec(), [0.5, 3.0]);
}

#[test]
fn unsupported_dtype_names_the_file_and_tensor() {
    let dir = scratch("unsupported_dtype");
    let path = dir.join("bools.safetensors");
    write_raw(
        &path,
        vec![
            ("ok", Dtype::F32, vec![1], le(&[1.0f32], f32::to_le_bytes)),
            ("mask", Dtype::BOOL, vec![3], vec![1, 0, 1]),
        ],
    );
    let e = load_state_dict(&path, &Device::cpu()).unwrap_err();
    assert!(matches!(&e, CheckpointError::UnsupportedDtype { tensor, .. } if tensor == "mask"), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains("\"mask\"") && msg.contains("BOOL"), "{msg}");
}

#[test]
fn a_crash_between_write_and_rename_keeps_the_previous_checkpoint() {
    let dev = Device::cpu();
    let dir = scratch("crash");
    let path = dir.join("model.safetensors");
    let old = mlp(1, &dev);
    save_module(&path, &old).unwrap();
    let before = std::fs::read(&path).unwrap();

    // The new checkpoint is fully written and synced, then the process "dies".
    let new = mlp(2, &dev);
    let pending = write_temp(&path, &module_state_dict(&new)).unwrap();
    let temp = pending.temp_path().to_path_buf();
    assert_eq!(temp.parent(), path.parent(), "the temporary lies beside the target, so the rename stays atomic");
    std::mem::forget(pending);
    assert_eq!(std::fs::read(&path).unwrap(), before, "the previous checkpoint is intact");
    let fresh = mlp(3, &dev);
    load_module(&path, &fresh, true).unwrap();
    assert_eq!(values(&fresh), values(&old));
    assert!(temp.exists(), "a crash leaves only a stale temporary");

    // The next save still succeeds and replaces the target whole.
    save_module(&path, &new).unwrap();
    load_module(&path, &fresh, true).unwrap();
    assert_eq!(values(&fresh), values(&new));
    std::fs::remove_file(&temp).unwrap();
    assert_eq!(files_in(&dir), ["model.safetensors"]);
}

#[test]
fn an_abandoned_save_creates_no_target_and_removes_its_temporary() {
    let dev = Device::cpu();
    let dir = scratch("abandoned");
    let path = dir.join("never.safetensors");
    let pending = write_temp(&path, &module_state_dict(&mlp(1, &dev))).unwrap();
    assert!(pending.temp_path().exists());
    assert!(!path.exists(), "nothing appears at the target before commit");
    drop(pending);
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));

    // Committing is what makes it appear.
    write_temp(&path, &module_state_dict(&mlp(1, &dev))).unwrap().commit().unwrap();
    assert_eq!(files_in(&dir), ["never.safetensors"]);
}

/// The error of loading `bytes` as a checkpoint; its message must name the file.
fn load_error(dir: &Path, name: &str, bytes: &[u8]) -> CheckpointError {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let e = load_state_dict(&path, &Device::cpu()).unwrap_err();
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert_eq!(e.path(), Some(path.as_path()));
    e
}

#[test]
fn corrupt_files_give_clear_errors_naming_the_path() {
    let dev = Device::cpu();
    let dir = scratch("corrupt");
    let good_path = dir.join("good.safetensors");
    save_module(&good_path, &mlp(1, &dev)).unwrap();
    let good = std::fs::read(&good_path).unwrap();
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;

    let mut rng = Rng::new(7);
    let random: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
    let e = load_error(&dir, "random.bin", &random);
    assert!(matches!(e, CheckpointError::NotSafetensors { .. }), "{e:?}");

    let e = load_error(&dir, "tiny.bin", b"abc");
    assert!(e.to_string().contains("fewer than the 8-byte header length"), "{e}");

    for wrong in [n as u64 + 1_000_000, u64::MAX] {
        let mut b = good.clone();
        b[..8].copy_from_slice(&wrong.to_le_bytes());
        let e = load_error(&dir, "length.bin", &b);
        assert!(
            matches!(e, CheckpointError::NotSafetensors { .. }) && e.to_string().contains("wrong header length"),
            "{e}"
        );
    }

    let e = load_error(&dir, "truncated.bin", &good[..good.len() - 3]);
    let data = good.len() - 8 - n;
    assert!(
        matches!(e, CheckpointError::Truncated { expected, actual, .. } if expected == data && actual == data - 3),
        "{e:?}"
    );
    assert!(e.to_string().contains("truncated"), "{e}");

    let mut b = good.clone();
    b.extend_from_slice(b"junk");
    let e = load_error(&dir, "trailing.bin", &b);
    assert!(e.to_string().contains("4 bytes of stray data"), "{e}");

    let mut b = good.clone();
    b[8..8 + 12].copy_from_slice(b"{not json!!!");
    let e = load_error(&dir, "garbage.bin", &b);
    assert!(e.to_string().contains("not safetensors JSON"), "{e}");

    let mut b = good.clone();
    b[8] = 0xff;
    let e = load_error(&dir, "utf8.bin", &b);
    assert!(e.to_string().contains("not UTF-8"), "{e}");

    // A header whose offsets disagree with the shapes.
    let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}    "#;
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header);
    b.extend_from_slice(&[0; 4]);
    let e = load_error(&dir, "offsets.bin", &b);
    assert!(matches!(e, CheckpointError::NotSafetensors { .. }), "{e:?}");

    let missing = dir.join("missing.safetensors");
    let e = load_state_dict(&missing, &dev).unwrap_err();
    assert!(matches!(&e, CheckpointError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound), "{e:?}");
    assert!(e.to_string().contains(&missing.display().to_string()), "{e}");

    // Conversions keep the meaning for callers with other error types.
    assert_eq!(std::io::Error::from(e).kind(), std::io::ErrorKind::NotFound);
    let e = load_error(&dir, "tiny.bin", b"abc");
    assert_eq!(std::io::Error::from(e).kind(), std::io::ErrorKind::InvalidData);
    let e: wgrad_gpu_core::Error = load_error(&dir, "tiny.bin", b"abc").into();
    assert!(e.to_string().starts_with("checkpoint: "), "{e}");
}

#[test]
fn strict_loading_lists_every_offending_tensor_and_changes_nothing() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 0);
    let dir = scratch("strict");
    let path = dir.join("other.safetensors");
    let mut s = module_state_dict(&mlp(1, &dev));
    s.tensors.remove("0.bias");
    s.tensors.insert("extra.weight".into(), Tensor::zeros(&[2], &dev));
    s.tensors.insert("2.weight".into(), Tensor::zeros(&[5, 6], &dev));
    s.tensors.insert("2.bias".into(), Tensor::zeros(&[5], &dev));
    save_state_dict(&path, &s).unwrap();

    let m = mlp(2, &dev);
    let before = values(&m);
    let e = load_module(&path, &m, true).unwrap_err();
    match &e {
        CheckpointError::Mismatch { missing, unexpected, mismatched, .. } => {
            assert_eq!(missing, &["0.bias"]);
            assert_eq!(unexpected, &["extra.weight"]);
            assert_eq!(
                mismatched,
                &[("2.weight".to_string(), vec![3, 6], vec![5, 6]), ("2.bias".to_string(), vec![3], vec![5])]
            );
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    let msg = e.to_string();
    for needle in [
        &path.display().to_string() as &str,
        "0.bias",
        "extra.weight",
        "2.weight: model [3, 6] vs file [5, 6]",
        "2.bias",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
    }
    assert_eq!(values(&m), before, "a failed strict load changes nothing");

    // Lenient: what matches loads, the rest is reported.
    let r = load_module(&path, &m, false).unwrap();
    assert_eq!(r.loaded, ["0.weight"]);
    assert_eq!(r.missing, ["0.bias"]);
    assert_eq!(r.unexpected, ["extra.weight"]);
    assert_eq!(r.mismatched.len(), 2);
    assert!(!r.is_exact());
    let after = values(&m);
    assert_eq!(after[0], ("0.bias".to_string(), before[0].1.clone()), "unmatched tensors keep their values");
    assert_eq!(after[1].1, s.tensors["0.weight"].to_vec());
    assert_ne!(after[1].1, before[1].1);

    // A matching file loads strictly, buffers included.
    let bn = Sequential::new().add(BatchNorm2d::builder(3).build(&mut init));
    let mut src = Sequential::new().add(BatchNorm2d::builder(3).build(&mut init));
    src.train();
    src.forward(&Tensor::from_vec(&Rng::new(1).vec(2 * 3 * 2 * 2, -1.0, 2.0), &[2, 3, 2, 2], &dev));
    save_module(dir.join("bn.safetensors"), &src).unwrap();
    let r = load_module(dir.join("bn.safetensors"), &bn, true).unwrap();
    assert!(r.is_exact());
    assert_eq!(r.loaded, ["0.weight", "0.bias", "0.running_mean", "0.running_var", "0.num_batches_tracked"]);
    assert_eq!(values(&bn), values(&src));

    // In memory, the same rules, naming the source as a state dict.
    let e = load_module_state(&m, &s, true).unwrap_err().to_string();
    assert!(e.starts_with("<state dict>: state does not match the model"), "{e}");
}

/// SGD with momentum (PyTorch's formulation): enough state to make resuming
/// without it visibly wrong.
struct Momentum {
    groups: Vec<ParamGroup>,
    momentum: f32,
    buffers: Vec<Option<Tensor>>,
    steps: u64,
}

impl Momentum {
    fn new(params: Vec<Tensor>, lr: f32, momentum: f32) -> Self {
        let n = params.len();
        Momentum { groups: vec![ParamGroup::new(params, lr, 0.0)], momentum, buffers: vec![None; n], steps: 0 }
    }

    fn params(&self) -> impl Iterator<Item = (&ParamGroup, &Tensor)> {
        self.groups.iter().flat_map(|g| g.params.iter().map(move |p| (g, p)))
    }
}

impl Optimizer for Momentum {
    fn step(&mut self) {
        let mut new = Vec::new();
        no_grad(|| {
            for (i, (g, p)) in self.params().enumerate() {
                let Some(grad) = p.grad() else {
                    new.push(self.buffers[i].clone());
                    continue;
                };
                let v = match &self.buffers[i] {
                    Some(b) => b.mul_scalar(self.momentum).add(&grad),
                    None => grad.mul_scalar(1.0),
                };
                p.assign(&p.detach().sub(&v.mul_scalar(g.lr)));
                new.push(Some(v));
            }
        });
        self.buffers = new;
        self.steps += 1;
    }
    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }
    fn groups_mut(&mut self) -> &mut [ParamGroup] {
        &mut self.groups
    }
    fn state_dict(&self) -> StateDict {
        let mut s = StateDict::new();
        for (i, b) in self.buffers.iter().enumerate() {
            if let Some(b) = b {
                s.tensors.insert(format!("state.{i}.momentum_buffer"), b.clone());
            }
        }
        s.meta.insert("steps".into(), self.steps.to_string());
        s.meta.insert("momentum".into(), self.momentum.to_string());
        s
    }
    fn load_state_dict(&mut self, state: &StateDict) -> wgrad_autograd::Result<()> {
        let invalid = |msg: String| wgrad_autograd::Error::invalid("Momentum::load_state_dict", msg);
        let shapes: Vec<Vec<usize>> = self.params().map(|(_, p)| p.shape().to_vec()).collect();
        let mut buffers = Vec::new();
        for (i, shape) in shapes.iter().enumerate() {
            let b = state.tensors.get(&format!("state.{i}.momentum_buffer"));
            if let Some(b) = b {
                if &b.shape() != shape {
                    return Err(invalid(format!("buffer {i} has shape {:?}, parameter {shape:?}", b.shape())));
                }
            }
            buffers.push(b.cloned());
        }
        let steps = state.meta.get("steps").and_then(|s| s.parse().ok());
        self.steps = steps.ok_or_else(|| invalid("no step count".into()))?;
        self.buffers = buffers;
        Ok(())
    }
}

/// One step on a noisy copy of fixed data; returns the loss's bits.
fn train_step(model: &Sequential, opt: &mut Momentum, data: &mut Generator, x: &Tensor, y: &Tensor) -> u32 {
    let dev = x.device();
    let input = x + &data.normal(&x.shape(), 0.0, 0.1, &dev);
    let loss = MSELoss::default().forward(&model.forward(&input), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    loss.item().to_bits()
}

#[test]
fn resuming_from_a_training_checkpoint_is_bit_exact() {
    const N: usize = 4;
    const M: usize = 3;
    for dev in backends("resuming_from_a_training_checkpoint_is_bit_exact") {
        let dir = scratch(&format!("resume_{}", tag(&dev)));
        let path = dir.join("run.safetensors");
        let mut rng = Rng::new(5);
        let x = Tensor::from_vec(&rng.vec(8 * 4, -1.0, 1.0), &[8, 4], &dev);
        let y = Tensor::from_vec(&rng.vec(8 * 3, -1.0, 1.0), &[8, 3], &dev);

        // Uninterrupted.
        let model = mlp(1, &dev);
        let mut opt = Momentum::new(model.parameters(), 0.1, 0.9);
        let mut data = Generator::new(99);
        let straight: Vec<u32> = (0..N + M).map(|_| train_step(&model, &mut opt, &mut data, &x, &y)).collect();

        // N steps, a checkpoint, then everything rebuilt from scratch.
        let first: Vec<u32> = {
            let model = mlp(1, &dev);
            let mut opt = Momentum::new(model.parameters(), 0.1, 0.9);
            let mut data = Generator::new(99);
            let losses = (0..N).map(|_| train_step(&model, &mut opt, &mut data, &x, &y)).collect();
            let mut ck = TrainingCheckpoint::capture(&model, &opt);
            ck.epoch = 1;
            ck.step = N as u64;
            ck.rng.insert("data".into(), data);
            ck.scheduler.meta.insert("last_epoch".into(), "1".into());
            ck.metrics = r#"{"loss":[0.5,0.25]}"#.into();
            ck.save(&path).unwrap();
            losses
        };
        let model = mlp(7, &dev);
        let mut opt = Momentum::new(model.parameters(), 0.1, 0.9);
        let ck = TrainingCheckpoint::load(&path, &dev).unwrap();
        assert_eq!((ck.epoch, ck.step, ck.metrics.as_str()), (1, N as u64, r#"{"loss":[0.5,0.25]}"#));
        assert_eq!(ck.scheduler.meta["last_epoch"], "1");
        assert_eq!(ck.optimizer.tensors.len(), 4, "one momentum buffer per parameter");
        ck.restore(&model, &mut opt).unwrap();
        assert_eq!(opt.steps, N as u64);
        let mut data = ck.rng["data"];
        let resumed: Vec<u32> = (0..M).map(|_| train_step(&model, &mut opt, &mut data, &x, &y)).collect();

        assert_eq!(first, straight[..N], "on {}", dev.name());
        assert_eq!(resumed, straight[N..], "resumed losses differ from uninterrupted ones on {}", dev.name());
    }
}

#[test]
fn training_checkpoint_file_layout_and_errors() {
    let dev = Device::cpu();
    let dir = scratch("training_layout");
    let path = dir.join("ck.safetensors");
    let model = mlp(1, &dev);
    let opt = Momentum::new(model.parameters(), 0.1, 0.9);
    let mut ck = TrainingCheckpoint::capture(&model, &opt);
    ck.rng.insert("aug.flip".into(), Generator { seed: u64::MAX, offset: 12345678901234 });
    ck.save(&path).unwrap();

    // The model part is a plain state dict under `model.`.
    let raw = load_state_dict(&path, &dev).unwrap();
    assert!(raw.tensors.contains_key("model.0.weight") && raw.tensors.contains_key("model.2.bias"));
    assert_eq!(raw.meta["wgrad.kind"], "training_checkpoint");
    assert_eq!(raw.meta["optim.steps"], "0");
    assert_eq!(raw.meta["rng.aug.flip.seed"], u64::MAX.to_string());
    let back = TrainingCheckpoint::load(&path, &dev).unwrap();
    assert_eq!(back.rng["aug.flip"], Generator { seed: u64::MAX, offset: 12345678901234 });
    assert_eq!(back.origin.as_deref(), Some(path.as_path()));

    // A model file is not a training checkpoint.
    let plain = dir.join("plain.safetensors");
    save_module(&plain, &model).unwrap();
    let e = TrainingCheckpoint::load(&plain, &dev).unwrap_err().to_string();
    assert!(e.contains(&plain.display().to_string()) && e.contains("not a wgrad training checkpoint"), "{e}");

    // Restoring into another architecture names the file and the tensors.
    let other = Sequential::new().add(Linear::builder(4, 5).build(&mut Init::new(&dev, 0)));
    let mut other_opt = Momentum::new(other.parameters(), 0.1, 0.9);
    let e = back.restore(&other, &mut other_opt).unwrap_err().to_string();
    assert!(
        e.contains(&path.display().to_string()) && e.contains("2.weight") && e.contains("0.weight: model [5, 4]"),
        "{e}"
    );
}

/// A save deletes the temporaries that killed writers left beside its
/// target (their process is gone), and keeps those of a live process (a
/// save of this process under way) and those of other targets.
#[test]
fn a_save_removes_stale_temporaries_of_its_target() {
    let dir = scratch("a_save_removes_stale_temporaries_of_its_target");
    let path = dir.join("model.safetensors");
    // Above Linux's largest pid (2^22): never a running process.
    let dead = ".model.safetensors.4294967.0.tmp";
    let live = format!(".model.safetensors.{}.999.tmp", std::process::id());
    let other = ".other.safetensors.4294967.0.tmp";
    for f in [dead, live.as_str(), other] {
        std::fs::write(dir.join(f), b"partial").unwrap();
    }
    save_module(&path, &mlp(1, &Device::cpu())).unwrap();
    let files = files_in(&dir);
    assert!(!files.iter().any(|f| f == dead), "stale temporary kept: {files:?}");
    assert!(files.contains(&live), "a live process's temporary was deleted: {files:?}");
    assert!(files.iter().any(|f| f == other), "another target's temporary was deleted: {files:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
