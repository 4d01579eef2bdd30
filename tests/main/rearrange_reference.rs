//! chunk, split, split_sizes, repeat, flip and roll against PyTorch (fixture
//! made by `tests/fixtures/gen_rearrange.py`): every output piece and the
//! input gradient of a weighted sum over the pieces, so each piece's
//! gradient path counts; on the CPU backend and the GPU.

use crate::common;
use common::*;
use serde_json::Value;
use wgrad::prelude::*;

/// |got − want| <= 1e-5·|want| + 1e-5 (the atol lets sums near zero compare).
#[track_caller]
fn assert_rel(what: &str, got: &[f32], want: &[f32]) {
    wgrad::gpu_core::testing::assert_close(what, got, want, 1e-5, 1e-5);
}

fn isizes(v: &Value) -> Vec<isize> {
    v.as_array().expect("a list of ints").iter().map(|x| x.as_i64().unwrap() as isize).collect()
}

fn int(v: &Value) -> isize {
    v.as_i64().unwrap_or_else(|| panic!("expected an int, got {v}")) as isize
}

/// Runs one fixture case on `dev` and compares its outputs and x's gradient.
fn check_case(c: &Value, dev: &Device) {
    let name = format!("{} on {}", c["name"].as_str().unwrap(), dev.name());
    let p = &c["params"];
    let x = Tensor::from_vec(&floats(&c["x"]["data"]), &shape(&c["x"]["shape"]), dev).requires_grad_();
    let arg = if c["transpose_first"].as_bool().unwrap() { x.transpose(0, -1) } else { x.clone() };
    let usize_of = |k: &str| int(&p[k]) as usize;
    let outs: Vec<Tensor> = match c["op"].as_str().unwrap() {
        "chunk" => arg.chunk(usize_of("chunks"), int(&p["dim"])),
        "split" => arg.split(usize_of("size"), int(&p["dim"])),
        "split_sizes" => arg.split_sizes(&shape(&p["sizes"]), int(&p["dim"])),
        "repeat" => vec![arg.repeat(&shape(&p["repeats"]))],
        "flip" => vec![arg.flip(&isizes(&p["dims"]))],
        "roll" => vec![arg.roll(&isizes(&p["shifts"]), &isizes(&p["dims"]))],
        op => panic!("{name}: unknown op {op}"),
    };
    let want = c["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), want.len(), "{name}: number of outputs");
    for (i, (y, w)) in outs.iter().zip(want).enumerate() {
        assert_eq!(y.shape(), shape(&w["shape"]), "{name}: output {i} shape");
        assert_rel(&format!("{name}: output {i}"), &y.to_vec(), &floats(&w["data"]));
    }

    // loss = Σ_i weight_i · Σ(output_i · grad_out_i)
    let weights = floats(&c["weights"]);
    let terms: Vec<Tensor> = outs
        .iter()
        .zip(c["grad_outs"].as_array().unwrap())
        .zip(&weights)
        .map(|((y, g), &w)| (y * &Tensor::from_vec(&floats(g), &y.shape(), dev)).sum_all() * w)
        .collect();
    let loss = terms.iter().skip(1).fold(terms[0].clone(), |acc, t| &acc + t);
    loss.backward();
    let g = x.grad().unwrap_or_else(|| panic!("{name}: no gradient reached x"));
    assert_eq!(g.shape(), x.shape(), "{name}: gradient shape");
    assert_rel(&format!("{name}: grad x"), &g.to_vec(), &floats(&c["grad_x"]));
}

#[test]
fn rearranging_ops_match_pytorch() {
    let f = fixture("rearrange.json");
    let cases = f["cases"].as_array().expect("fixture cases");
    // Every op is present, so a regenerated fixture cannot silently drop one.
    for op in ["chunk", "split", "split_sizes", "repeat", "flip", "roll"] {
        assert!(cases.iter().any(|c| c["op"] == op), "fixture lacks {op}");
    }
    for dev in &devices("rearranging_ops_match_pytorch") {
        for c in cases {
            check_case(c, dev);
        }
    }
}

/// A traced use exports to ONNX: the trace holds only the primitives the
/// ops are made of, which the exporter writes as ONNX nodes.
#[test]
fn traced_rearranging_ops_export_to_onnx() {
    let dev = Device::cpu();
    let x = Tensor::from_vec(&(0..24).map(|i| i as f32).collect::<Vec<_>>(), &[2, 3, 4], &dev);
    let model = wgrad::onnx::Exporter::new(&Identity)
        .input("x", &x)
        .fixed_batch()
        .trace(|x| {
            let pieces = x[0].chunk(2, -1);
            let parts = x[0].split_sizes(&[1, 2], 1);
            vec![pieces[0].flip(&[0, 2]).roll(&[1, -5], &[1, 2]).repeat(&[2, 1, 1, 2]), parts[1].clone()]
        })
        .expect("export");
    let nodes = &model.proto().graph.as_ref().unwrap().node;
    let types: Vec<&str> = nodes.iter().filter_map(|n| n.op_type.as_deref()).collect();
    for want in ["Slice", "Concat", "Gather", "Expand", "Reshape"] {
        assert!(types.contains(&want), "no {want} node in {types:?}");
    }
}
