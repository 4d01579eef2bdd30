//! Sequence layers beyond the PyTorch fixtures: layouts (batch-first,
//! unbatched), state handling and truncated BPTT, parameter names and counts,
//! masks, positional encodings, the seq2seq attention scorers, and errors.

use wgrad_autograd::{no_grad, Device, RecurrentKind, Tensor};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip, gpu_or_skip, Rng};
use wgrad_nn::train::TruncatedBptt;
use wgrad_nn::*;

fn backends(test: &str) -> Vec<Device> {
    let mut v = vec![Device::cpu()];
    v.extend(gpu_or_skip(test));
    v
}

fn rand(shape: &[usize], seed: u64, dev: &Device) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(&Rng::new(seed).vec(n, -1.0, 1.0), shape, dev)
}

#[test]
fn parameter_names_and_counts_match_pytorch() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 0);
    // nn.LSTM(10, 20, num_layers=2, bidirectional=True): 4·20·(10+20+2)·2 + 4·20·(40+20+2)·2 = 15,040.
    let lstm = LSTM::builder(10, 20).num_layers(2).bidirectional(true).build(&mut init);
    assert_eq!(lstm.num_parameters(), 15_040);
    let names: Vec<String> = lstm.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(&names[..5], ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l0_reverse"]);
    assert_eq!(lstm.named_parameters()[8].1.shape(), [80, 40]); // weight_ih_l1 reads both directions
                                                                // nn.GRU(8, 16, bias=False): 3·16·(8+16) = 1,152.
    let gru = GRU::builder(8, 16).bias(false).build(&mut init);
    assert_eq!(gru.num_parameters(), 1_152);
    assert_eq!(gru.describe(), "GRU(8, 16, bias=False)");
    // nn.MultiheadAttention(16, 4): 3·16·16 + 3·16 + 16·16 + 16 = 1,088.
    let mha = MultiheadAttention::builder(16, 4).batch_first(true).build(&mut init);
    assert_eq!(mha.num_parameters(), 1_088);
    // nn.TransformerEncoderLayer(16, 4, 32): 1,088 + (16·32 + 32) + (32·16 + 16) + 4·16 = 2,224.
    let enc = TransformerEncoderLayer::builder(16, 4).dim_feedforward(32).build(&mut init);
    assert_eq!(enc.num_parameters(), 2_224);
    // Decoder: another attention and norm: 2,224 + 1,088 + 32.
    let dec = TransformerDecoderLayer::builder(16, 4).dim_feedforward(32).build(&mut init);
    assert_eq!(dec.num_parameters(), 3_344);
}

#[test]
fn batch_first_and_unbatched_agree_with_time_major() {
    for dev in backends("batch_first_and_unbatched_agree_with_time_major") {
        for kind in [RecurrentKind::RnnTanh, RecurrentKind::Lstm, RecurrentKind::Gru] {
            let cfg = Recurrent::builder(kind, 3, 5).num_layers(2).bidirectional(true);
            let tm = cfg.build(&mut Init::new(&dev, 1));
            let bf = cfg.batch_first(true).build(&mut Init::new(&dev, 1));
            let x = rand(&[4, 2, 3], 2, &dev);
            let (y_tm, s_tm) = tm.forward_with_state(&x, None);
            let (y_bf, s_bf) = bf.forward_with_state(&x.transpose(0, 1), None);
            assert_eq!(y_tm.shape(), [4, 2, 10]);
            let what = format!("{kind:?} on {}", dev.name());
            assert_close(&what, &y_bf.transpose(0, 1).to_vec(), &y_tm.to_vec(), 1e-6, 1e-6);
            assert_close(&what, &s_bf.h.to_vec(), &s_tm.h.to_vec(), 1e-6, 1e-6);
            // One sequence of the batch alone, unbatched: same numbers.
            let x1 = x.narrow(1, 1, 1).reshape(&[4, 3]);
            let (y1, s1) = tm.forward_with_state(&x1, None);
            assert_eq!(s1.h.shape(), [4, 5]);
            let want = y_tm.narrow(1, 1, 1).reshape(&[4, 10]).to_vec();
            assert_close(&what, &y1.to_vec(), &want, 1e-5, 1e-6);
            // The last output of the forward direction is its final state.
            let last = y_tm.narrow(0, 3, 1).narrow(2, 0, 5).reshape(&[2, 5]).to_vec();
            assert_close(&what, &s_tm.h.narrow(0, 2, 1).reshape(&[2, 5]).to_vec(), &last, 1e-6, 1e-6);
        }
    }
}

#[test]
fn state_carries_over_chunks_and_tbptt_cuts_the_graph() {
    for dev in backends("state_carries_over_chunks_and_tbptt_cuts_the_graph") {
        let m = LSTM::builder(3, 4).num_layers(2).build(&mut Init::new(&dev, 3));
        let x = rand(&[6, 2, 3], 4, &dev);
        // Two chunks with the state carried equal one pass over the whole sequence.
        let (whole, _) = m.forward_with_state(&x, None);
        let mut tbptt = TruncatedBptt::new();
        let mut parts = Vec::new();
        for r in TruncatedBptt::chunks(6, 4) {
            let (y, s) = m.forward_with_state(&x.narrow(0, r.start, r.len()), tbptt.state());
            tbptt.carry(&s);
            parts.push(y);
        }
        assert_eq!(parts[1].shape(), [2, 2, 4]);
        let joined = Tensor::cat(&[&parts[0], &parts[1]], 0);
        assert_close(&format!("chunks on {}", dev.name()), &joined.to_vec(), &whole.to_vec(), 1e-5, 1e-6);
        // The carried state is detached: a loss on chunk 2 leaves chunk 1's input without gradient.
        let x1 = x.narrow(0, 0, 3).detach().requires_grad_();
        let (_, s) = m.forward_with_state(&x1, None);
        tbptt.carry(&s);
        let (y2, _) = m.forward_with_state(&x.narrow(0, 3, 3), tbptt.state());
        y2.sum_all().backward();
        assert!(x1.grad().is_none(), "gradient crossed a truncation boundary");
        assert!(m.named_parameters()[0].1.grad().is_some());
        tbptt.reset();
        assert!(tbptt.state().is_none());
    }
}

#[test]
fn inter_layer_dropout_only_in_training() {
    let dev = Device::cpu();
    let mut m = GRU::builder(3, 8).num_layers(2).dropout(0.5).build(&mut Init::new(&dev, 5));
    let x = rand(&[5, 2, 3], 6, &dev);
    let a = m.forward(&x).to_vec();
    let b = m.forward(&x).to_vec();
    assert_ne!(a, b, "training mode: fresh dropout masks differ");
    m.eval();
    assert_eq!(m.forward(&x).to_vec(), m.forward(&x).to_vec());
    // One layer has no inter-layer dropout at all.
    let one = GRU::builder(3, 8).dropout(0.5).build(&mut Init::new(&dev, 5));
    assert_eq!(one.forward(&x).to_vec(), one.forward(&x).to_vec());
}

#[test]
fn the_input_bias_rides_in_the_projection() {
    // b_ih is added in the store of the input projection: the forward
    // records no add over the whole [T·B, 4H] product, for the layer and
    // the cell, on the CPU backend and the adapter (the layer adds its two
    // biases, 4H values, once). A GPU device of the test's own: the profile
    // counts every launch on its device, and other tests share the common one.
    let mut devs = vec![Device::cpu()];
    devs.extend(fresh_gpu_or_skip("the_input_bias_rides_in_the_projection"));
    for dev in devs {
        let mut init = Init::new(&dev, 0);
        let (layer, cell) = (LSTM::builder(6, 5).build(&mut init), LSTMCell::builder(6, 5).build(&mut init));
        for (what, x, m) in
            [("LSTM", rand(&[16, 8, 6], 1, &dev), &layer as &dyn Module), ("LSTMCell", rand(&[8, 6], 2, &dev), &cell)]
        {
            let (_, p) = dev.profile(|| m.forward(&x).to_vec()).unwrap();
            let ops: Vec<&str> = p.launches.iter().map(|l| l.op.as_str()).collect();
            // Bytes of the projection, [T·B, 4H] f32.
            let projection = (x.numel() / 6 * 4 * 5 * 4) as u64;
            let big_adds = p.launches.iter().filter(|l| l.op == "add" && l.bytes_moved >= projection).count();
            assert!(ops.contains(&"linear") && big_adds == 0, "{what} on {}: {ops:?}", dev.name());
        }
    }
}

#[test]
fn cells_match_one_step_of_the_layer() {
    for dev in backends("cells_match_one_step_of_the_layer") {
        for kind in [RecurrentKind::RnnRelu, RecurrentKind::Lstm, RecurrentKind::Gru] {
            let layer = Recurrent::builder(kind, 3, 4).build(&mut Init::new(&dev, 7));
            let cell = RecurrentCell::builder(kind, 3, 4).build(&mut Init::new(&dev, 8));
            for ((_, p), (_, q)) in layer.named_parameters().iter().zip(cell.named_parameters()) {
                no_grad(|| q.assign(p));
            }
            let x = rand(&[1, 2, 3], 9, &dev);
            let (y, _) = layer.forward_with_state(&x, None);
            let (h, c) = cell.step(&x.reshape(&[2, 3]), None);
            assert_eq!(c.is_some(), kind == RecurrentKind::Lstm);
            assert_close(&format!("{kind:?} cell on {}", dev.name()), &h.to_vec(), &y.to_vec(), 1e-6, 1e-6);
        }
    }
}

#[test]
fn attention_masks_and_padding() {
    for dev in backends("attention_masks_and_padding") {
        assert_eq!(
            causal_mask(2, 3, &dev).to_vec(),
            [0.0, f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0, 0.0, f32::NEG_INFINITY]
        );
        let pad = padding_mask(&[2, 0], 2, &dev).to_vec();
        assert_eq!(pad, [0.0, 0.0, f32::NEG_INFINITY, f32::NEG_INFINITY]);
        let mut mha = MultiheadAttention::builder(6, 3).batch_first(true).build(&mut Init::new(&dev, 1));
        mha.eval();
        // Padding keys must not change the output: compare 3 real keys with 3 + 2 garbage keys masked.
        let q = rand(&[1, 2, 6], 1, &dev);
        let kv = rand(&[1, 3, 6], 2, &dev);
        let garbage = rand(&[1, 2, 6], 3, &dev).mul_scalar(50.0);
        let kv_padded = Tensor::cat(&[&kv, &garbage], 1);
        let mask = padding_mask(&[3], 5, &dev);
        let want = mha.attend(&q, &kv, &kv, &AttentionMask::default()).to_vec();
        let got = mha.attend(
            &q,
            &kv_padded,
            &kv_padded,
            &AttentionMask { key_padding_mask: Some(&mask), ..Default::default() },
        );
        assert_close(&format!("padding on {}", dev.name()), &got.to_vec(), &want, 1e-5, 1e-6);
        // Causal: the first output depends only on the first position.
        let x = rand(&[1, 4, 6], 4, &dev);
        let y = mha.self_attention(&x, &AttentionMask::causal());
        let y1 = mha.self_attention(&x.narrow(1, 0, 1), &AttentionMask::default());
        assert_close("causal first row", &y.narrow(1, 0, 1).to_vec(), &y1.to_vec(), 1e-5, 1e-6);
        // Time-major input gives the transposed result.
        let mut tm = MultiheadAttention::builder(6, 3).build(&mut Init::new(&dev, 1));
        tm.eval();
        let y_tm = tm.self_attention(&x.transpose(0, 1), &AttentionMask::causal());
        assert_close("time-major", &y_tm.transpose(0, 1).to_vec(), &y.to_vec(), 1e-6, 1e-6);
    }
}

#[test]
fn attention_dropout_is_active_only_in_training() {
    let dev = Device::cpu();
    let mut mha = MultiheadAttention::builder(8, 2).dropout(0.5).batch_first(true).build(&mut Init::new(&dev, 2));
    let x = rand(&[2, 5, 8], 5, &dev);
    let a = mha.forward(&x).to_vec();
    assert_ne!(a, mha.forward(&x).to_vec());
    mha.eval();
    let e = mha.forward(&x).to_vec();
    assert_eq!(e, mha.forward(&x).to_vec());
    // With p = 0 the training (composite) path and the fused path agree.
    let mut plain = MultiheadAttention::builder(8, 2).batch_first(true).build(&mut Init::new(&dev, 2));
    for ((_, p), (_, q)) in mha.named_parameters().iter().zip(plain.named_parameters()) {
        no_grad(|| q.assign(p));
    }
    plain.eval();
    assert_close("fused vs eval", &plain.forward(&x).to_vec(), &e, 1e-6, 1e-6);
}

#[test]
fn positional_encodings() {
    let dev = Device::cpu();
    let pe = SinusoidalPositionalEncoding::builder(6, 10).batch_first(true).build(&mut Init::new(&dev, 0));
    let e = pe.encodings(3).to_vec();
    // pos 0: sin 0 = 0, cos 0 = 1; pos 2, i = 2: sin(2 / 10000^(2/6)).
    assert_eq!(&e[..6], &[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
    assert!((e[12 + 2] - (2.0f64 / 10000f64.powf(2.0 / 6.0)).sin() as f32).abs() < 1e-6);
    let x = Tensor::zeros(&[2, 3, 6], &dev);
    assert_eq!(pe.forward(&x).narrow(0, 1, 1).to_vec(), e);
    let tm = SinusoidalPositionalEncoding::builder(6, 10).build(&mut Init::new(&dev, 0));
    assert_eq!(tm.forward(&Tensor::zeros(&[3, 2, 6], &dev)).narrow(1, 0, 1).to_vec(), e);
    let learned = LearnedPositionalEmbedding::builder(10, 6).build(&mut Init::new(&dev, 0));
    assert_eq!(learned.named_parameters()[0].0, "weight");
    let y = learned.forward(&x);
    assert_eq!(y.narrow(0, 0, 1).to_vec(), learned.weight.narrow(0, 0, 3).to_vec());
}

#[test]
fn seq2seq_attention_scorers() {
    for dev in backends("seq2seq_attention_scorers") {
        let keys = rand(&[2, 4, 3], 1, &dev);
        let q = rand(&[2, 3], 2, &dev);
        let mask = padding_mask(&[4, 2], 4, &dev);
        let dot = DotProductAttention { scaled: false };
        let (ctx, w) = dot.attend(&q, &keys, Some(&mask));
        // Weights are a softmax of q·k with masked keys at zero; the context is their mix of keys.
        let (kv, qv, wv) = (keys.to_vec(), q.to_vec(), w.to_vec());
        for b in 0..2 {
            let valid = if b == 0 { 4 } else { 2 };
            let s: Vec<f32> =
                (0..valid).map(|j| (0..3).map(|d| qv[b * 3 + d] * kv[b * 12 + j * 3 + d]).sum()).collect();
            let m = s.iter().cloned().fold(f32::MIN, f32::max);
            let z: f32 = s.iter().map(|v| (v - m).exp()).sum();
            for j in 0..4 {
                let want = if j < valid { (s[j] - m).exp() / z } else { 0.0 };
                assert!((wv[b * 4 + j] - want).abs() < 1e-5, "weight {b},{j} on {}", dev.name());
            }
            for d in 0..3 {
                let want: f32 = (0..4).map(|j| wv[b * 4 + j] * kv[b * 12 + j * 3 + d]).sum();
                assert!((ctx.to_vec()[b * 3 + d] - want).abs() < 1e-5);
            }
        }
        let add = AdditiveAttention::builder(3, 3, 5).build(&mut Init::new(&dev, 3));
        let (ctx, w) = add.attend(&q, &keys, Some(&mask));
        assert_eq!((ctx.shape().to_vec(), w.shape().to_vec()), (vec![2, 3], vec![2, 4]));
        let wv = w.to_vec();
        assert!((wv[..4].iter().sum::<f32>() - 1.0).abs() < 1e-5 && wv[6] == 0.0 && wv[7] == 0.0, "{wv:?}");
        let names: Vec<String> = add.named_parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["query.weight", "key.weight", "key.bias", "v.weight"]);
    }
}

#[test]
#[should_panic(expected = "LSTM: expects input [T, B, 3]")]
fn wrong_input_width_is_a_clear_error() {
    let dev = Device::cpu();
    let m = LSTM::builder(3, 4).build(&mut Init::new(&dev, 0));
    m.forward(&Tensor::zeros(&[2, 2, 5], &dev));
}

#[test]
#[should_panic(expected = "a cell state is given exactly when the layer is an LSTM")]
fn lstm_state_without_cell_is_a_clear_error() {
    let dev = Device::cpu();
    let m = LSTM::builder(3, 4).build(&mut Init::new(&dev, 0));
    let s = RecurrentState { h: Tensor::zeros(&[1, 2, 4], &dev), c: None };
    m.forward_with_state(&Tensor::zeros(&[2, 2, 3], &dev), Some(&s));
}

#[test]
#[should_panic(expected = "embed_dim 10 must be a positive multiple of heads 4")]
fn heads_must_divide_the_width() {
    MultiheadAttention::builder(10, 4).batch_first(true).build(&mut Init::new(&Device::cpu(), 0));
}

/// With dropout off (p = 0, or eval mode), an encoder layer's residual adds
/// ride in the stores of `out_proj` and `linear2`, and its ReLU in
/// `linear1`'s: the fuser's doing, so the layer written out by hand with
/// plain ops gets them too (the same launches, the same values and
/// gradients, bit for bit), and a GPU that does not fuse runs three
/// launches more forward; pre-norm and post-norm.
#[test]
fn transformer_residual_adds_ride_in_the_products_stores() {
    // A device of its own: launches are counted (a shared one counts the
    // tests running beside this one too).
    let gpu = fresh_gpu_or_skip("transformer_residual_adds_ride_in_the_products_stores");
    for dev in [Device::cpu()].into_iter().chain(gpu) {
        for norm_first in [true, false] {
            let mut init = Init::new(&dev, 5);
            let layer = TransformerEncoderLayer::builder(16, 4)
                .dim_feedforward(24)
                .dropout(0.0)
                .batch_first(true)
                .norm_first(norm_first)
                .build(&mut init);
            let p: std::collections::HashMap<String, Tensor> = layer.named_parameters().into_iter().collect();
            let ff = |h: &Tensor| {
                let h = h.linear(&p["linear1.weight"], Some(&p["linear1.bias"])).relu();
                h.linear(&p["linear2.weight"], Some(&p["linear2.bias"]))
            };
            let mask = AttentionMask::causal();
            let by_hand = |x: &Tensor| {
                let attn = |h: &Tensor| layer.self_attn.self_attention(h, &mask);
                if norm_first {
                    let x = x + &attn(&layer.norm1.forward(x));
                    &x + &ff(&layer.norm2.forward(&x))
                } else {
                    // Each sum in a statement of its own: a temporary lives
                    // to the end of its statement, and a product's result
                    // still held when the norm's launch settles the run
                    // keeps its reader out of its store.
                    let s = x + &attn(x);
                    let x = layer.norm1.forward(&s);
                    let s = &x + &ff(&x);
                    layer.norm2.forward(&s)
                }
            };
            let run = |layered: bool, fuse: bool| {
                dev.set_fusion(fuse).unwrap();
                let x = rand(&[2, 5, 16], 7, &dev).requires_grad_();
                let before = dev.stats().dispatches;
                let y = if layered { layer.forward_masked(&x, &mask) } else { by_hand(&x) };
                let out = y.to_vec();
                let launches = dev.stats().dispatches - before;
                y.square().sum_all().backward();
                let grads: Vec<Vec<f32>> = [&x, &p["linear2.weight"], &p["self_attn.out_proj.bias"]]
                    .iter()
                    .map(|t| {
                        let g = t.grad().unwrap().to_vec();
                        t.zero_grad();
                        g
                    })
                    .collect();
                dev.set_fusion(true).unwrap();
                (out, grads, launches)
            };
            let (y, g, layer_launches) = run(true, true);
            let (want_y, want_g, hand_launches) = run(false, true);
            let (unfused_y, unfused_g, unfused_launches) = run(false, false);
            let what = format!("norm_first={norm_first} on {}", dev.name());
            assert_eq!(y, want_y, "{what}: values");
            assert_eq!(g, want_g, "{what}: gradients");
            assert_eq!((&y, &g), (&unfused_y, &unfused_g), "{what}: values and gradients unfused");
            if dev.is_gpu() {
                assert_eq!(layer_launches, hand_launches, "{what}: the layer asks the fuser for nothing");
                assert_eq!(layer_launches + 3, unfused_launches, "{what}: the two adds and the ReLU are not launches");
            }
        }
    }
}
