//! Work too large for one storage binding: with the device's binding limit
//! lowered to a few KiB (`Device::set_max_binding_bytes`, as
//! `WGRAD_MAX_BINDING_BYTES` does at startup), matmul splits into launches
//! that each bind at most the limit (boxes of batch entries, ranges of
//! rows, split-K) and equals the CPU twin and the unsplit GPU product on
//! awkward shapes: partial chunks, broadcast batches, transposed operands,
//! f16 operands, the epilogue's bias and f16 store, both kernel families,
//! and ranges of columns for rows too wide to bind. Sums, optimizer updates
//! convolutions and poolings run on chunks of images (or planes); fills, aranges and random numbers split too (elementwise ops and copies:
//! `split_elementwise.rs`; row kernels: `split_rows.rs`);
//! ops that cannot split return `LimitExceeded` naming themselves.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::conv::{conv2d, conv2d_input_grad, conv2d_weight_grad, ConvGeometry, ConvOptions};
use wgrad_gpu_core::ops::fill::{arange, fill};
use wgrad_gpu_core::ops::matmul::{matmul_epilogue, BiasAxis, Epilogue, MatmulConfig, MatmulKernel, Operands};
use wgrad_gpu_core::ops::optim::{update, Rule};
use wgrad_gpu_core::ops::pool::{
    adaptive_avg_pool2d_io, avg_pool2d_backward_io, avg_pool2d_io, max_pool2d_backward_io, max_pool2d_io,
};
use wgrad_gpu_core::ops::random::{dropout_mask, normal, uniform};
use wgrad_gpu_core::ops::reduce::{reduce, ReduceOp};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip, gpu_or_skip};
use wgrad_gpu_core::{Buffer, Device, Error, Layout};

/// The lowered binding limit: every case below binds more in one launch.
const LIMIT: u64 = 2048;

/// One product: A and B as views of their stored data, an epilogue.
#[derive(Clone, Debug)]
struct Case {
    what: &'static str,
    /// A's storage size, its view.
    a: (usize, Layout),
    b: (usize, Layout),
    /// Bias axis (its length follows), output storage.
    bias: Option<BiasAxis>,
    output: Operands,
}

fn view(shape: &[usize], strides: &[usize]) -> Layout {
    Layout { shape: shape.into(), strides: strides.into(), offset: 0 }
}

fn dense(shape: &[usize]) -> (usize, Layout) {
    (shape.iter().product(), Layout::contiguous(shape))
}

/// The cases: each binds more than [`LIMIT`] somewhere.
fn cases() -> Vec<Case> {
    let plain = |what, a, b| Case { what, a, b, bias: None, output: Operands::F32 };
    let mut v = vec![
        // Output 3080 B: boxes of 3 entries, the second partial, at an unaligned byte.
        plain("batch boxes", dense(&[5, 7, 13]), dense(&[13, 22])),
        // Each entry's output 6000 B: ranges of 17 rows, the last partial.
        plain("row ranges", dense(&[2, 50, 9]), dense(&[9, 30])),
        // [3, 1] x [4] batch dims broadcast to [3, 4].
        plain("broadcast batch", dense(&[3, 1, 17, 8]), dense(&[4, 8, 18])),
        // A stored [K, M] and B stored [N, K], both read transposed: A's
        // rows span all of it, so K is split.
        plain("transposed operands", (30 * 40, view(&[40, 30], &[1, 40])), (26 * 30, view(&[30, 26], &[1, 30]))),
        // A row of 4000 B: split-K, partials summed.
        plain("split-K", dense(&[3, 1000]), dense(&[1000, 4])),
        // Output rows of 2400 B: ranges of columns, copied row by row.
        plain("column ranges", dense(&[3, 5]), dense(&[5, 600])),
    ];
    for (base, bias, output) in [
        (1, Some(BiasAxis::Columns), Operands::F16),
        (1, Some(BiasAxis::Rows), Operands::F32),
        (1, Some(BiasAxis::Rows), Operands::F16),
        (0, Some(BiasAxis::Columns), Operands::F32),
        (4, Some(BiasAxis::Columns), Operands::F16),
        (3, Some(BiasAxis::Rows), Operands::F16),
        (5, Some(BiasAxis::Columns), Operands::F16),
    ] {
        v.push(Case { what: "epilogue", bias, output, ..v[base].clone() });
    }
    v
}

/// Runs `case` with `cfg` on `dev`; returns the result as f32 and the
/// launches it took.
fn run(dev: &Device, cfg: MatmulConfig, case: &Case, seed: u64) -> (Vec<f32>, u64) {
    let mut r = rng(seed);
    let (a_data, b_data) = (r.vec(case.a.0, -1.0, 1.0), r.vec(case.b.0, -1.0, 1.0));
    let (la, lb) = (&case.a.1, &case.b.1);
    let (m, n) = (la.shape[la.rank() - 2], lb.shape[lb.rank() - 1]);
    let bias_len = match case.bias {
        Some(BiasAxis::Rows) => m,
        _ => n,
    };
    let bias_data = r.vec(bias_len, -1.0, 1.0);
    let (a, b) = (upload_as(dev, &a_data, cfg.operands), upload_as(dev, &b_data, cfg.operands));
    let bias = Buffer::from_f32(dev, &bias_data).unwrap();
    let mut epi = Epilogue { output: case.output, ..Epilogue::default() };
    if let Some(axis) = case.bias {
        epi = epi.with_bias(&bias, axis, 1);
    }
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let (z, shape) = matmul_epilogue(cfg, &epi, &a, la, &b, lb).unwrap();
    // Flushed: the fuser counts a product it defers when it encodes it.
    dev.flush().unwrap();
    let launches = dev.stats().dispatches - before;
    let total: usize = shape.iter().product();
    let out = match case.output {
        Operands::F32 => z.to_f32().unwrap()[..total].to_vec(),
        Operands::F16 => widen(&z.to_f16().unwrap()[..total]),
    };
    (out, launches)
}

/// The configurations a GPU runs: both kernel families, f32 and f16 operands.
fn configs(dev: &Device) -> Vec<MatmulConfig> {
    let mut v = Vec::new();
    for kernel in [MatmulKernel::Tiled, MatmulKernel::Subgroup].into_iter().filter(|k| k.runs_on(dev)) {
        v.push(MatmulConfig { kernel, ..MatmulConfig::default() });
    }
    // f16 operands on the default kernel (their windows start at other elements).
    v.push(MatmulConfig::f16());
    v
}

#[test]
fn split_matmul_equals_the_cpu_twin_and_the_unsplit_product() {
    let Some(small) = limited_gpu("split_matmul_equals_the_cpu_twin_and_the_unsplit_product", LIMIT) else { return };
    let whole = gpu_or_skip("split_matmul").unwrap();
    let cpu = Device::cpu_reference();
    for cfg in configs(&small) {
        for (i, case) in cases().iter().enumerate() {
            let what =
                format!("{} {:?} {:?} bias {:?} out {:?}", case.what, cfg.kernel, cfg.operands, case.bias, case.output);
            let seed = 100 + i as u64;
            let (got, launches) = run(&small, cfg, case, seed);
            let (unsplit, one) = run(&whole, cfg, case, seed);
            let (want, _) = run(&cpu, MatmulConfig { operands: cfg.operands, ..MatmulConfig::default() }, case, seed);
            assert!(launches > 1, "{what}: {launches} launches, expected a split");
            // The shared device counts other tests' launches too; at least one is ours.
            assert!(one >= 1, "{what}");
            let tol = if case.output == Operands::F16 { 2e-3 } else { 1e-5 };
            assert_close(&format!("{what}: vs the CPU twin"), &got, &want, tol, 1e-4);
            assert_close(&format!("{what}: vs unsplit"), &got, &unsplit, tol, 1e-4);
        }
    }
}

#[test]
fn products_that_fit_keep_one_launch() {
    let Some(small) = limited_gpu("products_that_fit_keep_one_launch", LIMIT) else { return };
    let case = Case {
        what: "fits",
        a: dense(&[2, 5, 7]),
        b: dense(&[7, 6]),
        bias: Some(BiasAxis::Columns),
        output: Operands::F16,
    };
    let unlimited = gpu_or_skip("products_that_fit_keep_one_launch").unwrap();
    for cfg in configs(&small) {
        let (got, launches) = run(&small, cfg, &case, 7);
        // As many as on a device without the small limit (the product, and
        // an f16 result's cast where the family stores f32 first).
        let (_, want_launches) = run(&unlimited, cfg, &case, 7);
        assert!((1..=2).contains(&launches), "{cfg:?}: {launches} launches");
        assert!(launches <= want_launches, "{cfg:?}: {launches} launches, {want_launches} unlimited");
        let (want, _) =
            run(&Device::cpu_reference(), MatmulConfig { operands: cfg.operands, ..MatmulConfig::default() }, &case, 7);
        assert_close("fits", &got, &want, 2e-3, 1e-4);
    }
}

#[test]
fn ops_that_cannot_split_return_limit_exceeded_naming_the_op() {
    let Some(small) = limited_gpu("ops_that_cannot_split_return_limit_exceeded_naming_the_op", LIMIT) else { return };
    let limit_error = |e: Error, op: &str| {
        let msg = e.to_string();
        assert!(matches!(e, Error::LimitExceeded { .. }), "{msg}");
        assert!(msg.contains(op) && msg.contains("max_storage_buffer_binding_size"), "{msg}");
    };
    // A buffer past the binding limit (below max_buffer_size) is allowed,
    // written and read whole.
    let data: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    let big = Buffer::from_f32(&small, &data).unwrap();
    assert_eq!(big.to_f32().unwrap(), data);
    // (Elementwise ops run in ranges: tests/main/split_elementwise.rs; softmax
    // and cross-entropy in ranges of rows: tests/main/split_rows.rs.)
    // Convolutions are not split.
    let geo = ConvGeometry::new(2, 4, (16, 16), (3, 3));
    let x = Buffer::from_f32(&small, &rng(3).vec(2 * 4 * 16 * 16, -1.0, 1.0)).unwrap();
    let w = Buffer::from_f32(&small, &rng(4).vec(4 * 4 * 9, -1.0, 1.0)).unwrap();
    limit_error(conv2d(&x, &w, 4, &geo, &ConvOptions::default()).unwrap_err(), "conv2d");
    // A grouped bias (a grouped convolution's) is not split either.
    let a = Buffer::from_f32(&small, &[1.0; 6]).unwrap();
    let bias = Buffer::from_f32(&small, &[0.0; 2000]).unwrap();
    let epi = Epilogue::default().with_bias(&bias, BiasAxis::Columns, 2);
    let e = matmul_epilogue(
        MatmulConfig::default(),
        &epi,
        &a,
        &Layout::contiguous(&[2, 1, 1]),
        &big,
        &Layout::contiguous(&[1, 1000]),
    );
    limit_error(e.unwrap_err(), "matmul");
    // The device keeps working.
    let (z, _) =
        wgrad_gpu_core::ops::matmul::matmul(&a, &Layout::contiguous(&[2, 3]), &a, &Layout::contiguous(&[3, 2]))
            .unwrap();
    assert_eq!(z.to_f32().unwrap(), vec![3.0; 4]);
}

#[test]
fn sums_over_views_past_the_limit_split_along_a_reduced_axis() {
    let Some(small) = limited_gpu("sums_over_views_past_the_limit_split_along_a_reduced_axis", LIMIT) else { return };
    let cpu = Device::cpu_reference();
    let data = rng(9).vec(300 * 7, -1.0, 1.0);
    let sum = |dev: &Device, layout: &Layout, axes: &[usize], op: ReduceOp| {
        let x = Buffer::from_f32(dev, &data).unwrap();
        dev.flush().unwrap();
        let before = dev.stats().dispatches;
        let (y, shape) = reduce(op, &x, layout, axes, false)?;
        let n: usize = shape.iter().product();
        let launches = dev.stats().dispatches - before;
        Ok::<_, Error>((y.to_f32().unwrap()[..n].to_vec(), launches))
    };
    let rows = Layout::contiguous(&[300, 7]);
    // A bias gradient (rows summed), a strided view (every other row of a
    // transposed [7, 150]), and the sum of everything.
    let strided = Layout { shape: [7, 150].into(), strides: [1, 14].into(), offset: 0 };
    for (what, layout, axes) in
        [("rows", &rows, &[0][..]), ("transposed, every other row", &strided, &[1][..]), ("all", &rows, &[][..])]
    {
        let (got, launches) = sum(&small, layout, axes, ReduceOp::Sum).unwrap();
        let (want, _) = sum(&cpu, layout, axes, ReduceOp::Sum).unwrap();
        assert!(launches > 1, "{what}: {launches} launches");
        assert_close(what, &got, &want, 1e-5, 1e-5);
    }
    // Sums of short rows: cut along the kept axis, results copied into place.
    let (got, launches) = sum(&small, &rows, &[1], ReduceOp::Sum).unwrap();
    let (want, _) = sum(&cpu, &rows, &[1], ReduceOp::Sum).unwrap();
    assert!(launches > 1, "row sums: {launches} launches");
    assert_close("row sums", &got, &want, 1e-5, 1e-5);
    // Other reductions do not split.
    for (op, name) in [(ReduceOp::Max, "max"), (ReduceOp::Mean, "mean")] {
        let e = sum(&small, &rows, &[0], op).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::LimitExceeded { .. }) && msg.contains(name), "{msg}");
    }
}

#[test]
fn optimizer_updates_past_the_limit_run_in_ranges() {
    let Some(small) = limited_gpu("optimizer_updates_past_the_limit_run_in_ranges", LIMIT) else { return };
    // 1001 elements (4004 bytes): at least two ranges, the last not a whole vec4.
    let n = 1001;
    let rule = Rule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, amsgrad: true, decoupled: true };
    let step = |dev: &Device| {
        let mut r = rng(11);
        let (w, g) = (r.vec(n, -1.0, 1.0), r.vec(n, -1.0, 1.0));
        let param = Buffer::from_f32(dev, &w).unwrap();
        let grad = Buffer::from_f32(dev, &g).unwrap();
        let state: Vec<Buffer> = (0..3).map(|_| Buffer::from_f32(dev, &vec![0.0; n]).unwrap()).collect();
        let refs: Vec<&Buffer> = state.iter().collect();
        dev.flush().unwrap();
        let before = dev.stats().dispatches;
        for t in 1..=3 {
            update(&rule, 1e-2, 0.1, t, &param, &grad, &refs, n).unwrap();
        }
        let launches = dev.stats().dispatches - before;
        let mut out = param.to_f32().unwrap()[..n].to_vec();
        for s in &state {
            out.extend_from_slice(&s.to_f32().unwrap()[..n]);
        }
        (out, launches)
    };
    let (got, launches) = step(&small);
    let (want, _) = step(&Device::cpu_reference());
    assert!(launches >= 6 && launches % 3 == 0, "{launches} launches: at least two ranges a step");
    assert_close("Adam past the binding limit", &got, &want, 1e-5, 1e-6);
}

#[test]
fn fills_aranges_and_random_numbers_past_the_limit_run_in_ranges() {
    let Some(small) = limited_gpu("fills_aranges_and_random_numbers_past_the_limit_run_in_ranges", LIMIT) else {
        return;
    };
    let cpu = Device::cpu_reference();
    // 1001 elements (4004 bytes): at least two ranges, the last not a whole Philox block.
    let n = 1001;
    let make = |dev: &Device| {
        let mut out = Vec::new();
        out.extend(fill(dev, n, 0.25).unwrap().to_f32().unwrap()[..n].to_vec());
        out.extend(arange(dev, n, -3.0, 0.37).unwrap().to_f32().unwrap()[..n].to_vec());
        out.extend(uniform(dev, n, 7, 5, -1.0, 2.0).unwrap().to_f32().unwrap()[..n].to_vec());
        out.extend(normal(dev, n, 7, 1 << 33, 0.5, 2.0).unwrap().to_f32().unwrap()[..n].to_vec());
        out.extend(dropout_mask(dev, n, 0.3, 9, 11).unwrap().to_f32().unwrap()[..n].to_vec());
        out
    };
    small.flush().unwrap();
    let before = small.stats().dispatches;
    let got = make(&small);
    assert!(small.stats().dispatches - before >= 10, "five fills of 4004 bytes split");
    let want = make(&cpu);
    // Same counters, same formulas: the same numbers within rounding. WGSL
    // lets a driver fuse `a + b * x` into one rounding (NVIDIA's does: an
    // H200 gave arange's element 7 one bit off the twin's), so arange,
    // uniform and normal agree to rounding; fill and the mask are exact.
    assert_close("fills past the binding limit", &got, &want, 1e-5, 1e-6);
    for (name, part) in [("fill", 0), ("dropout mask", 4)] {
        let r = part * n..(part + 1) * n;
        let first = got[r.clone()].iter().zip(&want[r]).position(|(a, b)| a.to_bits() != b.to_bits());
        assert!(
            first.is_none(),
            "{name} is exact: element {first:?} is {} here, {} on the CPU reference",
            first.map_or(0.0, |i| got[part * n + i]),
            first.map_or(0.0, |i| want[part * n + i])
        );
    }
}

/// Forward (with a bias), input gradient and weight gradient of a 3x3 conv,
/// stride 2 (so the input gradient gathers a strided dY), on 12 images.
fn convolution(dev: &Device) -> (Vec<f32>, u64) {
    let mut geo = ConvGeometry::new(12, 3, (9, 8), (3, 3));
    (geo.pad_top, geo.pad_left, geo.pad_bottom, geo.pad_right) = (1, 1, 1, 1);
    geo.stride_h = 2;
    let (oc, l) = (4, geo.out_h() * geo.out_w());
    let mut r = rng(12);
    let up = |v: Vec<f32>| Buffer::from_f32(dev, &v).unwrap();
    let (x, w, bias) = (up(r.vec(12 * 3 * 72, -1.0, 1.0)), up(r.vec(oc * 27, -1.0, 1.0)), up(r.vec(oc, -1.0, 1.0)));
    let gy = up(r.vec(12 * oc * l, -1.0, 1.0));
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let epi = Epilogue::default().with_bias(&bias, BiasAxis::Rows, 1);
    let y = conv2d(&x, &w, oc, &geo, &ConvOptions::with_epilogue(MatmulConfig::default(), &epi)).unwrap();
    let dx = conv2d_input_grad(&gy, &w, oc, &geo, &ConvOptions::default()).unwrap();
    let dw = conv2d_weight_grad(&gy, &x, oc, &geo, &ConvOptions::default()).unwrap();
    let mut out = y.to_f32().unwrap()[..12 * oc * l].to_vec();
    out.extend(&dx.to_f32().unwrap()[..12 * 3 * 72]);
    out.extend(&dw.to_f32().unwrap()[..oc * 27]);
    (out, dev.stats().dispatches - before)
}

#[test]
fn convolutions_past_the_limit_run_on_chunks_of_images() {
    let Some(small) = limited_gpu("convolutions_past_the_limit_run_on_chunks_of_images", LIMIT) else { return };
    // A device of its own: the unsplit launches are counted exactly (the
    // shared one counts other tests' launches too).
    let whole = fresh_gpu_or_skip("conv split").unwrap();
    let (got, launches) = convolution(&small);
    let (unsplit, one) = convolution(&whole);
    let (want, _) = convolution(&Device::cpu_reference());
    assert_close("conv vs the CPU twin", &got, &want, 1e-5, 1e-5);
    assert_close("conv vs unsplit", &got, &unsplit, 1e-5, 1e-5);
    assert!(launches > one, "{launches} launches, {one} unsplit");
}

/// Max pooling (values, argmax, input gradient), average pooling with
/// padding (forward, backward) and adaptive average pooling of [8, 3, 9, 7]
/// stored as `io` (63-value planes: f16 chunks start on even planes).
fn pooling(dev: &Device, io: Operands) -> (Vec<f32>, u64) {
    let shape = [8, 3, 9, 7];
    let n = 8 * 3 * 63;
    let mut r = rng(13);
    let x = upload_as(dev, &r.vec(n, -1.0, 1.0), io);
    let back = |b: &Buffer, n: usize| values_as(b, n, io);
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let (y, arg, out_shape) = max_pool2d_io(&x, &shape, window((3, 2), (2, 2), (1, 1), (1, 1)), io).unwrap();
    let m: usize = out_shape.iter().product();
    let gy = upload_as(dev, &r.vec(m, -1.0, 1.0), io);
    let dx = max_pool2d_backward_io(&gy, &arg, &shape, window((3, 2), (2, 2), (1, 1), (1, 1)), io).unwrap();
    let (a, a_shape) = avg_pool2d_io(&x, &shape, window((3, 3), (2, 2), (1, 1), (1, 1)), false, io).unwrap();
    let am: usize = a_shape.iter().product();
    let ga = upload_as(dev, &r.vec(am, -1.0, 1.0), io);
    let da = avg_pool2d_backward_io(&ga, &shape, window((3, 3), (2, 2), (1, 1), (1, 1)), false, io).unwrap();
    let (ad, _) = adaptive_avg_pool2d_io(&x, &shape, (2, 3), io).unwrap();
    let mut out = back(&y, m);
    out.extend(arg.to_u32().unwrap()[..m].iter().map(|&i| i as f32));
    out.extend(back(&dx, n));
    out.extend(back(&a, am));
    out.extend(back(&da, n));
    out.extend(back(&ad, 8 * 3 * 6));
    (out, dev.stats().dispatches - before)
}

#[test]
fn poolings_past_the_limit_run_on_chunks_of_planes() {
    let Some(small) = limited_gpu("poolings_past_the_limit_run_on_chunks_of_planes", LIMIT) else { return };
    for io in [Operands::F32, Operands::F16] {
        let (got, launches) = pooling(&small, io);
        let (want, _) = pooling(&Device::cpu_reference(), io);
        let tol = if io == Operands::F16 { 1e-3 } else { 1e-6 };
        assert_close(&format!("pooling, {io:?}"), &got, &want, tol, tol);
        assert!(launches > 5, "{io:?}: {launches} launches for five poolings: nothing split");
    }
}

#[test]
fn an_odd_width_f16_product_past_the_limit_splits_its_sums_and_its_cast() {
    let Some(small) = limited_gpu("an_odd_width_f16_product_past_the_limit_splits_its_sums_and_its_cast", LIMIT) else {
        return;
    };
    // [3, 50] @ [50, 401]: 1,203 results, odd rows, stored as f16 through an
    // f32 sum (4,812 bytes) and a cast (2,406 bytes), both past the limit.
    let case = Case { what: "odd f16", a: dense(&[3, 50]), b: dense(&[50, 401]), bias: None, output: Operands::F16 };
    let (got, launches) = run(&small, MatmulConfig::default(), &case, 21);
    let (want, _) = run(&Device::cpu_reference(), MatmulConfig::default(), &case, 21);
    assert!(launches > 2, "{launches} launches");
    assert_close("odd-width f16 product", &got, &want, 2e-3, 1e-4);
}
