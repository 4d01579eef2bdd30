//! Finite-difference checks of every differentiable op, on the CPU backend
//! and on the GPU.

use crate::common;
use common::*;
use wgrad_autograd::gradcheck::GradCheck;
use wgrad_autograd::{Domain, Tensor, UnaryOp};

#[test]
fn every_activation_and_unary_function() {
    // Every row of the unary op table but the piecewise-constant ones.
    let ops = UnaryOp::EXAMPLES.iter().copied().filter(|op| op.domain() == Domain::Real);
    for op in ops {
        // Inputs are kept off the kinks (0, clamp bounds) by the seeded data; eps is small.
        let opts = GradCheck { eps: 1e-3, ..Default::default() };
        gradcheck_in(&format!("{op:?}"), &[&[2, 5]], (-1.3, 1.3), opts, move |x| x[0].unary(op));
    }
    let positive = UnaryOp::EXAMPLES.iter().copied().filter(|op| op.domain() == Domain::Positive);
    for op in positive.chain([UnaryOp::Powf(-0.5)]) {
        gradcheck_in(&format!("{op:?}"), &[&[7]], (0.5, 2.0), GradCheck::default(), move |x| x[0].unary(op));
    }
}

#[test]
fn broadcasting_binary_ops_reduce_gradients_to_input_shapes() {
    let pairs: [(&[usize], &[usize]); 4] = [(&[3, 4], &[3, 4]), (&[3, 1], &[1, 4]), (&[2, 3, 4], &[4]), (&[], &[2, 3])];
    for (sa, sb) in pairs {
        gradcheck("add", &[sa, sb], |x| &x[0] + &x[1]);
        gradcheck("sub", &[sa, sb], |x| &x[0] - &x[1]);
        gradcheck("mul", &[sa, sb], |x| &x[0] * &x[1]);
        let apart = |d: &wgrad_autograd::Device| vec![grid(sa, 1, 0.0, d), grid(sb, 2, 0.05, d)];
        gradcheck_inputs("maximum", apart, |x| x[0].maximum(&x[1]));
        gradcheck_inputs("minimum", apart, |x| x[0].minimum(&x[1]));
        // Denominators and bases kept positive.
        gradcheck_in("div", &[sa, sb], (0.5, 2.0), GradCheck::default(), |x| &x[0] / &x[1]);
        gradcheck_in("pow", &[sa, sb], (0.5, 1.5), GradCheck::default(), |x| x[0].pow(&x[1]));
    }
    gradcheck("scalar ops", &[&[4]], |x| (2.0 - &x[0]) * 3.0 + 1.0);
    gradcheck_in("scalar div", &[&[4]], (0.5, 2.0), GradCheck::default(), |x| 2.0 / &x[0]);
}

#[test]
fn reductions_over_axes() {
    for keep in [false, true] {
        gradcheck("sum axis", &[&[3, 4, 2]], move |x| x[0].sum(&[1], keep));
        gradcheck("sum axes", &[&[3, 4, 2]], move |x| x[0].sum(&[0, 2], keep));
        gradcheck("mean", &[&[3, 4, 2]], move |x| x[0].mean(&[-1], keep));
        // Distinct values on a grid: no near-ties for the finite differences.
        gradcheck_inputs("max", |d| vec![grid(&[3, 5], 3, 0.0, d)], move |x| x[0].max(&[1], keep));
        gradcheck_inputs("min", |d| vec![grid(&[3, 5], 4, 0.0, d)], move |x| x[0].min(&[0], keep));
        gradcheck("var unbiased", &[&[3, 5]], move |x| x[0].var(&[1], 1, keep));
        gradcheck("var biased", &[&[3, 5]], move |x| x[0].var(&[0, 1], 0, keep));
    }
    gradcheck("sum all", &[&[2, 3]], |x| x[0].sum_all());
    gradcheck("mean all", &[&[2, 3]], |x| x[0].mean_all());
}

#[test]
fn matmul_with_transposes_batches_and_vectors() {
    gradcheck("matmul", &[&[3, 4], &[4, 5]], |x| x[0].matmul(&x[1]));
    gradcheck("matmul a^T", &[&[4, 3], &[4, 5]], |x| x[0].t().matmul(&x[1]));
    gradcheck("matmul b^T", &[&[3, 4], &[5, 4]], |x| x[0].matmul(&x[1].t()));
    gradcheck("matmul a^T b^T", &[&[4, 3], &[5, 4]], |x| x[0].t().matmul(&x[1].t()));
    gradcheck("batched", &[&[2, 3, 4], &[2, 4, 2]], |x| x[0].matmul(&x[1]));
    gradcheck("batch broadcast", &[&[2, 1, 3, 4], &[3, 4, 2]], |x| x[0].matmul(&x[1]));
    gradcheck("vector @ matrix", &[&[4], &[4, 3]], |x| x[0].matmul(&x[1]));
    gradcheck("matrix @ vector", &[&[3, 4], &[4]], |x| x[0].matmul(&x[1]));
    // Transposed operands get their gradient as the transpose of the
    // product in the other order: batched, and broadcast over the batch.
    gradcheck("batched b^T", &[&[2, 3, 4], &[2, 5, 4]], |x| x[0].matmul(&x[1].transpose(-1, -2)));
    gradcheck("batched a^T", &[&[2, 4, 3], &[2, 4, 5]], |x| x[0].transpose(-1, -2).matmul(&x[1]));
    gradcheck("broadcast b^T", &[&[2, 3, 4], &[5, 4]], |x| x[0].matmul(&x[1].t()));
    gradcheck("broadcast a^T", &[&[4, 3], &[2, 4, 5]], |x| x[0].t().matmul(&x[1]));
    gradcheck("linear", &[&[6, 4], &[5, 4], &[5]], |x| x[0].linear(&x[1], Some(&x[2])));
}

#[test]
fn views_slices_and_joins() {
    gradcheck("reshape", &[&[2, 6]], |x| x[0].reshape(&[3, 4]) * 2.0);
    gradcheck("permute", &[&[2, 3, 4]], |x| x[0].permute(&[2, 0, 1]).contiguous() * 2.0);
    gradcheck("reshape of a transpose", &[&[3, 4]], |x| x[0].t().reshape(&[12]).square());
    // Heads split out of a narrowed projection (a view), then merged back
    // after a permute (a copy), as attention does; the parts' gradients
    // meet in the projection's.
    gradcheck("heads of a packed projection", &[&[2, 3, 12]], |x| {
        let heads = |k: usize| x[0].narrow(-1, 4 * k, 4).reshape(&[2, 3, 2, 2]).permute(&[0, 2, 1, 3]);
        let (q, k, v) = (heads(0), heads(1), heads(2));
        (&(&q * &k) + &v.exp()).permute(&[0, 2, 1, 3]).reshape(&[2, 3, 4]).square()
    });
    gradcheck("narrow", &[&[4, 5]], |x| x[0].narrow(1, 1, 3).square());
    gradcheck("narrow of narrow", &[&[6, 5]], |x| x[0].narrow(0, 1, 4).narrow(1, 2, 2).exp());
    // Backward joins the gradients of narrows of one tensor along one dim
    // (by one concatenation where they tile it); every other mix falls
    // back to padding and adding.
    gradcheck("narrows tiling a dim, read out of order", &[&[3, 7]], |x| {
        let y = &x[0] * 2.0;
        let (a, b, c) = (y.narrow(1, 0, 2), y.narrow(1, 2, 4), y.narrow(1, 6, 1));
        &(&c.exp() * &a.sum(&[1], true)) + &b.square().sum(&[1], true)
    });
    gradcheck("narrows with a gap", &[&[4, 6]], |x| &x[0].narrow(1, 0, 2).exp() + &x[0].narrow(1, 4, 2).square());
    gradcheck("overlapping narrows", &[&[4, 6]], |x| &x[0].narrow(1, 0, 4).exp() * &x[0].narrow(1, 2, 4));
    gradcheck("narrows beside a whole use", &[&[4, 6]], |x| {
        let (a, b) = (x[0].narrow(1, 0, 3), x[0].narrow(1, 3, 3));
        &(&a * &b) + &x[0].sum(&[1], true).exp()
    });
    gradcheck("narrows along two dims", &[&[4, 6]], |x| {
        &(&x[0].narrow(1, 0, 3) * &x[0].narrow(1, 3, 3)).sum(&[0], true) + &x[0].narrow(0, 1, 1).narrow(1, 0, 3)
    });
    gradcheck("expand", &[&[3, 1]], |x| x[0].expand(&[2, 3, 4]).square());
    gradcheck("slice_step", &[&[2, 7]], |x| x[0].slice_step(1, 1, 2).square());
    gradcheck("slice_step of a transpose", &[&[5, 3]], |x| x[0].t().slice_step(1, 0, 3).exp());

    gradcheck("unsqueeze/squeeze", &[&[3]], |x| x[0].unsqueeze(0).squeeze(0) * 3.0);
    gradcheck("cat dim 0", &[&[2, 3], &[1, 3], &[3, 3]], |x| Tensor::cat(&[&x[0], &x[1], &x[2]], 0).square());
    gradcheck("cat dim 1", &[&[2, 3], &[2, 1]], |x| Tensor::cat(&[&x[0], &x[1]], -1).square());
    gradcheck("stack", &[&[2, 3], &[2, 3]], |x| Tensor::stack(&[&x[0], &x[1]], 1).square());
}

#[test]
fn indexing_ops() {
    gradcheck("index_select dim 0 (repeats)", &[&[4, 3]], |x| {
        let idx = Tensor::from_u32(&[2, 0, 2], &[3], &x[0].device());
        x[0].index_select(0, &idx).square()
    });
    gradcheck("index_select dim 1", &[&[2, 4]], |x| {
        let idx = Tensor::from_u32(&[3, 1], &[2], &x[0].device());
        x[0].index_select(1, &idx).square()
    });
    gradcheck("gather", &[&[3, 4]], |x| {
        let idx = Tensor::from_u32(&[0, 3, 3, 1, 2, 0], &[3, 2], &x[0].device());
        x[0].gather(1, &idx).square()
    });
    gradcheck("scatter_add", &[&[3, 4], &[2, 4]], |x| {
        let idx = Tensor::from_u32(&[0, 1, 2, 0, 2, 2, 0, 1], &[2, 4], &x[0].device());
        x[0].scatter_add(0, &idx, &x[1]).square()
    });
    gradcheck("index_add dim 0 (repeats)", &[&[3, 4], &[4, 4]], |x| {
        let idx = Tensor::from_u32(&[2, 0, 2, 1], &[4], &x[0].device());
        x[0].index_add(0, &idx, &x[1]).square()
    });
    gradcheck("index_add dim 1 of a transpose", &[&[3, 2], &[2, 5]], |x| {
        let idx = Tensor::from_u32(&[1, 1, 0, 2, 1], &[5], &x[0].device());
        x[0].t().index_add(1, &idx, &x[1]).square()
    });
}

#[test]
fn embedding_gradients_are_the_same_bits_on_every_device() {
    // 500 ids over 7 rows: each row's gradient sums ~70 rows, an order-
    // dependent float sum (GPU float atomics gave other bits run to run).
    let ids: Vec<u32> = (0..500u32).map(|i| (i * i + 3 * i) % 7).collect();
    let grad_bits = |dev: &wgrad_autograd::Device| {
        let table = rand(&[7, 33], 1, -1.0, 1.0, dev).requires_grad_();
        let weights = rand(&[500, 33], 2, -1.0, 1.0, dev);
        let rows = Tensor::from_u32(&ids, &[500], dev).embedding(&table, None);
        (&rows * &weights).sum_all().backward();
        table.grad().unwrap().to_vec().iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
    };
    let want = grad_bits(&wgrad_autograd::Device::cpu_reference());
    for dev in backends("embedding_gradients_are_the_same_bits_on_every_device") {
        assert_eq!(grad_bits(&dev), want, "on {}", dev.name());
    }
}

#[test]
fn max_ties_share_the_gradient_like_pytorch() {
    for dev in backends("max_ties_share_the_gradient_like_pytorch") {
        let x = Tensor::from_vec(&[1.0, 3.0, 3.0, 2.0], &[4], &dev).requires_grad_();
        x.max(&[0], false).backward();
        assert_eq!(x.grad().unwrap().to_vec(), vec![0.0, 0.5, 0.5, 0.0], "torch.amax splits ties");
        let (a, b) = (
            Tensor::from_vec(&[1.0, 2.0], &[2], &dev).requires_grad_(),
            Tensor::from_vec(&[1.0, 1.0], &[2], &dev).requires_grad_(),
        );
        a.maximum(&b).sum_all().backward();
        assert_eq!(a.grad().unwrap().to_vec(), vec![0.5, 1.0]);
        assert_eq!(b.grad().unwrap().to_vec(), vec![0.5, 0.0]);
    }
}

/// `maximum` / `minimum` against PyTorch 2.x's `backward` for an upstream
/// gradient of 1 and of +inf: the loser gets 0 (not inf · 0 = NaN), ties
/// half, and with a NaN operand both sides the whole gradient.
#[test]
fn maximum_and_minimum_mask_the_loser_like_pytorch() {
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    let (xa, xb) = ([1.0, 2.0, 3.0, nan, 1.0], [2.0, 2.0, 1.0, 1.0, nan]);
    for dev in backends("maximum_and_minimum_mask_the_loser_like_pytorch") {
        for (maximum, g, want_a, want_b) in [
            (true, 1.0, [0.0, 0.5, 1.0, 1.0, 1.0], [1.0, 0.5, 0.0, 1.0, 1.0]),
            (true, inf, [0.0, inf, inf, inf, inf], [inf, inf, 0.0, inf, inf]),
            (false, 1.0, [1.0, 0.5, 0.0, 1.0, 1.0], [0.0, 0.5, 1.0, 1.0, 1.0]),
            (false, inf, [inf, inf, 0.0, inf, inf], [0.0, inf, inf, inf, inf]),
        ] {
            let a = Tensor::from_vec(&xa, &[5], &dev).requires_grad_();
            let b = Tensor::from_vec(&xb, &[5], &dev).requires_grad_();
            let y = if maximum { a.maximum(&b) } else { a.minimum(&b) };
            y.backward_with(&Tensor::from_vec(&[g; 5], &[5], &dev));
            let what = format!("{} with upstream {g} on {}", if maximum { "maximum" } else { "minimum" }, dev.name());
            assert_eq!(a.grad().unwrap().to_vec(), want_a, "{what}: a");
            assert_eq!(b.grad().unwrap().to_vec(), want_b, "{what}: b");
        }
    }
}

#[test]
fn where_selects_gradients() {
    gradcheck("where", &[&[3, 4], &[1, 4]], |x| {
        let cond = x[0].gt(&Tensor::zeros(&[], &x[0].device()));
        Tensor::where_cond(&cond, &x[0], &x[1]).square()
    });
}

#[test]
fn composite_expression_like_a_layer() {
    // softmax(tanh(x W + b)) weighted: exercises the rules together.
    gradcheck("composite", &[&[3, 4], &[4, 5], &[5]], |x| {
        let z = (x[0].matmul(&x[1]) + &x[2]).tanh();
        let e = (&z - &z.max(&[-1], true)).exp();
        &e / &e.sum(&[-1], true)
    });
}

/// The gradients of three narrows that tile a dim (self-attention's q, k, v
/// split from one packed projection) land in their slices exactly, in f32
/// and f16, on every backend.
#[test]
fn split_gradients_land_in_their_slices() {
    for dev in backends("split_gradients_land_in_their_slices") {
        for dtype in [wgrad_autograd::DType::F32, wgrad_autograd::DType::F16] {
            let x = Tensor::zeros(&[5, 9], &dev).requires_grad_();
            let y = x.to_dtype(dtype).mul_scalar(1.0);
            let (q, k, v) = (y.narrow(1, 0, 3), y.narrow(1, 3, 3), y.narrow(1, 6, 3));
            // Read v first, so that its gradient arrives before q's.
            let loss = &(&v.mul_scalar(3.0) + &q) + &k.mul_scalar(2.0);
            loss.to_dtype(wgrad_autograd::DType::F32).sum_all().backward();
            let want: Vec<f32> = (0..45).map(|i| [1.0, 2.0, 3.0][i % 9 / 3]).collect();
            assert_eq!(x.grad().unwrap().to_vec(), want, "{dtype:?} on {}", dev.name());
        }
    }
}
