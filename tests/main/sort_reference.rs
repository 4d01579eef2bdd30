//! `sort`, `argsort` and `topk` against PyTorch (fixture made by
//! `tests/fixtures/gen_sort.py`): values, indices (stable: ties in index
//! order) and the input gradient, with ties, NaN, infinities and signed
//! zeros, on the CPU backend and the GPU.

use crate::common;
use common::*;
use serde_json::Value;
use wgrad::prelude::*;

fn check_case(c: &Value, dev: &Device) {
    let name = format!("{} on {}", c["name"].as_str().unwrap(), dev.name());
    let p = &c["params"];
    let data = floats(&c["x"]["data"]);
    let finite = data.iter().all(|v| v.is_finite());
    let x = Tensor::from_vec(&data, &shape(&c["x"]["shape"]), dev);
    let x = if finite { x.requires_grad_() } else { x };
    let dim = p["dim"].as_i64().unwrap() as isize;
    let (values, indices) = match c["op"].as_str().unwrap() {
        "sort" => {
            let descending = p["descending"].as_bool().unwrap();
            let (v, i) = x.sort(dim, descending);
            assert_eq!(i.to_vec_u32(), x.argsort(dim, descending).to_vec_u32(), "{name}: argsort");
            (v, i)
        }
        "topk" => x.topk(p["k"].as_u64().unwrap() as usize, dim, p["largest"].as_bool().unwrap()),
        op => panic!("{name}: unknown op {op}"),
    };
    assert_eq!(values.shape(), shape(&c["values"]["shape"]), "{name}: shape");
    let ties = p.get("ties").is_some_and(|t| t.as_bool().unwrap());
    let want: Vec<u32> = c["indices"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    if !ties {
        assert_eq!(indices.to_vec_u32(), want, "{name}: indices");
    } else {
        // Ours are the stable choice: equal values in index order.
        let (v, i) = (values.to_vec(), indices.to_vec_u32());
        let last = *values.shape().last().unwrap();
        assert_eq!(dim, 1, "{name}: the check below reads rows");
        for r in 0..v.len() / last {
            for j in 1..last {
                let (a, b) = (r * last + j - 1, r * last + j);
                assert!(v[a] != v[b] || i[a] < i[b], "{name}: ties out of index order in row {r}");
            }
        }
    }
    if ties {
        // Which of equal values (0.0 and -0.0 among them) is picked may differ.
        assert_eq!(values.to_vec(), floats(&c["values"]["data"]), "{name}: values");
    } else {
        // Bits, NaN and signed zeros included: the values are the input's, moved.
        let got: Vec<u32> = values.to_vec().iter().map(|v| v.to_bits()).collect();
        let want: Vec<u32> = floats(&c["values"]["data"]).iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want, "{name}: values");
    }
    if finite && !ties {
        values.backward_with(&Tensor::from_vec(&floats(&c["grad_out"]), &values.shape(), dev));
        let g = x.grad().expect("a gradient").to_vec();
        wgrad::gpu_core::testing::assert_close(&format!("{name}: grad x"), &g, &floats(&c["grad_x"]), 1e-6, 1e-6);
    }
}

#[test]
fn sorting_matches_pytorch() {
    let f = fixture("sort.json");
    let cases = f["cases"].as_array().expect("fixture cases");
    for op in ["sort", "topk"] {
        assert!(cases.iter().any(|c| c["op"] == op), "fixture lacks {op}");
    }
    for dev in &devices("sorting_matches_pytorch") {
        for c in cases {
            check_case(c, dev);
        }
    }
}
