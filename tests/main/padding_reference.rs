//! pad (every mode), pixel_shuffle, pixel_unshuffle, masked_fill, tril and
//! triu against PyTorch (fixture made by `tests/fixtures/gen_padding.py`):
//! the output and the input gradient for a random upstream gradient, on the
//! CPU backend and the GPU; and a traced use exported to ONNX.

use crate::common;
use common::*;
use serde_json::Value;
use wgrad::autograd::PadMode;
use wgrad::prelude::*;

/// |got − want| <= 1e-5·|want| + 1e-5 (the atol lets sums near zero compare).
#[track_caller]
fn assert_rel(what: &str, got: &[f32], want: &[f32]) {
    wgrad::gpu_core::testing::assert_close(what, got, want, 1e-5, 1e-5);
}

fn int(v: &Value) -> isize {
    v.as_i64().unwrap_or_else(|| panic!("expected an int, got {v}")) as isize
}

fn float(v: &Value) -> f32 {
    v.as_f64().unwrap_or_else(|| panic!("expected a number, got {v}")) as f32
}

fn mode(p: &Value) -> PadMode {
    match p["mode"].as_str().unwrap() {
        "constant" => PadMode::Constant(float(&p["value"])),
        "reflect" => PadMode::Reflect,
        "replicate" => PadMode::Replicate,
        "circular" => PadMode::Circular,
        m => panic!("unknown pad mode {m}"),
    }
}

/// Runs one fixture case on `dev` and compares its output and x's gradient.
fn check_case(c: &Value, dev: &Device) {
    let name = format!("{} on {}", c["name"].as_str().unwrap(), dev.name());
    let p = &c["params"];
    let x = Tensor::from_vec(&floats(&c["x"]["data"]), &shape(&c["x"]["shape"]), dev).requires_grad_();
    let arg = if c["transpose_first"].as_bool().unwrap() { x.transpose(0, -1) } else { x.clone() };
    let y = match c["op"].as_str().unwrap() {
        "pad" => arg.pad(&shape(&p["pad"]), mode(p)),
        "pixel_shuffle" => arg.pixel_shuffle(int(&p["r"]) as usize),
        "pixel_unshuffle" => arg.pixel_unshuffle(int(&p["r"]) as usize),
        "masked_fill" => {
            let m = Tensor::from_vec(&floats(&c["mask"]["data"]), &shape(&c["mask"]["shape"]), dev);
            let m = if p["u32_mask"].as_bool().unwrap() { m.to_dtype(DType::U32) } else { m };
            arg.masked_fill(&m, float(&p["value"]))
        }
        "tril" => arg.tril(int(&p["diagonal"])),
        "triu" => arg.triu(int(&p["diagonal"])),
        op => panic!("{name}: unknown op {op}"),
    };
    let want = &c["output"];
    assert_eq!(y.shape(), shape(&want["shape"]), "{name}: output shape");
    assert_rel(&format!("{name}: output"), &y.to_vec(), &floats(&want["data"]));

    (&y * &Tensor::from_vec(&floats(&c["grad_out"]), &y.shape(), dev)).sum_all().backward();
    let g = x.grad().unwrap_or_else(|| panic!("{name}: no gradient reached x"));
    assert_eq!(g.shape(), x.shape(), "{name}: gradient shape");
    assert_rel(&format!("{name}: grad x"), &g.to_vec(), &floats(&c["grad_x"]));
}

#[test]
fn padding_and_masking_ops_match_pytorch() {
    let f = fixture("padding.json");
    let cases = f["cases"].as_array().expect("fixture cases");
    // Every op and pad mode is present, so a regenerated fixture cannot
    // silently drop one.
    for op in ["pad", "pixel_shuffle", "pixel_unshuffle", "masked_fill", "tril", "triu"] {
        assert!(cases.iter().any(|c| c["op"] == op), "fixture lacks {op}");
    }
    for m in ["constant", "reflect", "replicate", "circular"] {
        for dims in 1..=3 {
            let present = cases
                .iter()
                .any(|c| c["params"]["mode"] == m && c["params"]["pad"].as_array().unwrap().len() == 2 * dims);
            assert!(present, "fixture lacks {m} padding of {dims} dims");
        }
    }
    for dev in &devices("padding_and_masking_ops_match_pytorch") {
        for c in cases {
            check_case(c, dev);
        }
    }
}

/// A traced use exports to ONNX: the trace holds only the primitives the
/// ops are made of, which the exporter writes as ONNX nodes.
#[test]
fn traced_padding_and_masking_ops_export_to_onnx() {
    let dev = Device::cpu();
    let x = Tensor::from_vec(&(0..96).map(|i| i as f32).collect::<Vec<_>>(), &[2, 4, 3, 4], &dev);
    let model = wgrad::onnx::Exporter::new(&Identity)
        .input("x", &x)
        .trace(|x| {
            let x = &x[0];
            let padded: Vec<Tensor> = [PadMode::Constant(1.5), PadMode::Reflect, PadMode::Replicate, PadMode::Circular]
                .into_iter()
                .map(|m| x.pad(&[1, 2, 2, 0], m))
                .collect();
            let shuffled = x.pixel_shuffle(2).pixel_unshuffle(2);
            let masked = x.tril(0).triu(-1).masked_fill(&x.gt(&Tensor::scalar(40.0, &x.device())), 0.0);
            [padded, vec![shuffled, masked]].concat()
        })
        .expect("export");
    let nodes = &model.proto().graph.as_ref().unwrap().node;
    let types: Vec<&str> = nodes.iter().filter_map(|n| n.op_type.as_deref()).collect();
    for want in ["Slice", "Concat", "Gather", "Expand", "Reshape", "Transpose", "Where"] {
        assert!(types.contains(&want), "no {want} node in {types:?}");
    }
}
