//! A PyTorch-exported CIFAR ResNet-20 (tests/fixtures/gen_resnet.py) loads by
//! state-dict name into wgrad's ResNet-20 and gives the same logits.

use safetensors::SafeTensors;
use serde_json::Value;
use wgrad::models::{ResNet, Shortcut};
use wgrad::prelude::*;

fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn pytorch_resnet20_logits_match() {
    let bytes = std::fs::read(fixture_path("resnet20.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(fixture_path("resnet20.json")).unwrap()).unwrap();
    let floats = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<_>>();
    let mut devices = vec![Device::cpu()];
    devices.extend(wgrad::gpu_core::testing::gpu_or_skip("pytorch_resnet20_logits_match"));
    for dev in devices {
        let mut model = ResNet::cifar(20, 10, Shortcut::ZeroPad, &mut Init::new(&dev, 0));
        assert_eq!(model.num_parameters(), meta["num_parameters"].as_u64().unwrap() as usize);
        let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
        let want: Vec<String> =
            meta["param_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
        assert_eq!(names, want, "parameter names and order follow the PyTorch definition");
        let mut all = model.named_parameters();
        all.extend(model.named_buffers());
        for (name, t) in all {
            let view = st.tensor(&name).unwrap_or_else(|_| panic!("fixture lacks {name}"));
            let data: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => {
                    view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
                }
                safetensors::Dtype::I64 => {
                    view.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect()
                }
                d => panic!("{name}: unexpected dtype {d:?}"),
            };
            assert_eq!(t.shape(), view.shape(), "{name}");
            no_grad(|| t.assign(&Tensor::from_vec(&data, view.shape(), &dev)));
        }
        model.eval();
        let x = Tensor::from_vec(&floats(&meta["x"]), &[2, 3, 32, 32], &dev);
        let logits = model.forward(&x).to_vec();
        wgrad::gpu_core::testing::assert_close(
            &format!("logits on {}", dev.name()),
            &logits,
            &floats(&meta["logits"]),
            1e-4,
            1e-5,
        );
    }
}
