//! Softmax, log-softmax, cross-entropy, NLL, embedding and dropout: values
//! against direct formulas and finite-difference gradient checks, on the CPU
//! backend and the GPU.

use crate::common;
use common::*;
use wgrad_autograd::{CrossEntropyOptions, Device, Generator, Reduction, Tensor};
use wgrad_gpu_core::testing::assert_close;

const REDUCTIONS: [Reduction; 3] = [Reduction::Mean, Reduction::Sum, Reduction::None];

#[test]
fn softmax_along_any_axis_matches_the_formula() {
    for dev in backends("softmax_along_any_axis_matches_the_formula") {
        let x = rand(&[2, 3, 4], 1, -3.0, 3.0, &dev);
        for dim in [0, 1, 2, -1, -3] {
            let e = (&x - &x.max(&[dim], true)).exp();
            let want = &e / &e.sum(&[dim], true);
            let what = format!("softmax dim {dim} on {}", dev.name());
            assert_eq!(x.softmax(dim).shape(), vec![2, 3, 4]);
            assert_close(&what, &x.softmax(dim).to_vec(), &want.to_vec(), 1e-5, 1e-7);
            assert_close(&format!("log_{what}"), &x.log_softmax(dim).to_vec(), &want.log().to_vec(), 1e-5, 1e-6);
        }
        // A 0-d tensor is a single class: probability 1.
        assert_eq!(Tensor::scalar(3.0, &dev).softmax(0).to_vec(), vec![1.0]);
    }
}

#[test]
fn softmax_and_log_softmax_gradients() {
    let shapes: [(&[usize], &[isize]); 4] =
        [(&[3, 5], &[0, 1, -1]), (&[2, 3, 4], &[0, 1, 2]), (&[1, 7], &[1]), (&[4], &[0])];
    for (shape, dims) in shapes {
        for &dim in dims {
            gradcheck(&format!("softmax {shape:?} dim {dim}"), &[shape], move |x| x[0].softmax(dim));
            gradcheck(&format!("log_softmax {shape:?} dim {dim}"), &[shape], move |x| x[0].log_softmax(dim));
        }
    }
    // Through a non-contiguous input (a transpose) too.
    gradcheck("softmax of a transpose", &[&[4, 3]], |x| x[0].t().softmax(-1));
}

/// Classes `[n]` below `c` with a fixed pattern that repeats classes.
fn classes(n: usize, c: usize, dev: &Device) -> Tensor {
    let v: Vec<u32> = (0..n).map(|i| ((i * 7 + 2) % c) as u32).collect();
    Tensor::from_u32(&v, &[n], dev)
}

fn ce_options(
    weight: bool,
    ignore: Option<u32>,
    smoothing: f32,
    reduction: Reduction,
    dev: &Device,
) -> CrossEntropyOptions {
    CrossEntropyOptions {
        weight: weight.then(|| Tensor::from_vec(&[0.5, 1.5, 1.0, 2.0], &[4], dev)),
        ignore_index: ignore,
        label_smoothing: smoothing,
        reduction,
    }
}

#[test]
fn cross_entropy_with_class_targets_gradients() {
    // 5 samples of 4 classes: targets 2, 1, 0, 3, 2; ignoring class 2 drops two of them.
    for reduction in REDUCTIONS {
        for weight in [false, true] {
            for ignore in [None, Some(2)] {
                for smoothing in [0.0, 0.2] {
                    let what =
                        format!("cross_entropy {reduction:?} weight {weight} ignore {ignore:?} smoothing {smoothing}");
                    gradcheck(&what, &[&[5, 4]], move |x| {
                        let dev = x[0].device();
                        x[0].cross_entropy(
                            &classes(5, 4, &dev),
                            &ce_options(weight, ignore, smoothing, reduction, &dev),
                        )
                    });
                }
            }
        }
    }
}

#[test]
fn cross_entropy_with_probability_targets_gradients() {
    for reduction in REDUCTIONS {
        for weight in [false, true] {
            for smoothing in [0.0, 0.3] {
                let what = format!("cross_entropy probs {reduction:?} weight {weight} smoothing {smoothing}");
                gradcheck(&what, &[&[3, 4]], move |x| {
                    let dev = x[0].device();
                    let target = rand(&[3, 4], 9, -1.0, 1.0, &dev).softmax(1);
                    x[0].cross_entropy(&target, &ce_options(weight, None, smoothing, reduction, &dev))
                });
            }
        }
    }
}

#[test]
fn cross_entropy_with_spatial_dims_and_single_samples() {
    // [N, C, d] logits with [N, d] targets: the class dim is dim 1.
    for reduction in REDUCTIONS {
        gradcheck(&format!("cross_entropy [2, 4, 3] {reduction:?}"), &[&[2, 4, 3]], move |x| {
            let dev = x[0].device();
            let t = classes(6, 4, &dev).reshape(&[2, 3]);
            x[0].cross_entropy(&t, &ce_options(true, Some(1), 0.1, reduction, &dev))
        });
        gradcheck(&format!("cross_entropy probs [2, 4, 3] {reduction:?}"), &[&[2, 4, 3]], move |x| {
            let dev = x[0].device();
            let t = rand(&[2, 4, 3], 3, -1.0, 1.0, &dev).softmax(1);
            x[0].cross_entropy(&t, &ce_options(false, None, 0.1, reduction, &dev))
        });
    }
    gradcheck("cross_entropy of one sample [C]", &[&[4]], |x| {
        let dev = x[0].device();
        x[0].cross_entropy(&Tensor::from_u32(&[3], &[], &dev), &CrossEntropyOptions::default())
    });
    for dev in backends("cross_entropy_with_spatial_dims_and_single_samples") {
        let x = rand(&[2, 4, 3], 5, -1.0, 1.0, &dev);
        let t = classes(6, 4, &dev).reshape(&[2, 3]);
        let none = x.cross_entropy(&t, &CrossEntropyOptions { reduction: Reduction::None, ..Default::default() });
        assert_eq!(none.shape(), vec![2, 3]);
        // Moving the class dim last by hand gives the same losses.
        let flat = x.permute(&[0, 2, 1]).reshape(&[6, 4]);
        let want = flat
            .cross_entropy(&t.reshape(&[6]), &CrossEntropyOptions { reduction: Reduction::None, ..Default::default() });
        assert_close("spatial vs flat", &none.to_vec(), &want.to_vec(), 1e-6, 1e-7);
    }
}

#[test]
fn cross_entropy_values_match_log_softmax_composition() {
    for dev in backends("cross_entropy_values_match_log_softmax_composition") {
        let x = rand(&[5, 4], 2, -2.0, 2.0, &dev);
        let t = classes(5, 4, &dev);
        let w = Tensor::from_vec(&[0.5, 1.5, 1.0, 2.0], &[4], &dev);
        for reduction in REDUCTIONS {
            for ignore in [None, Some(2), Some(-100i32 as u32)] {
                let what = format!("{reduction:?} ignore {ignore:?} on {}", dev.name());
                let ce = x.cross_entropy(
                    &t,
                    &CrossEntropyOptions {
                        weight: Some(w.clone()),
                        ignore_index: ignore,
                        label_smoothing: 0.0,
                        reduction,
                    },
                );
                let nll = x.log_softmax(1).nll_loss(&t, Some(&w), ignore, reduction);
                assert_close(&what, &ce.to_vec(), &nll.to_vec(), 1e-5, 1e-6);
            }
        }
        // Everything ignored: the mean is 0 / 0 as in PyTorch.
        let all = CrossEntropyOptions { ignore_index: Some(2), ..Default::default() };
        assert!(x.cross_entropy(&Tensor::from_u32(&[2; 5], &[5], &dev), &all).item().is_nan());
    }
}

#[test]
fn nll_loss_gradients() {
    for reduction in REDUCTIONS {
        for weight in [false, true] {
            for ignore in [None, Some(2)] {
                let what = format!("nll_loss {reduction:?} weight {weight} ignore {ignore:?}");
                gradcheck(&what, &[&[5, 4]], move |x| {
                    let dev = x[0].device();
                    let w = weight.then(|| Tensor::from_vec(&[0.5, 1.5, 1.0, 2.0], &[4], &dev));
                    x[0].nll_loss(&classes(5, 4, &dev), w.as_ref(), ignore, reduction)
                });
            }
        }
        gradcheck(&format!("nll_loss [2, 4, 3] {reduction:?}"), &[&[2, 4, 3]], move |x| {
            let dev = x[0].device();
            x[0].log_softmax(1).nll_loss(&classes(6, 4, &dev).reshape(&[2, 3]), None, Some(0), reduction)
        });
    }
}

#[test]
fn embedding_gathers_rows_and_accumulates_repeated_ids() {
    gradcheck("embedding", &[&[5, 3]], |x| {
        let ids = Tensor::from_u32(&[4, 0, 4, 2, 4, 1], &[2, 3], &x[0].device());
        ids.embedding(&x[0], None)
    });
    for dev in backends("embedding_gathers_rows_and_accumulates_repeated_ids") {
        let w = rand(&[5, 3], 4, -1.0, 1.0, &dev).requires_grad_();
        let ids = Tensor::from_u32(&[4, 0, 4, 2, 4, 1], &[2, 3], &dev);
        let out = ids.embedding(&w, None);
        assert_eq!(out.shape(), vec![2, 3, 3]);
        let wv = w.to_vec();
        let want: Vec<f32> = [4, 0, 4, 2, 4, 1].iter().flat_map(|&i| wv[i * 3..i * 3 + 3].to_vec()).collect();
        assert_eq!(out.to_vec(), want, "rows of the table on {}", dev.name());
        out.sum_all().backward();
        // Row 4 appears three times, row 3 never.
        let counts = [1.0, 1.0, 1.0, 0.0, 3.0];
        let want: Vec<f32> = counts.iter().flat_map(|&c| [c; 3]).collect();
        assert_eq!(w.grad().unwrap().to_vec(), want, "accumulated rows on {}", dev.name());
    }
}

/// Not a finite-difference check: the padding row's value does move the
/// output, PyTorch just withholds its gradient, so the check is against the
/// plain gradient with that row zeroed.
#[test]
fn embedding_padding_row_gets_no_gradient() {
    for dev in backends("embedding_padding_row_gets_no_gradient") {
        let ids = Tensor::from_u32(&[1, 3, 1, 0, 3], &[5], &dev);
        let up = rand(&[5, 2], 6, -1.0, 1.0, &dev);
        let grad_of = |pad: Option<u32>| {
            let w = rand(&[4, 2], 5, -1.0, 1.0, &dev).requires_grad_();
            let out = ids.embedding(&w, pad);
            // The forward keeps the padding row's values.
            assert_eq!(out.to_vec(), ids.embedding(&w.detach(), None).to_vec());
            (&out * &up).sum_all().backward();
            w.grad().unwrap().to_vec()
        };
        let (plain, padded) = (grad_of(None), grad_of(Some(3)));
        let mut want = plain.clone();
        want[6..8].fill(0.0);
        assert_eq!(padded, want, "padding row 3 on {}", dev.name());
        assert!(plain[6..8].iter().all(|&g| g != 0.0));
    }
}

#[test]
fn dropout_gradient_with_a_fixed_generator_state() {
    for p in [0.2, 0.5] {
        gradcheck(&format!("dropout p {p}"), &[&[4, 6]], move |x| {
            x[0].dropout(p, true, &mut Generator { seed: 77, offset: 3 })
        });
    }
}

#[test]
fn dropout_semantics() {
    let mut outputs = vec![];
    for dev in backends("dropout_semantics") {
        let n = 4000;
        let x = rand(&[40, 100], 8, 0.5, 1.5, &dev);
        let mut gen = Generator::new(21);
        for training in [false, true] {
            let same = x.dropout(if training { 0.0 } else { 0.5 }, training, &mut gen);
            assert_eq!(same.to_vec(), x.to_vec(), "identity when not training or p = 0");
        }
        assert_eq!(gen.offset, 0, "no mask drawn, no counters used");
        assert!(x.dropout(1.0, true, &mut gen).to_vec().iter().all(|&v| v == 0.0), "p = 1 zeroes");

        let p = 0.3;
        let y = x.dropout(p, true, &mut gen).to_vec();
        assert_eq!(gen.offset, (n as u64).div_ceil(4), "advances like Generator::uniform");
        let xv = x.to_vec();
        let mut dropped = 0;
        for (a, b) in y.iter().zip(&xv) {
            if *a == 0.0 {
                dropped += 1;
            } else {
                assert!((a - b / (1.0 - p)).abs() <= 1e-6 * a.abs(), "kept value {a} vs {b} / (1 - p)");
            }
        }
        let frac = dropped as f64 / n as f64;
        assert!((frac - p as f64).abs() < 0.04, "dropped fraction {frac} on {}", dev.name());
        // A fresh draw from the advanced generator is another mask.
        assert_ne!(x.dropout(p, true, &mut gen).to_vec(), y);

        // The backward multiplies by the same mask.
        let xg = x.detach().requires_grad_();
        // y's mask was the first one drawn: counters from offset 0.
        let out = xg.dropout(p, true, &mut Generator { seed: 21, offset: 0 });
        assert_eq!(out.to_vec(), y, "a saved generator state repeats the mask");
        out.sum_all().backward();
        let grad = xg.grad().unwrap().to_vec();
        for ((g, o), xv) in grad.iter().zip(out.to_vec()).zip(&xv) {
            assert_eq!(*g == 0.0, o == 0.0, "gradient mask follows the output mask");
            if *g != 0.0 {
                assert!((g * xv - o).abs() <= 1e-5, "gradient is the mask's scale");
            }
        }
        outputs.push(y);
    }
    // Same seed and offset: the same mask on the CPU and the GPU, bit for bit.
    if let [cpu, gpu] = &outputs[..] {
        assert_eq!(cpu, gpu);
    }
}
