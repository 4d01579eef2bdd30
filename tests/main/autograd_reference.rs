//! wgrad's autograd against PyTorch on a composite expression (fixture made by
//! `tests/fixtures/gen_reference.py`), on the CPU backend and the GPU.

use crate::common;
use common::*;
use wgrad::prelude::*;

/// |got - want| <= 1e-5 * |want| (+1e-7 so exact zeros compare).
fn assert_rel(what: &str, got: &[f32], want: &[f32]) {
    wgrad::gpu_core::testing::assert_close(what, got, want, 1e-5, 1e-7);
}

#[test]
fn composite_expression_matches_pytorch() {
    let f = fixture("autograd_composite.json");
    let mut devices = vec![Device::cpu()];
    devices.extend(wgrad::gpu_core::testing::gpu_or_skip("composite_expression_matches_pytorch"));
    for dev in devices {
        let t = |k: &str| Tensor::from_vec(&floats(&f[k]), &shape(&f["shapes"][k]), &dev);
        let (x, w, b, c) = (t("x").requires_grad_(), t("w").requires_grad_(), t("b").requires_grad_(), t("c"));
        let z = (x.matmul(&w) + &b).tanh();
        let e = (&z - &z.max(&[1], true)).exp();
        let s = &e / &e.sum(&[1], true);
        let loss = (&s * &c).mean_all();
        assert_rel("softmax", &s.to_vec(), &floats(&f["softmax"]));
        assert_rel("loss", &[loss.item()], &[f["loss"].as_f64().unwrap() as f32]);
        loss.backward();
        for (name, p) in [("grad_x", &x), ("grad_w", &w), ("grad_b", &b)] {
            assert_rel(&format!("{name} on {}", dev.name()), &p.grad().unwrap().to_vec(), &floats(&f[name]));
        }
    }
}
