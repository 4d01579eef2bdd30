//! The layers under autocast, now that matmul and Linear return f16: every
//! layer whose ops downstream of a product take f16 (or widen it at their
//! entrance) runs forward and backward without panicking, its output stays
//! within f16 rounding of the f32 run, and every parameter gets a finite f32
//! gradient. (Text models: attention, layer norm, the LSTM/GRU, embeddings.)

use wgrad_autograd::{autocast, DType, Device, RecurrentKind, Tensor};
use wgrad_gpu_core::testing::{assert_close, backends};
use wgrad_nn::{Embedding, Init, Linear, Module, ModuleExt, MultiheadAttention, Recurrent, TransformerEncoderLayer};

/// Forward (`f32` and under autocast) and backward of `forward` on `x`:
/// outputs close, every parameter's gradient f32 and finite.
fn check(what: &str, dev: &Device, params: Vec<Tensor>, forward: &dyn Fn() -> Tensor) {
    let want = forward().to_dtype(DType::F32).to_vec();
    let y = autocast(forward);
    let got = y.to_dtype(DType::F32).to_vec();
    assert_close(&format!("{what} on {}", dev.name()), &got, &want, 2e-2, 2e-2);
    y.to_dtype(DType::F32).sum_all().backward();
    for (i, p) in params.iter().enumerate() {
        let g = p.grad().unwrap_or_else(|| panic!("{what}: parameter {i} has no gradient"));
        assert_eq!(g.dtype(), DType::F32, "{what}: parameter {i}");
        assert!(g.to_vec().iter().all(|v| v.is_finite()), "{what}: parameter {i} has a non-finite gradient");
    }
}

fn rand(shape: &[usize], seed: u64, dev: &Device) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(&wgrad_gpu_core::testing::Rng::new(seed).vec(n, -1.0, 1.0), shape, dev)
}

#[test]
fn layers_run_under_autocast() {
    for dev in backends("layers_run_under_autocast") {
        let mut init = Init::new(&dev, 7);
        // Linear: one fused launch, f16 out (odd and even widths).
        for out in [5, 6] {
            let lin = Linear::builder(9, out).build(&mut init);
            let x = rand(&[4, 3, 9], 1, &dev);
            assert_eq!(autocast(|| lin.forward(&x)).dtype(), DType::F16);
            check(&format!("linear {out}"), &dev, lin.parameters(), &|| lin.forward(&x));
        }
        // A post-LN transformer encoder layer: attention, layer norm, FFN.
        let enc = TransformerEncoderLayer::builder(8, 2).dim_feedforward(16).dropout(0.0).build(&mut init);
        let x = rand(&[5, 2, 8], 2, &dev);
        check("transformer encoder layer", &dev, enc.parameters(), &|| enc.forward(&x));
        let mha = MultiheadAttention::builder(8, 2).batch_first(true).build(&mut init);
        let xb = rand(&[2, 5, 8], 3, &dev);
        check("multihead attention", &dev, mha.parameters(), &|| mha.forward(&xb));
        // Recurrent layers after an embedding and a Linear.
        let emb = Embedding::builder(11, 6).build(&mut init);
        let proj = Linear::builder(6, 6).build(&mut init);
        let ids = Tensor::from_u32(&[1, 4, 10, 0, 3, 3], &[3, 2], &dev);
        let lstm = Recurrent::builder(RecurrentKind::Lstm, 6, 5).build(&mut init);
        let gru = Recurrent::builder(RecurrentKind::Gru, 6, 5).build(&mut init);
        for (name, rnn) in [("lstm", &lstm), ("gru", &gru)] {
            let mut params = rnn.parameters();
            params.extend(proj.parameters());
            params.extend(emb.parameters());
            check(name, &dev, params, &|| rnn.forward(&proj.forward(&emb.forward(&ids))));
        }
    }
}
