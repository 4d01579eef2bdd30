//! Every model in `wgrad::models` (and a hand-written module) exported to
//! ONNX, checked by `onnx.checker` and run by ONNX Runtime at two batch
//! sizes against wgrad's own forward (`tests/check_onnx.py`, with the
//! Python in `WGRAD_PYTHON` or `python3`; `.ci/run` installs `onnx` and
//! `onnxruntime` in a venv and sets `WGRAD_REQUIRE_ONNXRUNTIME=1`, without
//! which a missing runtime is a loud SKIPPED after our own graph checks).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use serde_json::{json, Value as Json};
use wgrad_autograd::{no_grad, DType, Device, HostRng, Interpolation, PadMode, PoolWindow, RecurrentKind, Tensor};
use wgrad_models::{lenet5, mlp, mnist_cnn, AttentionScore, Autoencoder, Gpt, ResNet, RnnLm, Seq2Seq, Shortcut, Vae};
use wgrad_nn::{Init, LayerNorm, Linear, Module, ModuleExt, RecurrentState};
use wgrad_onnx::{proto::ModelProto, Exporter, OnnxModel};

/// The two batch sizes every model runs at in ONNX Runtime (the export
/// traces at the first).
const BATCHES: [usize; 2] = [2, 5];

/// Named input tensors.
type Inputs = Vec<(String, Tensor)>;

/// One exported model and the runs to compare.
struct Case {
    name: String,
    model: OnnxModel,
    /// (input name, tensor) per input, and wgrad's outputs, per batch size.
    runs: Vec<(Inputs, Vec<Tensor>)>,
}

fn spec(t: &Tensor) -> Json {
    match t.dtype() {
        DType::U32 => json!({"dtype": "int64", "shape": t.shape().to_vec(), "data": t.to_vec_u32()}),
        _ => json!({"dtype": "float32", "shape": t.shape().to_vec(), "data": t.to_vec()}),
    }
}

fn floats(shape: &[usize], rng: &mut HostRng, dev: &Device) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(&rng.vec(n, -1.0, 1.0), shape, dev)
}

fn ids(shape: &[usize], vocab: usize, rng: &mut HostRng, dev: &Device) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<u32> = (0..n).map(|_| rng.below(vocab as u32)).collect();
    Tensor::from_u32(&v, shape, dev)
}

/// Our own reading of a file: every node input is a graph input, an
/// initializer or an earlier node's output, parameters carry their
/// state-dict names, and the batch dim is symbolic.
fn check_graph(name: &str, m: &OnnxModel, params: &[String]) {
    let bytes = m.to_bytes();
    let model = ModelProto::decode(&bytes[..]).unwrap_or_else(|e| panic!("{name}: the file does not decode: {e}"));
    let g = model.graph.as_ref().expect("a graph");
    let mut known: HashSet<&str> = g.input.iter().filter_map(|i| i.name.as_deref()).collect();
    known.extend(g.initializer.iter().filter_map(|i| i.name.as_deref()));
    known.insert("");
    for n in &g.node {
        for i in &n.input {
            assert!(known.contains(i.as_str()), "{name}: node {:?} reads `{i}` before it is made", n.name);
        }
        known.extend(n.output.iter().map(String::as_str));
    }
    for o in &g.output {
        assert!(known.contains(o.name.as_deref().unwrap()), "{name}: output {:?} is never made", o.name);
    }
    let inits: HashSet<&str> = g.initializer.iter().filter_map(|i| i.name.as_deref()).collect();
    for p in params {
        assert!(inits.contains(p.as_str()), "{name}: parameter `{p}` is not an initializer of that name");
    }
    assert_eq!(m.report().fixed_batch, None, "{name}: the batch dim should stay symbolic");
}

/// Exports `f` of `module` on inputs made by `make(batch)` and records
/// wgrad's outputs at both batch sizes.
fn case(
    name: &str,
    module: &dyn Module,
    make: &dyn Fn(usize) -> Vec<(String, Tensor, Option<usize>)>,
    outputs: &[&str],
    f: &dyn Fn(&[Tensor]) -> Vec<Tensor>,
) -> Case {
    let example = make(BATCHES[0]);
    let mut exporter = Exporter::new(module).outputs(outputs);
    for (n, t, axis) in &example {
        exporter = exporter.input_with_batch_axis(n, t, *axis);
    }
    let model = exporter.trace(f).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut params = Vec::new();
    module.visit_parameters("", &mut |n, _| params.push(n.to_string()));
    // Only the parameters the traced function reads are in the file.
    let read = &model.report().parameters;
    let expected: Vec<String> = params.into_iter().filter(|p| read.contains(p)).collect();
    check_graph(name, &model, &expected);
    let runs = BATCHES
        .iter()
        .map(|&b| {
            let inputs = make(b);
            let tensors: Vec<Tensor> = inputs.iter().map(|(_, t, _)| t.clone()).collect();
            let outs = no_grad(|| f(&tensors));
            (inputs.into_iter().map(|(n, t, _)| (n, t)).collect(), outs)
        })
        .collect();
    Case { name: name.to_string(), model, runs }
}

/// A case for `module.forward` of one input made by `make(batch)`.
fn forward_case(name: &str, module: &dyn Module, make: &dyn Fn(usize) -> Tensor) -> Case {
    case(name, module, &|b| vec![("input".into(), make(b), Some(0))], &["output"], &|x| vec![module.forward(&x[0])])
}

fn write_cases(dir: &Path, cases: &[Case]) {
    let mut list = Vec::new();
    for c in cases {
        let file = format!("{}.onnx", c.name);
        c.model.save(dir.join(&file)).unwrap();
        let runs: Vec<Json> = c
            .runs
            .iter()
            .map(|(inputs, outputs)| {
                let ins: serde_json::Map<String, Json> = inputs.iter().map(|(n, t)| (n.clone(), spec(t))).collect();
                json!({"inputs": ins, "outputs": outputs.iter().map(spec).collect::<Vec<_>>()})
            })
            .collect();
        list.push(json!({"name": c.name, "file": file, "runs": runs}));
    }
    std::fs::write(dir.join("cases.json"), serde_json::to_vec(&list).unwrap()).unwrap();
}

/// Runs `check_onnx.py` on `dir`: `Some(per-case lines)`, or `None` (after
/// a loud line) when no Python with onnx and onnxruntime is there and CI
/// does not require one.
fn onnxruntime_checks(dir: &Path) -> Option<Vec<Json>> {
    let python = std::env::var("WGRAD_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_onnx.py");
    let required = wgrad_autograd::env::switch("WGRAD_REQUIRE_ONNXRUNTIME", false);
    let out = match Command::new(&python).arg(&script).arg(dir).output() {
        Ok(o) => o,
        Err(e) => {
            assert!(!required, "WGRAD_REQUIRE_ONNXRUNTIME=1 but {python} did not start: {e}");
            eprintln!("SKIPPED: ONNX Runtime checks ({python}: {e}); our own graph checks still ran");
            return None;
        }
    };
    if out.status.code() == Some(3) {
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(!required, "WGRAD_REQUIRE_ONNXRUNTIME=1 but {python} lacks onnx/onnxruntime: {why}");
        eprintln!("SKIPPED: ONNX Runtime checks ({python}: {why}); our own graph checks still ran");
        return None;
    }
    let lines: Vec<Json> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("check_onnx.py printed `{l}` ({e})")))
        .collect();
    assert!(
        out.status.success(),
        "ONNX Runtime disagrees ({}):\n{}\n{}",
        out.status,
        lines.iter().filter(|l| l["ok"] == false).map(|l| l.to_string()).collect::<Vec<_>>().join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(lines)
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgrad-onnx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A module written by hand, as users do: a residual MLP block with layer
/// norm, GELU, and mean pooling over a sequence, built from raw tensor ops.
#[derive(wgrad_nn::Module)]
struct Custom {
    #[module]
    norm: LayerNorm,
    #[module]
    up: Linear,
    #[module]
    down: Linear,
    #[param]
    gate: Tensor,
}

impl Module for Custom {
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.up.forward(&self.norm.forward(x)).gelu();
        let h = &self.down.forward(&h) * &self.gate.sigmoid();
        let y = (x + &h).mean(&[1], false);
        y.softmax(-1).clamp(1e-6, 1.0).log()
    }

    fn describe(&self) -> String {
        "Custom".into()
    }
}

/// One case that runs every row of the op table not covered by a model,
/// each as an output of its own (so a disagreement names the op).
fn op_table_case(dev: &Device) -> Case {
    let mut rng = HostRng::new(11);
    let m = Linear::builder(1, 1).build(&mut Init::new(dev, 0));
    // Captured constants: made before the trace, written as initializers.
    let y = floats(&[4, 6], &mut rng, dev);
    let w = floats(&[6, 3], &mut rng, dev);
    let w1 = floats(&[5, 4, 3], &mut rng, dev);
    let gn = (floats(&[4], &mut rng, dev), floats(&[4], &mut rng, dev));
    let rms_w = floats(&[6], &mut rng, dev);
    let mask = floats(&[4, 4], &mut rng, dev);
    let idx = Tensor::from_u32(&[5, 0, 3], &[3], dev);
    let (cos, sin) = Tensor::rotary_tables(4, 6, 1, 10000.0, dev);
    let w_hh = floats(&[6, 6], &mut rng, dev).mul_scalar(0.3);
    let b_hh = floats(&[6], &mut rng, dev);
    let make = |b: usize| {
        let mut rng = HostRng::new(12 + b as u64);
        let gather: Vec<u32> = (0..b * 4 * 2).map(|_| rng.below(6)).collect();
        vec![
            ("x".to_string(), floats(&[b, 4, 6], &mut rng, dev), Some(0)),
            ("img".to_string(), floats(&[b, 4, 8, 8], &mut rng, dev), Some(0)),
            ("index".to_string(), Tensor::from_u32(&gather, &[b, 4, 2], dev), Some(0)),
        ]
    };
    let mut names: Vec<String> = Vec::new();
    let f = |inp: &[Tensor]| -> Vec<(String, Tensor)> {
        let (x, img, index) = (&inp[0], &inp[1], &inp[2]);
        let b = x.shape()[0];
        let xp = x.abs().add_scalar(0.5);
        let mut out: Vec<(String, Tensor)> = Vec::new();
        for &op in wgrad_autograd::UnaryOp::EXAMPLES {
            let arg = if op.domain() == wgrad_autograd::Domain::Positive { &xp } else { x };
            out.push((op.op_name().to_string(), arg.unary(op)));
        }
        for &op in wgrad_autograd::BinaryOp::ALL {
            let lhs = if op == wgrad_autograd::BinaryOp::Pow { &xp } else { x };
            out.push((op.op_name().to_string(), lhs.try_binary(op, &y).unwrap()));
        }
        out.push(("where".into(), Tensor::where_cond(&x.gt(&y), x, &y)));
        out.push(("matmul_scaled".into(), x.matmul_scaled(&w, 0.5)));
        out.push(("conv1d".into(), x.conv1d(&w1, None, 2, (1, 2), 1, 1)));
        let pool = (3, 3);
        out.push(("avg_pool2d".into(), img.avg_pool2d(pool, (2, 2), (1, 1), false)));
        out.push(("max_pool2d".into(), img.max_pool2d((2, 2), (2, 2), (1, 1), (2, 2))));
        out.push(("adaptive_avg_pool2d".into(), img.adaptive_avg_pool2d((2, 4))));
        // ceil_mode: last windows that run past the (padded) 8 x 8 image.
        let ceil = PoolWindow::new((3, 3)).stride((2, 2)).ceil_mode(true);
        out.push(("max_pool2d_ceil".into(), img.max_pool2d_window(ceil)));
        out.push(("cumsum".into(), x.cumsum(1)));
        out.push(("argsort".into(), x.argsort(-1, false).float()));
        out.push(("sort_descending".into(), x.sort(1, true).0));
        out.push(("topk".into(), img.topk(3, -1, true).0));
        out.push(("topk_indices".into(), img.topk(2, 2, false).1.float()));
        // Compositions: their traced primitives, exported.
        for (name, mode) in [
            ("constant", PadMode::Constant(0.5)),
            ("reflect", PadMode::Reflect),
            ("replicate", PadMode::Replicate),
            ("circular", PadMode::Circular),
        ] {
            out.push((format!("pad_{name}"), img.pad(&[1, 2, 3, 0], mode)));
        }
        out.push(("pixel_shuffle".into(), img.pixel_shuffle(2)));
        out.push(("pixel_unshuffle".into(), img.pixel_unshuffle(2)));
        out.push(("tril".into(), x.tril(-1)));
        out.push(("triu".into(), x.triu(1)));
        out.push(("chunk_flip_roll".into(), x.chunk(2, -1)[1].flip(&[1]).roll(&[2], &[1])));
        out.push(("cumsum_last".into(), img.cumsum(-1)));
        // Resize: to sizes that do not divide 8, and by scale factors.
        let modes = [
            ("nearest", Interpolation::Nearest),
            ("bilinear", Interpolation::Bilinear { align_corners: false }),
            ("bilinear_aligned", Interpolation::Bilinear { align_corners: true }),
        ];
        for (name, mode) in modes {
            out.push((format!("interpolate_{name}"), img.interpolate((11, 5), mode)));
            out.push((format!("interpolate_scale_{name}"), img.interpolate_scale((1.5, 0.75), mode)));
            out.push((format!("interpolate_to_one_row_{name}"), img.interpolate((1, 3), mode)));
        }
        for count_pad in [true, false] {
            let avg = img.avg_pool2d_window(ceil.padding((1, 1)), count_pad);
            out.push((format!("avg_pool2d_ceil_count_pad_{count_pad}"), avg));
        }
        out.push(("group_norm".into(), img.group_norm(2, Some(&gn.0), Some(&gn.1), 1e-5)));
        out.push(("rms_norm".into(), x.rms_norm(&[6], Some(&rms_w), 1e-6)));
        out.push(("layer_norm".into(), x.layer_norm(&[4, 6], None, None, 1e-5)));
        out.push(("var".into(), x.var(&[1], 1, true)));
        out.push(("argmax".into(), x.argmax(-1, false)));
        out.push(("argmin_float".into(), x.argmin(1, true).float()));
        out.push(("max".into(), x.max(&[2], false)));
        out.push(("min".into(), x.min(&[1, 2], true)));
        out.push(("sum_all".into(), x.sum(&[], false)));
        out.push(("log_softmax".into(), x.log_softmax(1)));
        out.push(("slice_step".into(), x.slice_step(2, 1, 2)));
        out.push(("expand".into(), x.narrow(1, 0, 1).expand(&[b, 4, 6])));
        out.push(("stack".into(), Tensor::stack(&[x, &x.mul_scalar(2.0)], 1)));
        out.push(("transpose".into(), x.transpose(0, 2).contiguous()));
        out.push(("index_select".into(), x.index_select(2, &idx)));
        out.push(("gather".into(), x.gather(2, index)));
        out.push(("attention_masked".into(), x.scaled_dot_product_attention(x, x, Some(&mask), false, None)));
        out.push(("attention_causal".into(), x.scaled_dot_product_attention(x, x, None, true, Some(0.3))));
        out.push(("rotary".into(), x.apply_rotary(&cos, &sin)));
        let xw = x.permute(&[1, 0, 2]);
        let h0 = x.narrow(1, 0, 1).squeeze(1);
        for (kind, reverse) in [(RecurrentKind::RnnTanh, true), (RecurrentKind::RnnRelu, false)] {
            let r = xw.recurrent(kind, &w_hh, Some(&b_hh), &h0, None, reverse);
            out.push((format!("{kind:?}_output"), r.output));
            out.push((format!("{kind:?}_h_n"), r.h_n));
        }
        out
    };
    let probe: Vec<Tensor> = make(1).into_iter().map(|(_, t, _)| t).collect();
    names.extend(f(&probe).into_iter().map(|(n, _)| n));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    case("op_table", &m, &make, &refs, &|x| f(x).into_iter().map(|(_, t)| t).collect())
}

#[test]
fn every_model_runs_in_onnx_runtime_as_in_wgrad() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 7);
    let mut cases = Vec::new();
    let image = |c: usize, h: usize| {
        let dev = dev.clone();
        move |b: usize| floats(&[b, c, h, h], &mut HostRng::new(b as u64), &dev)
    };

    let mut m = mlp(&[12, 16, 10], &mut init);
    m.eval();
    cases.push(forward_case("mlp", &m, &|b| floats(&[b, 12], &mut HostRng::new(1), &dev)));

    let mut m = mnist_cnn(&mut init);
    m.eval();
    cases.push(forward_case("mnist_cnn", &m, &image(1, 28)));

    let mut m = lenet5(&mut init);
    m.eval();
    cases.push(forward_case("lenet5", &m, &image(1, 28)));

    let mut m = ResNet::cifar(20, 10, Shortcut::ZeroPad, &mut init);
    m.eval();
    cases.push(forward_case("resnet20", &m, &image(3, 32)));

    let mut m = ResNet::imagenet(18, 10, &mut init);
    m.eval();
    cases.push(forward_case("resnet18", &m, &image(3, 32)));

    let mut m = Autoencoder::mlp(32, 8, &mut init);
    m.eval();
    cases.push(forward_case("autoencoder_mlp", &m, &image(1, 28)));

    let mut m = Autoencoder::conv(8, &mut init);
    m.eval();
    cases.push(forward_case("autoencoder_conv", &m, &image(1, 28)));

    let mut vae = Vae::new(32, 4, &mut init);
    vae.eval();
    let encoder = |x: &[Tensor]| {
        let (mu, logvar) = vae.encode(&x[0]);
        vec![mu, logvar]
    };
    let vae_in = |b: usize| vec![("image".to_string(), image(1, 28)(b), Some(0))];
    cases.push(case("vae_encoder", &vae, &vae_in, &["mu", "logvar"], &encoder));
    let z = |b: usize| vec![("z".to_string(), floats(&[b, 4], &mut HostRng::new(3), &dev), Some(0))];
    cases.push(case("vae_decoder", &vae, &z, &["image"], &|x| vec![vae.decode(&x[0])]));

    let mut gpt = Gpt::builder(23, 8).layers(2).heads(2).width(16).ffn(32).build(&mut init);
    gpt.eval();
    let tokens = |b: usize| vec![("ids".to_string(), ids(&[b, 6], 23, &mut HostRng::new(4), &dev), Some(0))];
    cases.push(case("gpt", &gpt, &tokens, &["logits"], &|x| vec![gpt.logits(&x[0])]));

    for kind in [RecurrentKind::Lstm, RecurrentKind::Gru] {
        let mut lm = RnnLm::builder(19).embed(8).hidden(12).layers(2).kind(kind).build(&mut init);
        lm.eval();
        let lstm = kind == RecurrentKind::Lstm;
        let make = |b: usize| {
            let mut rng = HostRng::new(5);
            let mut v = vec![
                ("ids".to_string(), ids(&[b, 5], 19, &mut rng, &dev), Some(0)),
                ("h0".to_string(), floats(&[2, b, 12], &mut rng, &dev), Some(1)),
            ];
            if lstm {
                v.push(("c0".to_string(), floats(&[2, b, 12], &mut rng, &dev), Some(1)));
            }
            v
        };
        let step = |x: &[Tensor]| {
            let state = RecurrentState { h: x[1].clone(), c: x.get(2).cloned() };
            let (logits, next) = lm.forward_with_state(&x[0], Some(&state));
            let mut out = vec![logits, next.h];
            out.extend(next.c);
            out
        };
        let names: &[&str] = if lstm { &["logits", "h_n", "c_n"] } else { &["logits", "h_n"] };
        cases.push(case(&format!("rnn_lm_{kind:?}").to_lowercase(), &lm, &make, names, &step));
    }

    for score in [AttentionScore::Additive, AttentionScore::Dot] {
        let mut s2s = Seq2Seq::builder(17, 13).embed(8).hidden(10).attention(score).build(&mut init);
        s2s.eval();
        let tag = format!("{score:?}").to_lowercase();
        let src = |b: usize| vec![("src".to_string(), ids(&[b, 6], 17, &mut HostRng::new(6), &dev), Some(0))];
        let encode = |x: &[Tensor]| {
            let e = s2s.encode(&x[0], None);
            let mut out = vec![e.memory, e.h];
            out.extend(e.projected);
            out
        };
        let enc_names: &[&str] =
            if score == AttentionScore::Additive { &["memory", "h", "projected"] } else { &["memory", "h"] };
        cases.push(case(&format!("seq2seq_{tag}_encoder"), &s2s, &src, enc_names, &encode));
        let step_in = |b: usize| {
            let mut rng = HostRng::new(8);
            let mut v = vec![
                ("prev".to_string(), ids(&[b], 13, &mut rng, &dev), Some(0)),
                ("memory".to_string(), floats(&[b, 6, 10], &mut rng, &dev), Some(0)),
                ("h".to_string(), floats(&[b, 10], &mut rng, &dev), Some(0)),
            ];
            if score == AttentionScore::Additive {
                v.push(("projected".to_string(), floats(&[b, 6, 10], &mut rng, &dev), Some(0)));
            }
            v
        };
        let decode = |x: &[Tensor]| {
            let enc = wgrad_models::Encoded {
                memory: x[1].clone(),
                projected: x.get(3).cloned(),
                mask: None,
                h: x[2].clone(),
            };
            let (logits, next) = s2s.decode_step(&x[0], &enc);
            vec![logits, next.h]
        };
        cases.push(case(&format!("seq2seq_{tag}_decoder_step"), &s2s, &step_in, &["logits", "h"], &decode));
    }

    let custom = Custom {
        norm: LayerNorm::builder(&[6]).build(&mut init),
        up: Linear::builder(6, 12).build(&mut init),
        down: Linear::builder(12, 6).build(&mut init),
        gate: Tensor::from_vec(&[0.5, -1.0, 2.0, 0.0, 1.0, -0.5], &[6], &dev),
    };
    cases.push(forward_case("custom", &custom, &|b| floats(&[b, 4, 6], &mut HostRng::new(9), &dev)));

    cases.push(op_table_case(&dev));

    let dir = temp_dir("models");
    write_cases(&dir, &cases);
    if let Some(lines) = onnxruntime_checks(&dir) {
        assert_eq!(lines.len(), cases.len(), "one line per case: {lines:?}");
        for l in &lines {
            assert_eq!(l["ok"], true, "{l}");
        }
        eprintln!("ONNX Runtime agrees with wgrad on {} models at batch sizes {BATCHES:?}", lines.len());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
