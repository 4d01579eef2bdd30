//! One construction style: `X::builder(sizes)`, named options with PyTorch's
//! defaults, `.build(&mut init)`. Checks that the defaults are PyTorch's,
//! that every option reaches the layer, that bad options fail at build time
//! with a message naming the layer, and that the builders draw exactly what
//! the positional constructors they replaced drew (so every seeded run and
//! fixture keeps its numbers). The layers live in `wgrad-nn`; this file sits
//! in `wgrad-models` so it can also check the models built from them.

use std::panic::{catch_unwind, AssertUnwindSafe};

use wgrad_autograd::{ConvTranspose2dOptions, Device, RecurrentKind, Tensor};
use wgrad_models::*;
use wgrad_nn::*;

/// FNV-1a over every parameter's name and f32 bits, in state-dict order, and
/// the parameter count.
fn fingerprint(m: &(dyn Module + 'static)) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    };
    let ps = m.named_parameters();
    for (n, t) in &ps {
        n.bytes().for_each(&mut eat);
        for v in t.to_vec() {
            v.to_bits().to_le_bytes().into_iter().for_each(&mut eat);
        }
    }
    format!("{h:016x} {}", ps.len())
}

/// What the positional constructors of commit 2baf500 (`Linear::new(5, 3,
/// true, &mut Generator::new(1), &dev)`, ...) produced on the CPU backend for
/// the same layers and seeds, printed by a throwaway test on that commit.
/// The builders must reproduce them bit for bit.
const BEFORE: &[(&str, &str)] = &[
    ("linear", "87131f5dc25ebb00 2"),
    ("linear_nobias", "462aa55deb3efc3a 1"),
    ("conv2d", "e6f0f31dd6548b54 2"),
    ("conv1d", "2ce6ae2b70d14e3d 2"),
    ("conv_transpose2d", "85867abedb9aa1f6 2"),
    ("embedding", "02123827d9315f1c 1"),
    ("mha", "0a5a0496b88f2dfb 4"),
    ("mha_kv", "8b6221ac167c6ff9 6"),
    ("lstm", "3b0cafa9c66ce8f8 16"),
    ("gru_cell", "9066063154846250 4"),
    ("encoder", "92dde79c48d31033 12"),
    ("decoder", "3a7c62ff9524f160 18"),
    ("learned_pos", "3a5107b9dcffb167 1"),
    ("additive", "541159f553217e62 4"),
    ("gpt", "9a77c9252e67f357 28"),
    ("resnet20", "a81b1eb7810470bf 59"),
    ("rnn_lm", "50fc42a832e3295b 11"),
    ("vae", "76e88f6fcbb8d979 10"),
    ("mnist_cnn", "589c58f57bdfd011 6"),
    ("dropout_mask", "0111101000010111011000000000111110011110110100011111111000011111"),
];

fn built(dev: &Device) -> Vec<(&'static str, String)> {
    let i = |seed| Init::new(dev, seed);
    let mut out = vec![
        ("linear", fingerprint(&Linear::builder(5, 3).build(&mut i(1)))),
        ("linear_nobias", fingerprint(&Linear::builder(5, 3).bias(false).build(&mut i(1)))),
        ("conv2d", fingerprint(&Conv2d::builder(6, 4, 3).stride(2).padding(1).groups(2).build(&mut i(2)))),
        ("conv1d", fingerprint(&Conv1d::builder(3, 6, 3).padding(1).groups(3).build(&mut i(3)))),
        (
            "conv_transpose2d",
            fingerprint(
                &ConvTranspose2d::builder(4, 2, 3).options(ConvTranspose2dOptions::new().stride(2)).build(&mut i(4)),
            ),
        ),
        ("embedding", fingerprint(&Embedding::builder(7, 4).padding_idx(0).build(&mut i(5)))),
        ("mha", fingerprint(&MultiheadAttention::builder(8, 2).batch_first(true).build(&mut i(6)))),
        ("mha_kv", fingerprint(&MultiheadAttention::builder(8, 2).kdim(6).vdim(5).build(&mut i(7)))),
        ("lstm", fingerprint(&LSTM::builder(3, 4).num_layers(2).bidirectional(true).build(&mut i(8)))),
        ("gru_cell", fingerprint(&GRUCell::builder(3, 5).build(&mut i(9)))),
        ("encoder", fingerprint(&TransformerEncoderLayer::builder(8, 2).dim_feedforward(16).build(&mut i(10)))),
        ("decoder", fingerprint(&TransformerDecoderLayer::builder(8, 2).dim_feedforward(16).build(&mut i(11)))),
        ("learned_pos", fingerprint(&LearnedPositionalEmbedding::builder(6, 4).build(&mut i(12)))),
        ("additive", fingerprint(&AdditiveAttention::builder(3, 4, 5).build(&mut i(13)))),
        ("gpt", fingerprint(&Gpt::builder(11, 8).layers(2).heads(2).width(16).tie_weights(true).build(&mut i(14)))),
        ("resnet20", fingerprint(&ResNet::cifar(20, 10, Shortcut::ZeroPad, &mut i(15)))),
        ("rnn_lm", fingerprint(&RnnLm::builder(9).embed(4).hidden(6).layers(2).build(&mut i(16)))),
        ("vae", fingerprint(&Vae::new(32, 4, &mut i(17)))),
        ("mnist_cnn", fingerprint(&mnist_cnn(&mut i(18)))),
    ];
    let d = Dropout::builder(0.5).build(&mut i(19));
    let mask = d.forward(&Tensor::ones(&[64], dev)).to_vec();
    out.push(("dropout_mask", mask.iter().map(|v| if *v > 0.0 { '1' } else { '0' }).collect()));
    out
}

#[test]
fn builders_draw_exactly_what_the_positional_constructors_drew() {
    let got = built(&Device::cpu());
    assert_eq!(got.len(), BEFORE.len());
    for ((name, fp), (want_name, want)) in got.iter().zip(BEFORE) {
        assert_eq!(name, want_name);
        assert_eq!(fp, want, "{name}: parameters differ from the positional constructor's at the same seed");
    }
}

#[test]
fn one_context_draws_layers_in_order_and_distinct_seeds_differ() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 0);
    let (a, b) = (Linear::builder(4, 4).build(&mut init), Linear::builder(4, 4).build(&mut init));
    assert_ne!(a.weight.to_vec(), b.weight.to_vec(), "the context's stream advances from layer to layer");
    let again = Linear::builder(4, 4).build(&mut Init::new(&dev, 0));
    assert_eq!(a.weight.to_vec(), again.weight.to_vec(), "the same seed gives the same first layer");
    // The generator continues where construction left it.
    let mut fresh = Init::new(&dev, 0);
    Linear::builder(4, 4).build(&mut fresh);
    Linear::builder(4, 4).build(&mut fresh);
    assert_eq!(fresh.into_generator(), init.into_generator());
}

#[test]
fn defaults_are_pytorchs() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 0);
    let names =
        |m: &(dyn Module + 'static)| -> Vec<String> { m.named_parameters().into_iter().map(|(n, _)| n).collect() };
    // nn.Linear / nn.Conv2d / nn.Conv1d / nn.ConvTranspose2d: bias=True.
    assert_eq!(names(&Linear::builder(3, 2).build(&mut init)), ["weight", "bias"]);
    let conv = Conv2d::builder(3, 8, 3).build(&mut init);
    assert_eq!(names(&conv), ["weight", "bias"]);
    // stride 1, padding 0, dilation 1, groups 1: 10x10 -> 8x8.
    assert_eq!(conv.forward(&Tensor::zeros(&[1, 3, 10, 10], &dev)).shape(), [1, 8, 8, 8]);
    let c1 = Conv1d::builder(2, 4, 3).build(&mut init);
    assert_eq!((c1.stride, c1.padding, c1.dilation, c1.groups), (1, (0, 0), 1, 1));
    assert!(ConvTranspose2d::builder(2, 4, 3).build(&mut init).bias.is_some());
    // nn.Embedding: no padding_idx; nn.BatchNorm2d: eps 1e-5, momentum 0.1, affine.
    assert_eq!(Embedding::builder(5, 3).build(&mut init).padding_idx, None);
    let bn = BatchNorm2d::builder(4).build(&mut init);
    assert_eq!((bn.eps, bn.momentum, bn.weight.is_some()), (1e-5, 0.1, true));
    let ln = LayerNorm::builder(&[6]).build(&mut init);
    assert_eq!((ln.eps, ln.weight.is_some(), ln.bias.is_some()), (1e-5, true, true));
    assert_eq!(RMSNorm::builder(&[6]).build(&mut init).eps, f32::EPSILON);
    // nn.MultiheadAttention: dropout 0, bias, time-major.
    let mha = MultiheadAttention::builder(8, 2).build(&mut init);
    assert_eq!((mha.dropout, mha.batch_first, mha.in_proj_bias.is_some()), (0.0, false, true));
    // nn.LSTM: one layer, bias, time-major, no dropout, unidirectional.
    let lstm = LSTM::builder(3, 4).build(&mut init);
    let c = lstm.config();
    assert_eq!((c.num_layers, c.bias, c.batch_first, c.dropout, c.bidirectional), (1, true, false, 0.0, false));
    assert_eq!(RNN::builder(3, 4).build(&mut init).kind(), RecurrentKind::RnnTanh);
    // nn.TransformerEncoderLayer: 2048 wide FFN, dropout 0.1, ReLU, post-LN, time-major.
    let enc = TransformerEncoderLayer::builder(8, 2).build(&mut init);
    let c = enc.config();
    assert_eq!((c.dim_feedforward, c.dropout, c.norm_first, c.batch_first), (2048, 0.1, false, false));
    assert_eq!(c.activation, FeedForwardActivation::Relu);
    // GPT-2 small's shape unless set.
    let g = Gpt::builder(50257, 1024);
    assert_eq!((g.layers, g.heads, g.width), (12, 12, 768));
}

#[test]
fn options_reach_the_layer() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 0);
    let x = Tensor::zeros(&[2, 4, 9, 9], &dev);
    // PyTorch: Conv2d(4, 6, 3, stride=2, padding=1) on 9x9 gives 5x5.
    let conv = Conv2d::builder(4, 6, 3).stride(2).padding(1).bias(false).build(&mut init);
    assert_eq!(conv.forward(&x).shape(), [2, 6, 5, 5]);
    assert!(conv.bias.is_none());
    // dilation 2, padding='same', groups 2 (weight [6, 2, 3, 3]).
    let dilated = Conv2d::builder(4, 6, 3).dilation(2).padding(2).groups(2).build(&mut init);
    assert_eq!(dilated.forward(&x).shape(), [2, 6, 9, 9]);
    assert_eq!(dilated.weight.shape(), [6, 2, 3, 3]);
    assert_eq!(Conv2d::builder(4, 6, 5).padding_same().build(&mut init).forward(&x).shape(), [2, 6, 9, 9]);
    // ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1): 9 -> 18.
    let up = ConvTranspose2d::builder(4, 3, 3).stride(2).padding(1).output_padding(1).build(&mut init);
    assert_eq!(up.forward(&x).shape(), [2, 3, 18, 18]);
    let causal = Conv1d::builder(2, 2, 3).padding_lr(2, 0).dilation(1).stride(1).build(&mut init);
    assert_eq!(causal.forward(&Tensor::zeros(&[1, 2, 7], &dev)).shape(), [1, 2, 7]);
    let emb = Embedding::builder(5, 3).padding_idx(2).build(&mut init);
    assert_eq!(emb.weight.narrow(0, 2, 1).to_vec(), [0.0; 3]);
    let bn = BatchNorm1d::builder(3).eps(1e-3).momentum(0.3).affine(false).build(&mut init);
    assert_eq!((bn.eps, bn.momentum, bn.num_parameters()), (1e-3, 0.3, 0));
    let gn = GroupNorm::builder(2, 4).eps(1e-4).affine(false).build(&mut init);
    assert_eq!((gn.eps, gn.num_parameters()), (1e-4, 0));
    assert_eq!(LayerNorm::builder(&[6]).bias(false).build(&mut init).num_parameters(), 6);
    let mha = MultiheadAttention::builder(8, 2).dropout(0.2).bias(false).batch_first(true).build(&mut init);
    assert_eq!((mha.dropout, mha.batch_first, mha.num_parameters()), (0.2, true, 4 * 8 * 8));
    let gru = GRU::builder(3, 4).num_layers(2).batch_first(true).dropout(0.5).bidirectional(true).bias(false);
    let c = *gru.build(&mut init).config();
    assert_eq!((c.num_layers, c.bias, c.batch_first, c.dropout, c.bidirectional), (2, false, true, 0.5, true));
    assert_eq!(RNN::builder(3, 4).relu(true).build(&mut init).kind(), RecurrentKind::RnnRelu);
    assert_eq!(LSTMCell::builder(3, 4).bias(false).build(&mut init).num_parameters(), 4 * 4 * (3 + 4));
    let dec = TransformerDecoderLayer::builder(8, 2)
        .dim_feedforward(16)
        .dropout(0.0)
        .activation(FeedForwardActivation::Gelu)
        .layer_norm_eps(1e-6)
        .batch_first(true)
        .norm_first(true)
        .build(&mut init);
    let c = dec.config();
    assert_eq!(
        (c.dim_feedforward, c.dropout, c.layer_norm_eps, c.batch_first, c.norm_first),
        (16, 0.0, 1e-6, true, true)
    );
    assert_eq!(PReLU::builder(3).init(0.1).build(&mut init).weight.to_vec(), [0.1; 3]);
    let pe = SinusoidalPositionalEncoding::builder(4, 10).batch_first(true).build(&mut init);
    assert!(pe.batch_first);
    assert_eq!(RotaryEmbedding::builder(4, 10).base(500.0).build(&mut init).max_len, 10);
    let gpt = Gpt::builder(7, 6).layers(1).heads(2).width(8).ffn(12).dropout(0.1).tie_weights(true).build(&mut init);
    assert_eq!((gpt.config().ffn, gpt.config().dropout, gpt.head.is_none()), (12, 0.1, true));
    assert_eq!(Gpt::builder(7, 6).layers(1).heads(2).width(8).build(&mut init).config().ffn, 32, "4·width by default");
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic at build time");
    err.downcast_ref::<String>().cloned().or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string())).unwrap()
}

#[test]
fn bad_options_fail_at_build_time_naming_the_layer() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 0);
    type Build = Box<dyn FnOnce(&mut Init)>;
    let cases: Vec<(&str, Build)> = vec![
        (
            "Conv2d",
            Box::new(|i| {
                Conv2d::builder(6, 4, 3).groups(4).build(i);
            }),
        ),
        (
            "Conv2d",
            Box::new(|i| {
                Conv2d::builder(0, 4, 3).build(i);
            }),
        ),
        (
            "Conv1d",
            Box::new(|i| {
                Conv1d::builder(3, 4, 3).groups(2).build(i);
            }),
        ),
        (
            "ConvTranspose2d",
            Box::new(|i| {
                ConvTranspose2d::builder(4, 3, 3).groups(2).build(i);
            }),
        ),
        (
            "Embedding",
            Box::new(|i| {
                Embedding::builder(5, 3).padding_idx(5).build(i);
            }),
        ),
        (
            "MultiheadAttention",
            Box::new(|i| {
                MultiheadAttention::builder(10, 4).build(i);
            }),
        ),
        (
            "MultiheadAttention",
            Box::new(|i| {
                MultiheadAttention::builder(8, 2).dropout(1.5).build(i);
            }),
        ),
        (
            "LSTM",
            Box::new(|i| {
                LSTM::builder(3, 0).build(i);
            }),
        ),
        (
            "GRU",
            Box::new(|i| {
                GRU::builder(3, 4).dropout(-0.1).build(i);
            }),
        ),
        (
            "GroupNorm",
            Box::new(|i| {
                GroupNorm::builder(3, 4).build(i);
            }),
        ),
        (
            "LayerNorm",
            Box::new(|i| {
                LayerNorm::builder(&[]).build(i);
            }),
        ),
        (
            "BatchNorm",
            Box::new(|i| {
                BatchNorm2d::builder(0).build(i);
            }),
        ),
        (
            "Dropout",
            Box::new(|i| {
                Dropout::builder(1.5).build(i);
            }),
        ),
        (
            "RecurrentCell",
            Box::new(|i| {
                GRUCell::builder(0, 4).build(i);
            }),
        ),
        (
            "Gpt",
            Box::new(|i| {
                Gpt::builder(5, 8).layers(0).build(i);
            }),
        ),
    ];
    for (layer, build) in cases {
        let msg = panic_message(|| build(&mut init));
        assert!(msg.starts_with(layer), "the message names {layer}: {msg}");
    }
}
