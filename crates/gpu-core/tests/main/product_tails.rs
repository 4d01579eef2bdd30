//! The fuser's product tails (`gpu/tails.rs`): plain elementwise ops that
//! read a matmul's or a convolution's result merge into its store (a unary
//! op, a residual add, a ReLU's gradient), one launch where they took several, with the
//! values of the unfused launches and the CPU twin; what may not merge (a
//! result read twice, a residual computed after the product, an op a
//! convolution's store lacks) runs as before with the same values.

use crate::common::window;
use wgrad_gpu_core::ops::batch_norm::{batch_norm_forward, Centre, ChannelDims, Operands};
use wgrad_gpu_core::ops::binary::{binary, BinaryOp};
use wgrad_gpu_core::ops::cast::{f16_to_f32, f32_to_f16};
use wgrad_gpu_core::ops::conv::{conv2d, conv2d_input_grad, ConvGeometry, ConvOptions};
use wgrad_gpu_core::ops::epilogue::Epilogue;
use wgrad_gpu_core::ops::matmul::{matmul, matmul_epilogue, MatmulConfig, MatmulKernel};
use wgrad_gpu_core::ops::pool::{
    adaptive_avg_pool2d_backward, adaptive_avg_pool2d_backward_io, max_pool2d, max_pool2d_backward,
    max_pool2d_backward_io, max_pool2d_io,
};
use wgrad_gpu_core::ops::unary::{unary, unary_grad, UnaryOp};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip, Rng};
use wgrad_gpu_core::{Buffer, Device, Layout};

const M: usize = 9;
const K: usize = 13;
const N: usize = 11;

/// The launches `f` records on `dev` (flushed: the fuser has settled) and
/// the values of what it returns, read as f32.
fn recorded(dev: &Device, f: impl FnOnce(&Device) -> Vec<Buffer>) -> (Vec<Vec<f32>>, u64) {
    recorded_as(dev, f, Read::F32)
}

/// How a test reads a result: f32 values, or f16 ones widened on the host.
#[derive(Clone, Copy)]
enum Read {
    F32,
    F16,
}

/// [`recorded`], each result read as `read` says.
fn recorded_as(dev: &Device, f: impl FnOnce(&Device) -> Vec<Buffer>, read: Read) -> (Vec<Vec<f32>>, u64) {
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let out = f(dev);
    dev.flush().unwrap();
    let launches = dev.stats().dispatches - before;
    let values = |b: &Buffer| match read {
        Read::F32 => b.to_f32().unwrap(),
        Read::F16 => b.to_f16().unwrap().into_iter().map(half::f16::to_f32).collect(),
    };
    (out.iter().map(values).collect(), launches)
}

/// `x @ w` for seeded `[M, K]` and `[K, N]` operands.
fn product(dev: &Device) -> Buffer {
    let x = Buffer::from_f32(dev, &Rng::new(1).vec(M * K, -1.0, 1.0)).unwrap();
    let w = Buffer::from_f32(dev, &Rng::new(2).vec(K * N, -1.0, 1.0)).unwrap();
    matmul(&x, &Layout::contiguous(&[M, K]), &w, &Layout::contiguous(&[K, N])).unwrap().0
}

fn residual(dev: &Device) -> Buffer {
    Buffer::from_f32(dev, &Rng::new(3).vec(M * N, -1.0, 1.0)).unwrap()
}

fn add(a: &Buffer, b: &Buffer) -> Buffer {
    let dense = Layout::contiguous(&[M * N]);
    binary(BinaryOp::Add, a, &dense, b, &dense).unwrap().0
}

/// What `f` returns on a fusing GPU device, on a GPU device that does not
/// fuse and on the CPU twin (read as `read` says), after asserting that the
/// fused run took `want` launches; `None` without a GPU.
fn three_ways(
    test: &str,
    what: &str,
    want: u64,
    read: Read,
    f: impl Fn(&Device) -> Vec<Buffer>,
) -> Option<[Vec<Vec<f32>>; 3]> {
    let fused = fresh_gpu_or_skip(test)?;
    let plain = fresh_gpu_or_skip(test).unwrap();
    plain.set_fusion(false).unwrap();
    let (got, launches) = recorded_as(&fused, &f, read);
    assert_eq!(launches, want, "{what}: launches");
    Some([got, recorded_as(&plain, &f, read).0, recorded_as(&Device::cpu(), &f, read).0])
}

/// Runs `f` [`three_ways`]: the fused run takes `want` launches, the values agree.
fn check(test: &str, what: &str, want: u64, f: impl Fn(&Device) -> Vec<Buffer>) {
    let Some([got, unfused, cpu]) = three_ways(test, what, want, Read::F32, f) else { return };
    for (k, v) in got.iter().enumerate() {
        assert_close(&format!("{what}: output {k} vs unfused"), v, &unfused[k], 1e-6, 1e-6);
        assert_close(&format!("{what}: output {k} vs the CPU twin"), v, &cpu[k], 1e-5, 1e-5);
    }
}

#[test]
fn a_unary_op_and_a_residual_merge_into_the_products_store() {
    let test = "a_unary_op_and_a_residual_merge_into_the_products_store";
    for op in [UnaryOp::Relu, UnaryOp::Gelu, UnaryOp::Tanh, UnaryOp::LeakyRelu(0.2)] {
        check(test, &format!("{op:?}(x @ w)"), 1, |d| vec![unary(op, &product(d), M * N).unwrap()]);
        check(test, &format!("r + {op:?}(x @ w)"), 1, |d| {
            let r = residual(d);
            vec![add(&r, &unary(op, &product(d), M * N).unwrap())]
        });
    }
    check(test, "(x @ w) + r", 1, |d| {
        let r = residual(d);
        vec![add(&product(d), &r)]
    });
}

#[test]
fn values_a_tensor_holds_are_stored_or_end_the_tail() {
    let test = "values_a_tensor_holds_are_stored_or_end_the_tail";
    // The product's sums held (a gradient would read them): a GELU stores
    // them beside its result, a ReLU too (through the `_act` variant).
    for op in [UnaryOp::Gelu, UnaryOp::Relu] {
        check(test, &format!("{op:?} of a held product"), 1, |d| {
            let y = product(d);
            let z = unary(op, &y, M * N).unwrap();
            vec![y, z]
        });
    }
    // The activation's result held: the residual has no place to store it
    // before the add, so the add runs on its own.
    check(test, "r + gelu(x @ w), gelu held", 2, |d| {
        let r = residual(d);
        let z = unary(UnaryOp::Gelu, &product(d), M * N).unwrap();
        let s = add(&r, &z);
        vec![z, s]
    });
}

#[test]
fn readers_that_cannot_merge_run_as_before() {
    let test = "readers_that_cannot_merge_run_as_before";
    // Read twice: the product is stored, the readers fuse with neither.
    check(test, "two readers", 3, |d| {
        let y = product(d);
        vec![unary(UnaryOp::Exp, &y, M * N).unwrap(), unary(UnaryOp::Neg, &y, M * N).unwrap()]
    });
    // A residual computed after the product: the product's launch,
    // encoded first, could not read it (it is computed inside the add).
    check(test, "a late residual", 2, |d| {
        let y = product(d);
        let r = unary(UnaryOp::Neg, &residual(d), M * N).unwrap();
        vec![add(&y, &r)]
    });
    // A product read through a broadcast: not element for element.
    check(test, "a broadcast read", 2, |d| {
        let y = product(d);
        let row = Buffer::from_f32(d, &Rng::new(4).vec(M * N, -1.0, 1.0)).unwrap();
        let first_row = Layout::contiguous(&[M, N]).narrow(0, 0, 1).unwrap().broadcast_to(&[M, N]).unwrap();
        let (s, _) = binary(BinaryOp::Add, &row, &Layout::contiguous(&[M, N]), &y, &first_row).unwrap();
        vec![s]
    });
}

/// A 3x3 convolution of 2 images of 3 channels, 6 x 5, padded to keep the size.
fn same_padded_3x3() -> ConvGeometry {
    ConvGeometry { pad_top: 1, pad_bottom: 1, pad_left: 1, pad_right: 1, ..ConvGeometry::new(2, 3, (6, 5), (3, 3)) }
}

#[test]
fn a_convolution_takes_a_relu_a_residual_and_a_relu_gradient() {
    let test = "a_convolution_takes_a_relu_and_nothing_else";
    let geo = same_padded_3x3();
    let (oc, elements) = (4, 2 * 4 * 6 * 5);
    let conv = |d: &Device| {
        let x = Buffer::from_f32(d, &Rng::new(5).vec(2 * 3 * 6 * 5, -1.0, 1.0)).unwrap();
        let w = Buffer::from_f32(d, &Rng::new(6).vec(oc * 3 * 9, -1.0, 1.0)).unwrap();
        conv2d(&x, &w, oc, &geo, &ConvOptions::default()).unwrap()
    };
    check(test, "relu(conv)", 1, |d| vec![unary(UnaryOp::Relu, &conv(d), elements).unwrap()]);
    check(test, "gelu(conv)", 2, |d| vec![unary(UnaryOp::Gelu, &conv(d), elements).unwrap()]);
    let r = |d: &Device| Buffer::from_f32(d, &Rng::new(8).vec(elements, -1.0, 1.0)).unwrap();
    let dense = Layout::contiguous(&[elements]);
    // (Uploads end a run: operands are uploaded before the product.)
    check(test, "relu(conv) + r", 1, |d| {
        let r = r(d);
        let z = unary(UnaryOp::Relu, &conv(d), elements).unwrap();
        vec![binary(BinaryOp::Add, &r, &dense, &z, &dense).unwrap().0]
    });
    // A ResNet block's backward: the input gradient plus the shortcut's,
    // through the ReLU before the block.
    check(test, "relu'(y) · (conv + r)", 1, |d| {
        let (r, y) = (r(d), relu_output(d, elements));
        let s = binary(BinaryOp::Add, &conv(d), &dense, &r, &dense).unwrap().0;
        vec![relu_grad(&y, &s, elements)]
    });
}

/// A ReLU's output: seeded values, a third of them zero.
fn relu_output(dev: &Device, n: usize) -> Buffer {
    let v: Vec<f32> = Rng::new(7).vec(n, -0.5, 1.0).into_iter().map(|v| v.max(0.0)).collect();
    Buffer::from_f32(dev, &v).unwrap()
}

/// ReLU's backward at output `y` for gradient `g` (the autograd rule binds
/// the output for both values, since the derivative reads only it).
fn relu_grad(y: &Buffer, g: &Buffer, n: usize) -> Buffer {
    unary_grad(UnaryOp::Relu, y, y, g, n).unwrap()
}

#[test]
fn a_relu_gradient_merges_last_after_a_residual() {
    let test = "a_relu_gradient_merges_last_after_a_residual";
    check(test, "relu'(y) · (x @ w)", 1, |d| {
        let y = relu_output(d, M * N);
        vec![relu_grad(&y, &product(d), M * N)]
    });
    check(test, "relu'(y) · ((x @ w) + r)", 1, |d| {
        let (y, r) = (relu_output(d, M * N), residual(d));
        vec![relu_grad(&y, &add(&product(d), &r), M * N)]
    });
    // The gradient held (a second reader would read it): not merged.
    check(test, "relu'(y) · g, g held", 2, |d| {
        let y = relu_output(d, M * N);
        let g = product(d);
        vec![relu_grad(&y, &g, M * N), g]
    });
    // y computed after the product: the product's launch could not read
    // it (and y, read twice by the gradient, is not computed inside it).
    check(test, "a late y", 3, |d| {
        let r = residual(d);
        let g = product(d);
        let y = unary(UnaryOp::Relu, &r, M * N).unwrap();
        vec![relu_grad(&y, &g, M * N)]
    });
    // A ReLU after the gradient's mask is a new chain, not the store's
    // activation (the store's order is activation, residual, gradient).
    check(test, "relu(relu'(y) · (x @ w))", 2, |d| {
        let y = relu_output(d, M * N);
        let g = relu_grad(&y, &product(d), M * N);
        vec![unary(UnaryOp::Relu, &g, M * N).unwrap()]
    });
}

#[test]
fn batch_norm_takes_a_residual_then_a_relu() {
    let test = "batch_norm_takes_a_residual_then_a_relu";
    // [2, 3, 5]: odd runs (the scalar entries); [2, 3, 8]: the vec4 entries.
    for inner in [5, 8] {
        let d = ChannelDims { outer: 2, channels: 3, inner };
        let n = 2 * 3 * inner;
        let dense = Layout::contiguous(&[n]);
        let upload = |dev: &Device, seed: u64, len: usize, lo: f32| {
            Buffer::from_f32(dev, &Rng::new(seed).vec(len, lo, 1.0)).unwrap()
        };
        // x, the statistics [mean; rstd], weight, bias, a residual.
        let operands = |dev: &Device| {
            [(9, n, -1.0), (10, 6, 0.5), (11, 3, -1.0), (12, 3, -1.0), (13, n, -1.0)]
                .map(|(seed, len, lo)| upload(dev, seed, len, lo))
        };
        let bn = |[x, stats, w, b, _]: &[Buffer; 5]| {
            batch_norm_forward(x, d, Centre::Stats(stats), Some(w), Some(b), None, false, Operands::F32).unwrap()
        };
        check(test, &format!("relu(bn(x) + r), inner {inner}"), 1, |dev| {
            let ops = operands(dev);
            let s = binary(BinaryOp::Add, &bn(&ops), &dense, &ops[4], &dense).unwrap().0;
            vec![unary(UnaryOp::Relu, &s, n).unwrap()]
        });
        check(test, &format!("relu(bn(x)), inner {inner}"), 1, |dev| {
            vec![unary(UnaryOp::Relu, &bn(&operands(dev)), n).unwrap()]
        });
        // The store's order is residual, then ReLU: an add after the ReLU,
        // or any other activation, runs on its own.
        check(test, &format!("r + relu(bn(x)), inner {inner}"), 2, |dev| {
            let ops = operands(dev);
            let z = unary(UnaryOp::Relu, &bn(&ops), n).unwrap();
            vec![binary(BinaryOp::Add, &ops[4], &dense, &z, &dense).unwrap().0]
        });
        check(test, &format!("tanh(bn(x)), inner {inner}"), 2, |dev| {
            vec![unary(UnaryOp::Tanh, &bn(&operands(dev)), n).unwrap()]
        });
    }
}

/// Batch norm on f16 activations (mixed precision): what follows it reads
/// the f16 through widens and rounds its results with narrows, as
/// autograd records f16 ops; the store takes the casts too and rounds
/// where they do, so `relu(bn(x) + r)` is one launch with the unfused bits.
#[test]
fn an_f16_batch_norm_takes_its_readers_casts() {
    let test = "an_f16_batch_norm_takes_its_readers_casts";
    for inner in [5, 8] {
        let d = ChannelDims { outer: 2, channels: 3, inner };
        let n = 2 * 3 * inner;
        let dense = Layout::contiguous(&[n]);
        let halves = |dev: &Device, seed: u64| {
            let v: Vec<half::f16> = Rng::new(seed).vec(n, -2.0, 2.0).into_iter().map(half::f16::from_f32).collect();
            Buffer::from_f16(dev, &v).unwrap()
        };
        let upload = |dev: &Device, seed: u64, len: usize, lo: f32| {
            Buffer::from_f32(dev, &Rng::new(seed).vec(len, lo, 1.0)).unwrap()
        };
        // x and r f16; the statistics [mean; rstd], weight and bias f32.
        let operands = |dev: &Device| {
            let f32s = [(10, 6, 0.5), (11, 3, -1.0), (12, 3, -1.0)].map(|(s, len, lo)| upload(dev, s, len, lo));
            (halves(dev, 9), halves(dev, 13), f32s)
        };
        let bn = |x: &Buffer, [stats, w, b]: &[Buffer; 3]| {
            batch_norm_forward(x, d, Centre::Stats(stats), Some(w), Some(b), None, false, Operands::F16).unwrap()
        };
        let widen = |h: &Buffer| f16_to_f32(h, n).unwrap();
        let narrow = |v: &Buffer| f32_to_f16(v, n).unwrap();
        // Compared as f32 values (the f16 results widened by the test).
        let wide = |h: Buffer| f16_to_f32(&h, n).unwrap();
        check(test, &format!("f16 relu(bn(x) + r), inner {inner}"), 2, |dev| {
            let (x, r, p) = operands(dev);
            let s = narrow(&binary(BinaryOp::Add, &widen(&bn(&x, &p)), &dense, &widen(&r), &dense).unwrap().0);
            vec![wide(narrow(&unary(UnaryOp::Relu, &widen(&s), n).unwrap()))]
        });
        check(test, &format!("f16 relu(bn(x)), inner {inner}"), 2, |dev| {
            let (x, _, p) = operands(dev);
            vec![wide(narrow(&unary(UnaryOp::Relu, &widen(&bn(&x, &p)), n).unwrap()))]
        });
        // A tail that ends in f32 (no narrow): the casts' values are not
        // the store's to write, so nothing merges.
        check(test, &format!("f16 bn(x) widened then relu in f32, inner {inner}"), 2, |dev| {
            let (x, _, p) = operands(dev);
            vec![unary(UnaryOp::Relu, &widen(&bn(&x, &p)), n).unwrap()]
        });
    }
}

/// f16 seeded values in `[-scale, scale)`, packed.
fn halves(dev: &Device, seed: u64, n: usize, scale: f32) -> Buffer {
    let v = Rng::new(seed).vec(n, -scale, scale).into_iter().map(half::f16::from_f32).collect::<Vec<_>>();
    Buffer::from_f16(dev, &v).unwrap()
}

/// An f16 ReLU output: seeded values, a third of them zero.
fn relu_output_f16(dev: &Device, n: usize) -> Buffer {
    let v: Vec<half::f16> =
        Rng::new(7).vec(n, -0.5, 1.0).into_iter().map(|v| half::f16::from_f32(v.max(0.0))).collect();
    Buffer::from_f16(dev, &v).unwrap()
}

/// As [`check`] for mixed precision's results (f16, or f32 computed from
/// f16, as `read` says): the same bits fused and unfused, the CPU twin
/// within f16's rounding (its sums' order differs).
fn check_bits(test: &str, what: &str, want: u64, read: Read, f: impl Fn(&Device) -> Vec<Buffer>) {
    let Some([got, unfused, cpu]) = three_ways(test, what, want, read, f) else { return };
    let bits = |v: &[f32]| v.iter().map(|x| if x.is_nan() { u32::MAX } else { x.to_bits() }).collect::<Vec<_>>();
    for (k, v) in got.iter().enumerate() {
        assert_eq!(bits(v), bits(&unfused[k]), "{what}: output {k}: fused vs unfused bits");
        assert_close(&format!("{what}: output {k} vs the CPU twin"), v, &cpu[k], 4e-3, 4e-3);
    }
}

/// Whether `kernel` rounds an f16 product in its own store on the test's
/// GPU (the tiled kernel; the subgroup kernel of CPU adapters stores f32
/// sums and casts them).
fn stores_f16(test: &str, kernel: MatmulKernel) -> bool {
    fresh_gpu_or_skip(test).is_none_or(|d| kernel.rounds_f16_in_store(&d))
}

/// [`check_bits`] of f16 results.
fn check_f16(test: &str, what: &str, want: u64, f: impl Fn(&Device) -> Vec<Buffer>) {
    check_bits(test, what, want, Read::F16, f)
}

/// `x @ w` for seeded f16 `[M, K]` and `[K, N + 1]` operands within
/// `±scale`, stored as f16 through `cfg`.
fn product16(d: &Device, cfg: MatmulConfig, scale: f32) -> Buffer {
    let (x, w) = (halves(d, 1, M * K, scale), halves(d, 2, K * (N + 1), scale));
    let (lx, lw) = (Layout::contiguous(&[M, K]), Layout::contiguous(&[K, N + 1]));
    matmul_epilogue(cfg, &Epilogue::f16(), &x, &lx, &w, &lw).unwrap().0
}

/// Mixed precision's backward (autograd's f16 ops: widen the inputs, op in
/// f32, narrow the result): an f16 product's gradient, plus a shortcut's,
/// through a ReLU's gradient at its f16 output. An f16 store (the tiled
/// kernel's) takes the casts, the f16 residual and the mask, rounding where
/// the casts do; the subgroup kernel (CPU adapters) stores f32 sums and
/// casts them, and that cast merges into the chain after it as a rounding
/// (`fusion.rs`). Either way the unfused bits.
#[test]
fn an_f16_product_takes_a_residual_and_a_relu_gradient() {
    let test = "an_f16_product_takes_a_residual_and_a_relu_gradient";
    let n = M * (N + 1);
    let dense = Layout::contiguous(&[n]);
    let widen = |h: &Buffer| f16_to_f32(h, n).unwrap();
    let narrow = |v: &Buffer| f32_to_f16(v, n).unwrap();
    // The rule binds y for x too, each widened: both widens merge.
    let relu_grad16 =
        |y: &Buffer, g: &Buffer| narrow(&unary_grad(UnaryOp::Relu, &widen(y), &widen(y), &widen(g), n).unwrap());
    let add16 =
        |a: &Buffer, b: &Buffer| narrow(&binary(BinaryOp::Add, &widen(a), &dense, &widen(b), &dense).unwrap().0);
    for kernel in [MatmulKernel::Auto, MatmulKernel::Tiled] {
        // One launch where the kernel stores f16 itself; two where it
        // stores f32 sums and the cast runs with the chain after it.
        let launches = 2 - u64::from(stores_f16(test, kernel));
        // Large operands: some sums pass f16's range (inf, passed where the
        // mask is 1 and 0 where it is 0, as the unfused casts compute).
        for scale in [1.0, 60.0] {
            let at = format!("{kernel:?}, operands within ±{scale}");
            let cfg = MatmulConfig { kernel, ..MatmulConfig::f16() };
            let product16 = |d: &Device| product16(d, cfg, scale);
            check_f16(test, &format!("relu'(y) · (x @ w), {at}"), launches, |d| {
                let y = relu_output_f16(d, n);
                vec![relu_grad16(&y, &product16(d))]
            });
            check_f16(test, &format!("relu'(y) · ((x @ w) + r), {at}"), launches, |d| {
                let (y, r) = (relu_output_f16(d, n), halves(d, 3, n, 2.0));
                vec![relu_grad16(&y, &add16(&product16(d), &r))]
            });
            check_f16(test, &format!("(x @ w) + r, {at}"), launches, |d| {
                let r = halves(d, 3, n, 2.0);
                vec![add16(&r, &product16(d))]
            });
        }
        // What stays f32 (no narrow ends the tail) is not the store's to write.
        let cfg = MatmulConfig { kernel, ..MatmulConfig::f16() };
        check_bits(test, &format!("relu'(y) · (x @ w) in f32, {kernel:?}"), 2, Read::F32, |d| {
            let y = relu_output_f16(d, n);
            let g = product16(d, cfg, 1.0);
            vec![unary_grad(UnaryOp::Relu, &widen(&y), &widen(&y), &widen(&g), n).unwrap()]
        });
    }
    // f16 operands, f32 sums and an activation after them: the activation
    // merges into the store (on a GPU with matrix units, the cooperative
    // family's `_act` variant; no CPU adapter offers one).
    for kernel in [MatmulKernel::Tiled, MatmulKernel::Auto] {
        let cfg = MatmulConfig { kernel, ..MatmulConfig::f16() };
        for op in [UnaryOp::Relu, UnaryOp::Gelu] {
            check_bits(test, &format!("{op:?}(x @ w) in f32, {kernel:?}"), 1, Read::F32, |d| {
                let (x, w) = (halves(d, 1, M * K, 1.0), halves(d, 2, K * (N + 1), 1.0));
                let (lx, lw) = (Layout::contiguous(&[M, K]), Layout::contiguous(&[K, N + 1]));
                let y = matmul_epilogue(cfg, &Epilogue::default(), &x, &lx, &w, &lw).unwrap().0;
                vec![unary(op, &y, n).unwrap()]
            });
        }
    }
    // A ResNet block's: a convolution's f16 input gradient (after its
    // weight's transpose, one launch), plus the shortcut's, masked.
    let geo = same_padded_3x3();
    let (oc, elements) = (4, 2 * 3 * 6 * 5);
    let dense = Layout::contiguous(&[elements]);
    let widen = |h: &Buffer| f16_to_f32(h, elements).unwrap();
    let narrow = |v: &Buffer| f32_to_f16(v, elements).unwrap();
    let launches = 3 - u64::from(stores_f16(test, MatmulKernel::Auto));
    check_f16(test, "relu'(y) · (conv input gradient + r)", launches, |d| {
        let (gy, w) = (halves(d, 5, 2 * oc * 6 * 5, 1.0), halves(d, 6, oc * 3 * 9, 1.0));
        let (y, r) = (relu_output_f16(d, elements), halves(d, 8, elements, 1.0));
        let opts = ConvOptions { epilogue: Epilogue::f16(), ..ConvOptions::config(MatmulConfig::f16()) };
        let dx = conv2d_input_grad(&gy, &w, oc, &geo, &opts).unwrap();
        let s = narrow(&binary(BinaryOp::Add, &widen(&dx), &dense, &widen(&r), &dense).unwrap().0);
        let masked = unary_grad(UnaryOp::Relu, &widen(&y), &widen(&y), &widen(&s), elements).unwrap();
        vec![narrow(&masked)]
    });
}

#[test]
fn a_pooling_backward_takes_a_relu_gradient() {
    let test = "a_pooling_backward_takes_a_relu_gradient";
    // [2, 3, 7, 5] pooled 2x2 (odd sizes: border pixels in no window).
    let (shape, n) = ([2, 3, 7, 5], 2 * 3 * 7 * 5);
    let upload = |d: &Device, seed: u64, len: usize| Buffer::from_f32(d, &Rng::new(seed).vec(len, -1.0, 1.0)).unwrap();
    // `max_pool(relu(x))`'s backward: the pooling's forward (its argmax),
    // then its backward with the ReLU's gradient in its store.
    check(test, "relu'(y) · max_pool_backward(g)", 2, |d| {
        let (y, g) = (relu_output(d, n), upload(d, 14, 2 * 3 * 3 * 2));
        let (_, arg, _) = max_pool2d(&y, &shape, window((2, 2), (2, 2), (0, 0), (1, 1))).unwrap();
        let dx = max_pool2d_backward(&g, &arg, &shape, window((2, 2), (2, 2), (0, 0), (1, 1))).unwrap();
        vec![relu_grad(&y, &dx, n)]
    });
    // A global average pool after a ReLU (a ResNet's head).
    check(test, "relu'(y) · adaptive_avg_pool_backward(g)", 1, |d| {
        let (y, g) = (relu_output(d, n), upload(d, 15, 2 * 3));
        vec![relu_grad(&y, &adaptive_avg_pool2d_backward(&g, &shape, (1, 1)).unwrap(), n)]
    });
    // Any other reader of the gradient: stored, then read.
    check(test, "exp(adaptive_avg_pool_backward(g))", 2, |d| {
        let g = upload(d, 15, 2 * 3);
        vec![unary(UnaryOp::Exp, &adaptive_avg_pool2d_backward(&g, &shape, (1, 1)).unwrap(), n).unwrap()]
    });
    // Mixed precision: f16 gradients through the ReLU's gradient with its
    // casts (the store rounds first). Padded overlapping 3x3 windows: where
    // y is all 0, each window sends its gradient to its first pixel, so a
    // corner sums four; 30000 each is past f16's range there, and the
    // gated ReLU gives 0 for it (not inf · 0 = NaN), as unfused.
    let widen = |h: &Buffer| f16_to_f32(h, n).unwrap();
    let relu_grad16 = |y: &Buffer, g: &Buffer| {
        let masked = unary_grad(UnaryOp::Relu, &widen(y), &widen(y), &widen(g), n).unwrap();
        f32_to_f16(&masked, n).unwrap()
    };
    let (k, s, p, dl) = ((3, 3), (1, 1), (1, 1), (1, 1));
    let large = |d: &Device| Buffer::from_f16(d, &vec![half::f16::from_f32(30000.0); n]).unwrap();
    for (what, zeros) in [("random y", false), ("y all 0, sums past f16's range", true)] {
        check_f16(test, &format!("f16 relu'(y) · max_pool_backward(g), {what}"), 2, |d| {
            let y = if zeros { Buffer::from_f16(d, &vec![half::f16::ZERO; n]).unwrap() } else { relu_output_f16(d, n) };
            let g = if zeros { large(d) } else { halves(d, 16, n, 2.0) };
            let (_, arg, _) = max_pool2d_io(&y, &shape, window(k, s, p, dl), Operands::F16).unwrap();
            let dx = max_pool2d_backward_io(&g, &arg, &shape, window(k, s, p, dl), Operands::F16).unwrap();
            vec![relu_grad16(&y, &dx)]
        });
    }
    check_f16(test, "f16 relu'(y) · adaptive_avg_pool_backward(g)", 1, |d| {
        let (y, g) = (relu_output_f16(d, n), halves(d, 17, 2 * 3, 2.0));
        vec![relu_grad16(&y, &adaptive_avg_pool2d_backward_io(&g, &shape, (1, 1), Operands::F16).unwrap())]
    });
}

#[test]
fn a_replayed_step_merges_as_its_recording_did() {
    let Some(dev) = fresh_gpu_or_skip("a_replayed_step_merges_as_its_recording_did") else { return };
    dev.set_replay(true).unwrap();
    // `gelu(x @ w)`, the product's sums held or not: the replay key holds
    // whether a tensor holds a value, so each form replays its own plan.
    let step = |hold: bool| {
        let before = dev.stats().launches_replayed;
        let (values, launches) = recorded(&dev, |d| {
            let y = product(d);
            let z = unary(UnaryOp::Gelu, &y, M * N).unwrap();
            if hold {
                vec![z, y]
            } else {
                vec![z]
            }
        });
        (values, launches, dev.stats().launches_replayed - before)
    };
    let (first, launches, _) = step(false);
    assert_eq!(launches, 1);
    let (again, _, replayed) = step(false);
    assert_eq!(again, first, "replayed: the same bits");
    assert!(replayed >= 1, "the second step replays the first's plan");
    let (held, launches, _) = step(true);
    assert_eq!(launches, 1, "the sums stored by the same launch");
    assert_eq!(held[0], first[0]);
    let (cpu, _) = recorded(&Device::cpu(), |d| vec![product(d)]);
    assert_close("the held sums", &held[1], &cpu[0], 1e-5, 1e-5);
    let (held_again, _, replayed) = step(true);
    assert_eq!(held_again, held);
    assert!(replayed >= 1);
    assert_eq!(step(false).0, first, "and back");
}
