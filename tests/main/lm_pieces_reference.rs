//! RMSNorm and rotary position embeddings against PyTorch (fixture
//! `tests/fixtures/lm_pieces.json`, made by `tests/fixtures/gen_lm_pieces.py`):
//! outputs and input gradients within 1e-4 relative, on CPU and GPU; the
//! attention weights `nn.MultiheadAttention` returns, and its form with
//! key/value widths of their own (`kdim`/`vdim`).

use crate::common;
use common::*;
use serde_json::Value;
use wgrad::nn::{Init, Module, ModuleExt, RMSNorm, RotaryEmbedding};
use wgrad::prelude::*;

/// `f(x)` for the case's input, then the fixture's weighted-sum loss:
/// compares the output and the input's gradient.
fn check(case: &Value, dev: &Device, f: impl Fn(&Tensor) -> Tensor) {
    let name = case["name"].as_str().unwrap();
    let x = Tensor::from_vec(&floats(&case["inputs"][0]), &shape(&case["shapes"][0]), dev).requires_grad_();
    let out = f(&x);
    let close = |what: &str, got: &[f32], want: &[f32]| {
        wgrad::gpu_core::testing::assert_close(&format!("{name} {what} on {}", dev.name()), got, want, 1e-4, 1e-6)
    };
    close("output", &out.to_vec(), &floats(&case["out"]));
    let n = out.numel();
    let w: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 / (n - 1) as f32).collect();
    (&out * &Tensor::from_vec(&w, &out.shape(), dev)).sum_all().backward();
    close("input gradient", &x.grad().unwrap().to_vec(), &floats(&case["grads"][0]));
}

#[test]
fn rms_norm_matches_pytorch() {
    let fx = fixture("lm_pieces.json");
    for dev in devices("rms_norm_matches_pytorch") {
        for case in fx["rms_norm"].as_array().unwrap() {
            let normalized = shape(&case["normalized_shape"]);
            let mut m =
                RMSNorm::builder(&normalized).eps(case["eps"].as_f64().unwrap() as f32).build(&mut Init::new(&dev, 0));
            m.weight = case["weight"].as_array().map(|_| Tensor::from_vec(&floats(&case["weight"]), &normalized, &dev));
            if case["name"] == "rms_default_eps" {
                assert_eq!(
                    RMSNorm::builder(&normalized).build(&mut Init::new(&dev, 0)).eps,
                    m.eps,
                    "PyTorch's default eps"
                );
            }
            check(case, &dev, |x| m.forward(x));
        }
    }
}

#[test]
fn rotary_embeddings_match_pytorch() {
    let fx = fixture("lm_pieces.json");
    for dev in devices("rotary_embeddings_match_pytorch") {
        for case in fx["rope"].as_array().unwrap() {
            let s = shape(&case["shapes"][0]);
            let (seq, d) = (s[s.len() - 2], s[s.len() - 1]);
            let offset = case["offset"].as_u64().unwrap() as usize;
            let rope = RotaryEmbedding::builder(d, offset + seq + 5)
                .base(case["base"].as_f64().unwrap())
                .build(&mut Init::new(&dev, 0));
            check(case, &dev, |x| rope.apply(x, offset));
        }
    }
}

#[test]
fn rotation_preserves_norms_and_scores_depend_on_relative_position() {
    // What RoPE is for: rotating q at position m and k at n makes q·k a
    // function of m - n only.
    let dev = Device::cpu();
    let rope = RotaryEmbedding::builder(8, 16).build(&mut Init::new(&dev, 0));
    let (q, k) = (Tensor::randn(&[1, 8], 1, &dev), Tensor::randn(&[1, 8], 2, &dev));
    let score = |m: usize, n: usize| rope.apply(&q, m).matmul(&rope.apply(&k, n).t()).item();
    assert!((score(3, 1) - score(9, 7)).abs() < 1e-4, "{} vs {}", score(3, 1), score(9, 7));
    assert!((score(3, 1) - score(1, 3)).abs() > 1e-3, "not symmetric in general");
    let norm = |t: &Tensor| t.square().sum_all().item();
    assert!((norm(&rope.apply(&q, 5)) - norm(&q)).abs() < 1e-4);
}

#[test]
fn attention_weights_match_pytorch() {
    let c = &fixture("lm_pieces.json")["attention_weights"];
    for dev in devices("attention_weights_match_pytorch") {
        let heads = c["heads"].as_u64().unwrap() as usize;
        let mut m = wgrad::nn::MultiheadAttention::builder(8, heads).build(&mut Init::new(&dev, 0));
        m.eval();
        for (name, p) in m.named_parameters() {
            p.assign(&Tensor::from_vec(&floats(&c["params"][name.as_str()]), &p.shape(), &dev));
        }
        let t = |k: &str| Tensor::from_vec(&floats(&c[k]), &shape(&c[&format!("{k}_shape")]), &dev);
        let (q, kv) = (t("q"), t("kv"));
        let lengths: Vec<usize> =
            c["lengths"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let pad = wgrad::nn::padding_mask(&lengths, kv.shape()[0], &dev);
        let mask = wgrad::nn::AttentionMask { key_padding_mask: Some(&pad), ..Default::default() };
        let close = |what: &str, got: &Tensor, want: &str| {
            assert_eq!(got.shape(), shape(&c[&format!("{want}_shape")]), "{what}");
            wgrad::gpu_core::testing::assert_close(what, &got.to_vec(), &floats(&c[want]), 1e-4, 1e-6)
        };
        let (out, avg) = m.attend_with_weights(&q, &kv, &kv, &mask, true);
        wgrad::gpu_core::testing::assert_close("output", &out.to_vec(), &floats(&c["out"]), 1e-4, 1e-6);
        close(&format!("averaged weights on {}", dev.name()), &avg, "weights");
        let (_, per_head) = m.attend_with_weights(&q, &kv, &kv, &mask, false);
        close(&format!("per-head weights on {}", dev.name()), &per_head, "head_weights");
    }
}

#[test]
fn attention_with_kdim_and_vdim_matches_pytorch() {
    let c = &fixture("lm_pieces.json")["kv_dims"];
    let dim = |k: &str| c[k].as_u64().unwrap() as usize;
    for dev in devices("attention_with_kdim_and_vdim_matches_pytorch") {
        let m = MultiheadAttention::builder(dim("embed_dim"), dim("heads"))
            .kdim(dim("kdim"))
            .vdim(dim("vdim"))
            .batch_first(true)
            .build(&mut Init::new(&dev, 0));
        let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
        let want: Vec<String> =
            c["param_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        assert_eq!(names, want, "PyTorch's parameter names and order");
        for (name, p) in m.named_parameters() {
            p.assign(&Tensor::from_vec(&floats(&c["params"][name.as_str()]), &p.shape(), &dev));
        }
        let input =
            |i: usize| Tensor::from_vec(&floats(&c["inputs"][i]), &shape(&c["shapes"][i]), &dev).requires_grad_();
        let (q, k, v) = (input(0), input(1), input(2));
        let lengths: Vec<usize> =
            c["lengths"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let pad = wgrad::nn::padding_mask(&lengths, k.shape()[1], &dev);
        let mask = wgrad::nn::AttentionMask { key_padding_mask: Some(&pad), ..Default::default() };
        let out = m.attend(&q, &k, &v, &mask);
        let close = |what: &str, got: &[f32], want: &Value| {
            wgrad::gpu_core::testing::assert_close(&format!("{what} on {}", dev.name()), got, &floats(want), 1e-4, 1e-6)
        };
        assert_eq!(out.shape(), shape(&c["out_shape"]));
        close("output", &out.to_vec(), &c["out"]);
        let n = out.numel();
        let w: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 / (n - 1) as f32).collect();
        (&out * &Tensor::from_vec(&w, &out.shape(), &dev)).sum_all().backward();
        for (i, (what, t)) in [("query", &q), ("key", &k), ("value", &v)].into_iter().enumerate() {
            close(&format!("{what} gradient"), &t.grad().unwrap().to_vec(), &c["grads"][i]);
        }
        for (name, p) in m.named_parameters() {
            close(&format!("{name} gradient"), &p.grad().unwrap().to_vec(), &c["param_grads"][name.as_str()]);
        }
    }
}

#[test]
fn attention_with_other_key_widths_rejects_self_attention_and_wrong_widths() {
    let dev = Device::cpu();
    let m = MultiheadAttention::builder(8, 2).kdim(6).vdim(5).build(&mut Init::new(&dev, 0));
    assert_eq!((m.embed_dim(), m.kdim(), m.vdim()), (8, 6, 5));
    assert!(m.describe().contains("kdim=6, vdim=5"), "{}", m.describe());
    let x = Tensor::zeros(&[3, 1, 8], &dev);
    fn msg(f: impl FnOnce()) -> String {
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("must panic");
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    }
    let self_attn = msg(|| {
        m.self_attention(&x, &Default::default());
    });
    assert!(self_attn.contains("kdim (6) and vdim (5)"), "{self_attn}");
    let wrong_key = msg(|| {
        m.attend(&x, &x, &Tensor::zeros(&[3, 1, 5], &dev), &Default::default());
    });
    assert!(wrong_key.contains("key must be [L, B, 6]"), "{wrong_key}");
}
