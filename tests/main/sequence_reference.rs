//! Sequence layers against PyTorch (fixture `tests/fixtures/sequence.json`,
//! made by `tests/fixtures/gen_sequence.py`): nn.RNN/LSTM/GRU with 2
//! bidirectional layers and their cells, nn.MultiheadAttention (causal mask;
//! cross-attention with key padding), nn.TransformerEncoderLayer and
//! nn.TransformerDecoderLayer in both norm placements. Outputs, final states
//! and the gradients of every parameter and input within 1e-4 relative, from
//! the same weights, on the CPU backend and the GPU.

use crate::common;
use common::*;
use serde_json::Value;
use wgrad::nn::*;
use wgrad::prelude::*;

#[track_caller]
fn close(what: &str, got: &[f32], want: &[f32]) {
    wgrad::gpu_core::testing::assert_close(what, got, want, 1e-4, 1e-5);
}

/// The fixture's weighting of an output: linspace(0.5, 1.5, n).
fn weights(t: &Tensor) -> Tensor {
    let n = t.numel();
    let w: Vec<f32> = (0..n).map(|i| if n == 1 { 0.5 } else { 0.5 + i as f32 / (n - 1) as f32 }).collect();
    Tensor::from_vec(&w, &t.shape(), &t.device())
}

/// A fixture tensor (`{shape, data}`), requiring grad.
fn tensor(v: &Value, dev: &Device) -> Tensor {
    Tensor::from_vec(&floats(&v["data"]), &shape(&v["shape"]), dev).requires_grad_()
}

/// Loads the case's parameters into `m` by name, checking PyTorch's order.
fn load(case: &Value, m: &(dyn Module + 'static), dev: &Device) {
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    let want: Vec<String> =
        case["param_order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(names, want, "{}: parameter names and order", case["name"]);
    for (name, p) in m.named_parameters() {
        let v = &case["params"][&name];
        assert_eq!(p.shape(), shape(&v["shape"]), "{}: shape of {name}", case["name"]);
        no_grad(|| p.assign(&Tensor::from_vec(&floats(&v["data"]), &p.shape(), dev)));
    }
}

/// Compares the outputs, backpropagates the fixture's loss and compares
/// every parameter's and input's gradient.
fn check(
    case: &Value,
    m: &(dyn Module + 'static),
    inputs: &[(&str, &Tensor)],
    outputs: &[(&str, Tensor)],
    dev: &Device,
) {
    let name = case["name"].as_str().unwrap();
    let on = dev.name();
    let mut loss: Option<Tensor> = None;
    for (key, out) in outputs {
        let want = &case["outputs"][*key];
        assert_eq!(out.shape(), shape(&want["shape"]), "{name}: shape of {key}");
        close(&format!("{name} {key} on {on}"), &out.to_vec(), &floats(&want["data"]));
        let l = (out * &weights(out)).sum_all();
        loss = Some(match loss {
            Some(acc) => acc + l,
            None => l,
        });
    }
    loss.unwrap().backward();
    for (pname, p) in m.named_parameters() {
        let g = p.grad().unwrap_or_else(|| panic!("{name}: {pname} got no gradient"));
        close(&format!("{name} grad {pname} on {on}"), &g.to_vec(), &floats(&case["params"][&pname]["grad"]));
    }
    for (key, x) in inputs {
        let want = &case["inputs"][*key]["grad"];
        if !want.is_null() {
            close(&format!("{name} grad input {key} on {on}"), &x.grad().unwrap().to_vec(), &floats(want));
        }
    }
}

#[test]
fn recurrent_layers_match_pytorch() {
    let f = fixture("sequence.json");
    for dev in devices("recurrent_layers_match_pytorch") {
        for case in f["recurrent"].as_array().unwrap() {
            let kind = case["kind"].as_str().unwrap();
            let t = |k: &str| tensor(&case["inputs"][k], &dev);
            let mut init = Init::new(&dev, 0);
            if kind.ends_with("_cell") {
                let k = match kind {
                    "lstm_cell" => RecurrentKind::Lstm,
                    "gru_cell" => RecurrentKind::Gru,
                    _ => RecurrentKind::RnnTanh,
                };
                let cell = RecurrentCell::builder(k, 4, 6).build(&mut init);
                load(case, &cell, &dev);
                let (x, h) = (t("x"), t("h"));
                if k == RecurrentKind::Lstm {
                    let c = t("c");
                    let (h1, c1) = cell.step(&x, Some((&h, Some(&c))));
                    let outs = [("h", h1), ("c", c1.unwrap())];
                    check(case, &cell, &[("x", &x), ("h", &h), ("c", &c)], &outs, &dev);
                } else {
                    let (h1, _) = cell.step(&x, Some((&h, None)));
                    check(case, &cell, &[("x", &x), ("h", &h)], &[("h", h1)], &dev);
                }
                continue;
            }
            fn options<L>(b: RecurrentBuilder<L>, case: &Value) -> RecurrentBuilder<L> {
                b.num_layers(case["layers"].as_u64().unwrap() as usize)
                    .bidirectional(case["bidirectional"].as_bool().unwrap())
                    .batch_first(case["batch_first"].as_bool().unwrap())
                    .bias(case["bias"].as_bool().unwrap_or(true))
            }
            // The distinct types share one implementation (`Recurrent`).
            let m: Recurrent = match kind {
                "rnn_tanh" => options(RNN::builder(4, 6), case).build(&mut init).into(),
                "rnn_relu" => options(RNN::builder(4, 6), case).relu(true).build(&mut init).into(),
                "lstm" => options(LSTM::builder(4, 6), case).build(&mut init).into(),
                "gru" => options(GRU::builder(4, 6), case).build(&mut init).into(),
                other => panic!("unknown fixture kind {other}"),
            };
            load(case, &m, &dev);
            let x = t("x");
            let has = |k: &str| !case["inputs"][k].is_null();
            let state = has("h0").then(|| RecurrentState { h: t("h0"), c: has("c0").then(|| t("c0")) });
            let (out, s) = m.forward_with_state(&x, state.as_ref());
            let mut outs = vec![("out", out), ("h_n", s.h)];
            outs.extend(s.c.map(|c| ("c_n", c)));
            let mut inputs = vec![("x", &x)];
            if let Some(st) = &state {
                inputs.push(("h0", &st.h));
                if let Some(c) = &st.c {
                    inputs.push(("c0", c));
                }
            }
            check(case, &m, &inputs, &outs, &dev);
        }
    }
}

#[test]
fn multihead_attention_matches_pytorch() {
    let f = fixture("sequence.json");
    for dev in devices("multihead_attention_matches_pytorch") {
        for case in f["attention"].as_array().unwrap() {
            let heads = case["heads"].as_u64().unwrap() as usize;
            let batch_first = case["batch_first"].as_bool().unwrap();
            let mut m = MultiheadAttention::builder(8, heads).batch_first(batch_first).build(&mut Init::new(&dev, 0));
            m.eval();
            load(case, &m, &dev);
            let t = |k: &str| tensor(&case["inputs"][k], &dev);
            match case["name"].as_str().unwrap() {
                "mha_causal_self" => {
                    let x = t("x");
                    let l = x.shape()[1];
                    // The flag and an explicit mask are the same thing; check both.
                    let out = m.self_attention(&x, &AttentionMask::causal());
                    check(case, &m, &[("x", &x)], &[("out", out)], &dev);
                    m.zero_grad();
                    let x = t("x");
                    let mask = causal_mask(l, l, &dev);
                    let out = m.self_attention(&x, &AttentionMask { attn_mask: Some(&mask), ..Default::default() });
                    check(case, &m, &[("x", &x)], &[("out", out)], &dev);
                }
                "mha_cross_padding" => {
                    let (q, kv) = (t("q"), t("kv"));
                    let lengths: Vec<usize> =
                        case["lengths"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
                    let pad = padding_mask(&lengths, kv.shape()[0], &dev);
                    let out =
                        m.attend(&q, &kv, &kv, &AttentionMask { key_padding_mask: Some(&pad), ..Default::default() });
                    check(case, &m, &[("q", &q), ("kv", &kv)], &[("out", out)], &dev);
                }
                other => panic!("unknown fixture case {other}"),
            }
        }
    }
}

#[test]
fn transformer_layers_match_pytorch() {
    let f = fixture("sequence.json");
    for dev in devices("transformer_layers_match_pytorch") {
        for case in f["transformer"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let heads = case["heads"].as_u64().unwrap() as usize;
            fn options<L>(b: TransformerBuilder<L>, case: &Value) -> TransformerBuilder<L> {
                b.dim_feedforward(case["ffn"].as_u64().unwrap() as usize)
                    .dropout(0.0)
                    .batch_first(true)
                    .norm_first(case["norm_first"].as_bool().unwrap())
                    .activation(match case["activation"].as_str().unwrap() {
                        "gelu" => FeedForwardActivation::Gelu,
                        _ => FeedForwardActivation::Relu,
                    })
            }
            let t = |k: &str| tensor(&case["inputs"][k], &dev);
            let mut init = Init::new(&dev, 0);
            if name.starts_with("encoder") {
                let layer = options(TransformerEncoderLayer::builder(8, heads), case).build(&mut init);
                load(case, &layer, &dev);
                let x = t("x");
                let out = layer.forward_masked(&x, &AttentionMask::causal());
                check(case, &layer, &[("x", &x)], &[("out", out)], &dev);
            } else {
                let layer = options(TransformerDecoderLayer::builder(8, heads), case).build(&mut init);
                load(case, &layer, &dev);
                let (tgt, mem) = (t("tgt"), t("memory"));
                let lengths: Vec<usize> =
                    case["lengths"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
                let pad = padding_mask(&lengths, mem.shape()[1], &dev);
                let mem_mask = AttentionMask { key_padding_mask: Some(&pad), ..Default::default() };
                let out = layer.forward_with_memory(&tgt, &mem, &AttentionMask::causal(), &mem_mask);
                check(case, &layer, &[("tgt", &tgt), ("memory", &mem)], &[("out", out)], &dev);
            }
        }
    }
}
