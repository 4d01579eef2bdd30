//! wgrad-nn against PyTorch (fixture `tests/fixtures/nn.json`, made by
//! `tests/fixtures/gen_nn.py`): every activation module, Linear, PReLU and
//! every loss — outputs and gradients within 1e-4 relative, on CPU and GPU.

use crate::common;
use common::*;
use serde_json::Value;
use wgrad::autograd::Reduction;
use wgrad::nn::loss::*;
use wgrad::nn::*;
use wgrad::prelude::*;

#[track_caller]
fn close(what: &str, got: &[f32], want: &[f32]) {
    wgrad::gpu_core::testing::assert_close(what, got, want, 1e-4, 1e-6);
}

/// The fixture's weighting of outputs: linspace(0.5, 1.5, n).
fn weights(n: usize, shape: &[usize], dev: &Device) -> Tensor {
    let w: Vec<f32> = (0..n).map(|i| if n == 1 { 0.5 } else { 0.5 + i as f32 / (n - 1) as f32 }).collect();
    Tensor::from_vec(&w, shape, dev)
}

/// Runs one recorded case: inputs from the fixture, `f` on them, compares out and grads.
fn check_case(case: &Value, dev: &Device, f: impl Fn(&[Tensor]) -> Tensor) {
    let name = case["name"].as_str().unwrap();
    let inputs: Vec<Tensor> = case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(case["shapes"].as_array().unwrap())
        .map(|(d, s)| Tensor::from_vec(&floats(d), &shape(s), dev).requires_grad_())
        .collect();
    let out = f(&inputs);
    close(&format!("{name} output on {}", dev.name()), &out.to_vec(), &floats(&case["out"]));
    (&out * &weights(out.numel(), &out.shape(), dev)).sum_all().backward();
    for (i, (x, g)) in inputs.iter().zip(case["grads"].as_array().unwrap()).enumerate() {
        if !g.is_null() {
            close(&format!("{name} grad {i} on {}", dev.name()), &x.grad().unwrap().to_vec(), &floats(g));
        }
    }
}

#[test]
fn activation_modules_match_pytorch() {
    let f = fixture("nn.json");
    for dev in devices("activation_modules_match_pytorch") {
        for case in f["activations"].as_array().unwrap() {
            let m: Box<dyn Module> = match case["name"].as_str().unwrap() {
                "ReLU" => Box::new(ReLU),
                "LeakyReLU" => Box::new(LeakyReLU(0.1)),
                "ELU" => Box::new(ELU(0.7)),
                "SELU" => Box::new(SELU),
                "GELU" => Box::new(GELU::default()),
                "GELU_tanh" => Box::new(GELU { tanh: true }),
                "SiLU" => Box::new(SiLU),
                "Mish" => Box::new(Mish),
                "Sigmoid" => Box::new(Sigmoid),
                "Tanh" => Box::new(Tanh),
                "Softplus" => Box::new(Softplus { beta: 2.0, threshold: 5.0 }),
                other => panic!("fixture has an activation this test does not know: {other}"),
            };
            check_case(case, &dev, |x| m.forward(&x[0]));
        }
    }
}

#[test]
fn linear_and_prelu_match_pytorch() {
    let f = fixture("nn.json");
    for dev in devices("linear_and_prelu_match_pytorch") {
        let c = &f["linear"];
        let mut init = Init::new(&dev, 0);
        let lin = Linear::builder(5, 3).build(&mut init);
        no_grad(|| {
            lin.weight.assign(&Tensor::from_vec(&floats(&c["weight"]), &[3, 5], &dev));
            lin.bias.as_ref().unwrap().assign(&Tensor::from_vec(&floats(&c["bias"]), &[3], &dev));
        });
        let x = Tensor::from_vec(&floats(&c["x"]), &[4, 5], &dev).requires_grad_();
        let out = lin.forward(&x);
        close("linear out", &out.to_vec(), &floats(&c["out"]));
        (&out * &weights(12, &[4, 3], &dev)).sum_all().backward();
        close("linear grad x", &x.grad().unwrap().to_vec(), &floats(&c["grad_x"]));
        close("linear grad w", &lin.weight.grad().unwrap().to_vec(), &floats(&c["grad_weight"]));
        close("linear grad b", &lin.bias.as_ref().unwrap().grad().unwrap().to_vec(), &floats(&c["grad_bias"]));

        let c = &f["prelu"];
        let pre = PReLU::builder(3).build(&mut init);
        no_grad(|| pre.weight.assign(&Tensor::from_vec(&floats(&c["weight"]), &[3], &dev)));
        let x = Tensor::from_vec(&floats(&c["x"]), &[2, 3, 4], &dev).requires_grad_();
        let out = pre.forward(&x);
        close("prelu out", &out.to_vec(), &floats(&c["out"]));
        (&out * &weights(24, &[2, 3, 4], &dev)).sum_all().backward();
        close("prelu grad x", &x.grad().unwrap().to_vec(), &floats(&c["grad_x"]));
        close("prelu grad a", &pre.weight.grad().unwrap().to_vec(), &floats(&c["grad_weight"]));
    }
}

#[test]
fn losses_match_pytorch() {
    let f = fixture("nn.json");
    for dev in devices("losses_match_pytorch") {
        for case in f["losses"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let in_shape = shape(&case["shapes"][0]);
            let t = |key: &str, s: &[usize]| Tensor::from_vec(&floats(&case[key]), s, &dev);
            let target = t("target", &if name.starts_with("cosine") { vec![in_shape[0]] } else { in_shape.clone() });
            let red = |n: &str| {
                if n.ends_with("_sum") {
                    Reduction::Sum
                } else if n.ends_with("_none") {
                    Reduction::None
                } else {
                    Reduction::Mean
                }
            };
            let reduction = red(name);
            check_case(case, &dev, |x| match name {
                n if n.starts_with("mse") => MSELoss { reduction }.forward(&x[0], &target),
                n if n.starts_with("l1") => L1Loss { reduction }.forward(&x[0], &target),
                "huber_0.5" => HuberLoss { delta: 0.5, reduction }.forward(&x[0], &target),
                "smooth_l1_0.7" => SmoothL1Loss { beta: 0.7, reduction }.forward(&x[0], &target),
                "bce" => BCELoss::default().forward(&x[0], &target),
                "bce_weight" => BCELoss { weight: Some(t("weight", &in_shape)), reduction }.forward(&x[0], &target),
                "bce_logits_pos_weight" => {
                    BCEWithLogitsLoss { pos_weight: Some(t("pos_weight", &[3])), ..Default::default() }
                        .forward(&x[0], &target)
                }
                "kl_div_batchmean" => KLDivLoss::batchmean().forward(&x[0], &target),
                "cosine_embedding_0.2" => CosineEmbeddingLoss { margin: 0.2, reduction }.forward(&x[0], &x[1], &target),
                other => panic!("fixture has a loss this test does not know: {other}"),
            });
        }
    }
}

/// The same small CNN as the fixture, built from wgrad layers.
fn cnn(dev: &Device) -> Sequential {
    let mut init = Init::new(dev, 0);
    Sequential::new()
        .add(Conv2d::builder(3, 4, 3).padding(1).build(&mut init))
        .add(BatchNorm2d::builder(4).build(&mut init))
        .add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Conv2d::builder(4, 6, 3).padding(1).groups(2).build(&mut init))
        .add(GELU::default())
        .add(AdaptiveAvgPool2d((2, 2)))
        .add(Flatten::default())
        .add(Dropout::builder(0.0).build(&mut init))
        .add(Linear::builder(24, 5).build(&mut init))
        .add(LayerNorm::builder(&[5]).build(&mut init))
}

#[test]
fn a_cnn_loaded_by_pytorch_names_matches_in_train_and_eval() {
    let f = fixture("nn.json");
    let c = &f["cnn"];
    for dev in devices("a_cnn_loaded_by_pytorch_names_matches_in_train_and_eval") {
        let mut model = cnn(&dev);
        let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
        let want: Vec<String> =
            c["param_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        assert_eq!(names, want, "parameter names and order follow PyTorch");
        // Load every parameter and buffer by its state-dict name.
        let mut tensors = model.named_parameters();
        tensors.extend(model.named_buffers().into_iter().filter(|(n, _)| !n.ends_with("num_batches_tracked")));
        assert_eq!(tensors.len(), c["state"].as_object().unwrap().len(), "same state-dict entries");
        for (name, t) in &tensors {
            let s = shape(&c["shapes"][name]);
            assert_eq!(t.shape(), s, "{name} has PyTorch's layout");
            no_grad(|| t.assign(&Tensor::from_vec(&floats(&c["state"][name]), &s, &dev)));
        }
        let x = Tensor::from_vec(&floats(&c["x"]), &shape(&c["x_shape"]), &dev);
        model.train();
        let out = model.forward(&x);
        close("cnn train output", &out.to_vec(), &floats(&c["out_train"]));
        (&out * &weights(out.numel(), &out.shape(), &dev)).sum_all().backward();
        for (name, p) in model.named_parameters() {
            close(&format!("grad {name} on {}", dev.name()), &p.grad().unwrap().to_vec(), &floats(&c["grads"][&name]));
        }
        for (name, b) in model.named_buffers() {
            if name.contains("running") {
                close(&format!("{name} after a step"), &b.to_vec(), &floats(&c["buffers_after"][&name]));
            }
        }
        model.eval();
        close("cnn eval output", &model.forward(&x).to_vec(), &floats(&c["out_eval"]));
    }
}
