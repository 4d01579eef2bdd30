//! Checkpoint interop with PyTorch (fixtures made by
//! `tests/fixtures/gen_checkpoint.py`): a state dict saved by
//! `safetensors.torch.save_file` loads strictly into the matching wgrad model
//! and gives PyTorch's eval-mode output, on the CPU backend and the GPU; a
//! file wgrad writes has exactly the names, shapes and dtypes PyTorch's
//! `load_state_dict` takes.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};
use wgrad::gpu_core::testing::gpu_or_skip;
use wgrad::nn::checkpoint::{load_module, save_module};
use wgrad::nn::{BatchNorm2d, Conv2d, Flatten, Linear, ReLU, Sequential};
use wgrad::prelude::*;

fn backends(test: &str) -> Vec<Device> {
    let mut v = vec![Device::cpu()];
    v.extend(gpu_or_skip(test));
    v
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("checkpoint.json")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("a list of numbers").iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn sizes(v: &Value) -> Vec<usize> {
    v.as_array().expect("a list of sizes").iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

/// The wgrad twin of the script's `nn.Sequential(Conv2d(3,4,3,padding=1),
/// BatchNorm2d(4), ReLU(), Flatten(), Linear(100, 3))`.
fn model(seed: u64, dev: &Device) -> Sequential {
    let mut init = Init::new(dev, seed);
    Sequential::new()
        .add(Conv2d::builder(3, 4, 3).padding(1).build(&mut init))
        .add(BatchNorm2d::builder(4).build(&mut init))
        .add(ReLU)
        .add(Flatten::default())
        .add(Linear::builder(4 * 5 * 5, 3).build(&mut init))
}

#[test]
fn torch_file_loads_strictly_and_matches_torch_output() {
    let f = fixture();
    let input = &f["input"];
    for dev in backends("torch_file_loads_strictly_and_matches_torch_output") {
        let mut m = model(0, &dev);
        let report = load_module(fixtures().join("torch_model.safetensors"), &m, true).unwrap();
        assert!(report.is_exact(), "{report:?}");
        assert_eq!(report.loaded.len(), 9);
        // PyTorch's int64 counter arrives as wgrad's f32 one.
        let nbt = m.named_buffers().into_iter().find(|(n, _)| n == "1.num_batches_tracked").unwrap().1;
        assert_eq!(nbt.item(), f["num_batches_tracked"].as_u64().unwrap() as f32);
        m.eval();
        let x = Tensor::from_vec(&floats(&input["data"]), &sizes(&input["shape"]), &dev);
        let y = m.forward(&x);
        assert_eq!(y.shape(), sizes(&f["output"]["shape"]));
        wgrad::gpu_core::testing::assert_close(
            &format!("output on {}", dev.name()),
            &y.to_vec(),
            &floats(&f["output"]["data"]),
            1e-4,
            1e-5,
        );
    }
}

#[test]
fn wgrad_file_has_the_names_shapes_and_dtypes_torch_expects() {
    let f = fixture();
    let dev = Device::cpu();
    let mut m = model(11, &dev);
    // Move the running statistics off their initial values first.
    m.train();
    m.forward(&Generator::new(3).normal(&[6, 3, 5, 5], 0.5, 2.0, &dev));
    m.eval();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("wgrad_model.safetensors");
    save_module(&path, &m).unwrap();

    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut want: Vec<String> = f["tensors"].as_object().unwrap().keys().cloned().collect();
    want.sort();
    assert_eq!(names, want, "the same state-dict keys as torch's model");
    for (name, spec) in f["tensors"].as_object().unwrap() {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.shape(), sizes(&spec["shape"]), "{name}");
        // Parameters and running stats are float32 as in torch; wgrad's f32
        // `num_batches_tracked` is cast to int64 by torch's load_state_dict.
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
    }
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(header.metadata().as_ref().unwrap()["format"], "pt");

    // Beside it, the output for the fixture's input: what
    // `python3 tests/fixtures/gen_checkpoint.py <path>` checks torch against.
    let input = &f["input"];
    let x = Tensor::from_vec(&floats(&input["data"]), &sizes(&input["shape"]), &dev);
    let y = m.forward(&x);
    let sidecar = json!({
        "input": input,
        "output": {"shape": y.shape().to_vec(), "data": y.to_vec()},
    });
    let sidecar_path = format!("{}.json", path.display());
    std::fs::write(&sidecar_path, sidecar.to_string()).unwrap();
    eprintln!(
        "wrote {} (+ .json); check with: python3 tests/fixtures/gen_checkpoint.py {}",
        path.display(),
        path.display()
    );

    // And it loads back into a fresh wgrad model with the same output.
    let mut back = model(12, &dev);
    load_module(&path, &back, true).unwrap();
    back.eval();
    assert_eq!(back.forward(&x).to_vec(), y.to_vec());
}
