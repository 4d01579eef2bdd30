//! The subgroup matmul reading its f32 operands through textures
//! (`gpu/texture_operands.rs`, on by default on CPU adapters) gives the same
//! bits as reading them from storage buffers, on awkward shapes: a single
//! element, operands spanning several texture rows with a partial last one,
//! transposed and broadcast operands, offsets into the buffers, bound windows
//! of a split product, rows in the middle of long buffers (only the elements
//! a product reads are copied), the epilogue, and the three gathered forms of a
//! strided convolution. The launches do run the texture kernel (profiled
//! family `matmul_subgroup_tex`), and turning the path off runs the buffer
//! kernel. The batch-norm kernels reading x, dy, the ReLU output and the
//! residual through textures (`batch_norm_tex`) give their buffer kernels'
//! bits the same way, for the vec4 and the scalar entries, and so do the
//! row and reduction kernels reading `x` (and the row backward passes `dy`
//! and `y`) through a texture (`softmax_tex`, `norm_tex`, `reduce_tex`), the
//! unfused elementwise kernels (`unary_tex`, `unary_grad_tex`, `binary_tex`
//! with broadcasting), pooling (`pool_tex`, the argmax as u32 bits) and
//! copies (`copy_tex`, any 32-bit or f16 bit patterns).

use crate::common;
use common::*;
use wgrad_gpu_core::ops::batch_norm::{
    batch_norm_backward, batch_norm_forward, batch_norm_grad_sums, batch_norm_stats, Centre, ChannelDims, Running,
};
use wgrad_gpu_core::ops::conv::{conv2d, conv2d_input_grad, conv2d_weight_grad, ConvGeometry, ConvOptions};
use wgrad_gpu_core::ops::matmul::{matmul_epilogue, BiasAxis, Epilogue, MatmulConfig, MatmulKernel};
use wgrad_gpu_core::testing::fresh_gpu_or_skip;
use wgrad_gpu_core::{Buffer, Device, Layout};

fn subgroup() -> MatmulConfig {
    MatmulConfig { kernel: MatmulKernel::Subgroup, ..MatmulConfig::default() }
}

/// A product's operands: storage sizes and the views read.
struct Case {
    what: &'static str,
    a: (usize, Layout),
    b: (usize, Layout),
    bias: bool,
}

fn view(shape: &[usize], strides: &[usize], offset: usize) -> Layout {
    Layout { shape: shape.into(), strides: strides.into(), offset }
}

fn dense(shape: &[usize]) -> (usize, Layout) {
    (shape.iter().product(), Layout::contiguous(shape))
}

fn cases() -> Vec<Case> {
    vec![
        Case { what: "one element", a: dense(&[1, 1]), b: dense(&[1, 1]), bias: false },
        // B is 9,100 values: three texture rows of 4,096, the last partial.
        Case { what: "several texture rows", a: dense(&[67, 130]), b: dense(&[130, 70]), bias: true },
        Case {
            what: "transposed, offset",
            a: (3 + 40 * 30, view(&[30, 40], &[1, 30], 3)),
            b: (5 + 26 * 40, view(&[40, 26], &[1, 40], 5)),
            bias: false,
        },
        Case { what: "broadcast batch", a: dense(&[3, 1, 17, 9]), b: dense(&[4, 9, 18]), bias: true },
        long_buffers(),
    ]
}

/// A recurrent step's product: 5 rows in the middle of a 200-row buffer
/// (at an unaligned element offset) times a transposed block deep inside
/// another; the launch copies only the windows around them into textures.
fn long_buffers() -> Case {
    Case {
        what: "rows of long buffers",
        a: (200 * 24 + 7, view(&[5, 24], &[24, 1], 117 * 24 + 7)),
        b: (3 + 24 * 31 * 10, view(&[24, 31], &[1, 24], 3 + 24 * 31 * 6)),
        bias: true,
    }
}

/// `case` on `dev` with texture operands `on` or off: the result's bits and
/// the profiled kernel families.
fn product(dev: &Device, case: &Case, on: bool) -> (Vec<u32>, Vec<String>) {
    dev.set_texture_operands(on);
    let mut r = rng(7);
    let (a, b) = (r.vec(case.a.0, -1.0, 1.0), r.vec(case.b.0, -1.0, 1.0));
    let n = case.b.1.shape[case.b.1.rank() - 1];
    let (a, b, bias) = (
        Buffer::from_f32(dev, &a).unwrap(),
        Buffer::from_f32(dev, &b).unwrap(),
        Buffer::from_f32(dev, &r.vec(n, -1.0, 1.0)).unwrap(),
    );
    let epi = if case.bias { Epilogue::default().with_bias(&bias, BiasAxis::Columns, 1) } else { Epilogue::default() };
    let ((c, shape), p) =
        dev.profile(|| matmul_epilogue(subgroup(), &epi, &a, &case.a.1, &b, &case.b.1).unwrap()).unwrap();
    let total: usize = shape.iter().product();
    let bits = c.to_f32().unwrap()[..total].iter().map(|v| v.to_bits()).collect();
    (bits, p.launches.iter().map(|l| l.family.clone()).collect())
}

/// Forward, input gradient and weight gradient of a 3x3 stride-2 padded
/// convolution with texture operands `on` or off: the results' bits and the
/// profiled kernel families.
fn convolution(dev: &Device, on: bool) -> (Vec<u32>, Vec<String>) {
    dev.set_texture_operands(on);
    let mut geo = ConvGeometry::new(3, 5, (11, 9), (3, 3));
    (geo.pad_top, geo.pad_left, geo.pad_bottom, geo.pad_right) = (1, 1, 1, 1);
    (geo.stride_h, geo.stride_w) = (2, 2);
    let (oc, l) = (6, geo.out_h() * geo.out_w());
    let mut r = rng(11);
    let up = |v: Vec<f32>| Buffer::from_f32(dev, &v).unwrap();
    let (x, w, gy) =
        (up(r.vec(3 * 5 * 99, -1.0, 1.0)), up(r.vec(oc * 45, -1.0, 1.0)), up(r.vec(3 * oc * l, -1.0, 1.0)));
    let (outs, p) = dev
        .profile(|| {
            [
                (conv2d(&x, &w, oc, &geo, &ConvOptions::config(subgroup())).unwrap(), 3 * oc * l),
                (conv2d_input_grad(&gy, &w, oc, &geo, &ConvOptions::config(subgroup())).unwrap(), 3 * 5 * 99),
                (conv2d_weight_grad(&gy, &x, oc, &geo, &ConvOptions::config(subgroup())).unwrap(), oc * 45),
            ]
        })
        .unwrap();
    let bits = outs.iter().flat_map(|(b, n)| b.to_f32().unwrap()[..*n].iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    (bits.collect(), p.launches.iter().map(|l| l.family.clone()).collect())
}

/// The device, when it runs the subgroup kernel (the only one with texture
/// operands); a loud skip otherwise.
fn subgroup_gpu(test: &str) -> Option<Device> {
    let dev = fresh_gpu_or_skip(test)?;
    if !MatmulKernel::Subgroup.runs_on(&dev) {
        eprintln!("SKIPPED {test}: this adapter does not run the subgroup matmul (no 8-lane subgroups)");
        return None;
    }
    Some(dev)
}

fn assert_families(what: &str, families: &[String], on: bool) {
    let matmuls: Vec<&String> = families.iter().filter(|f| f.starts_with("matmul")).collect();
    assert!(!matmuls.is_empty(), "{what}: no matmul launch in {families:?}");
    for f in matmuls {
        assert_eq!(f.starts_with("matmul_subgroup_tex"), on, "{what} with texture operands {on}: {f}");
    }
}

#[test]
fn texture_operands_give_the_buffer_kernels_bits() {
    let Some(dev) = subgroup_gpu("texture_operands_give_the_buffer_kernels_bits") else { return };
    for case in cases() {
        let (tex, tex_families) = product(&dev, &case, true);
        let (buf, buf_families) = product(&dev, &case, false);
        assert_families(case.what, &tex_families, true);
        assert_families(case.what, &buf_families, false);
        assert!(tex == buf, "{}: texture and buffer operands differ", case.what);
    }
    let (tex, tex_families) = convolution(&dev, true);
    let (buf, buf_families) = convolution(&dev, false);
    assert_families("convolution", &tex_families, true);
    assert_families("convolution", &buf_families, false);
    assert!(tex == buf, "convolution: texture and buffer operands differ");
}

/// A linear layer's forward (`x @ Wᵀ`), input gradient (`dy @ W`) and
/// weight gradient (`dyᵀ @ x`), plus a product with both operands
/// transposed and one with row strides that are not multiples of 4: with
/// texture operands every layout is read the same way (mode 3 in
/// matmul_subgroup.wgsl), so same-shaped products of any layout share one
/// pipeline (one LLVM JIT on llvmpipe, 1-2 s on a cold first step), and
/// each still gives the buffer kernel's bits.
#[test]
fn texture_products_share_one_pipeline_whatever_their_layouts() {
    let Some(dev) = subgroup_gpu("texture_products_share_one_pipeline_whatever_their_layouts") else { return };
    // Multiples of 4, so the buffer kernel would pick vec4 modes 1 and 2
    // for the dense and transposed layouts and mode 0 for the odd strides.
    let (m, k, n) = (20, 36, 44);
    let layouts = [
        ("row-major", dense(&[m, k]), dense(&[k, n])),
        ("B transposed (x @ Wᵀ)", dense(&[m, k]), (n * k, view(&[k, n], &[1, k], 0))),
        ("A transposed (dyᵀ @ x)", (k * m, view(&[m, k], &[1, m], 0)), dense(&[k, n])),
        ("both transposed", (k * m, view(&[m, k], &[1, m], 0)), (n * k, view(&[k, n], &[1, k], 0))),
        ("odd strides, offsets", (3 + m * 37, view(&[m, k], &[37, 1], 3)), (1 + k * 47, view(&[k, n], &[47, 1], 1))),
    ];
    let cases: Vec<Case> = layouts.into_iter().map(|(what, a, b)| Case { what, a, b, bias: false }).collect();
    // The texture kernel's buffer twins first (they compile their own
    // pipelines), then the texture products on a cache that has none.
    let buffers: Vec<Vec<u32>> = cases.iter().map(|c| product(&dev, c, false).0).collect();
    let before = dev.pipelines_compiled();
    for (case, buf) in cases.iter().zip(&buffers) {
        let (tex, families) = product(&dev, case, true);
        assert_families(case.what, &families, true);
        assert!(&tex == buf, "{}: texture and buffer operands differ", case.what);
    }
    assert_eq!(dev.pipelines_compiled() - before, 1, "one texture pipeline for {} layouts", cases.len());
}

#[test]
fn products_copy_only_the_elements_they_read() {
    let Some(dev) = subgroup_gpu("products_copy_only_the_elements_they_read") else { return };
    let case = long_buffers();
    let before = dev.stats();
    let (_, families) = product(&dev, &case, true);
    let copied = (dev.stats() - before).texture_bytes;
    assert_families(case.what, &families, true);
    // A's 120 and B's 744 elements (the bias stays a buffer), each window
    // widened by at most the offset alignment (256 bytes at most in
    // Vulkan) and 16 bytes.
    let read = 4 * (5 * 24 + 24 * 31) as u64;
    let slack = 2 * (256 + 16);
    assert!(copied >= read && copied <= read + slack, "copied {copied} bytes into textures for {read} read");
    let whole = 4 * (case.a.0 + case.b.0) as u64;
    assert!(copied < whole / 4, "copied {copied} bytes, the operands' buffers hold {whole}");
}

#[test]
fn split_products_copy_their_windows() {
    // With a 2 KiB binding limit each launch binds windows of A and B at
    // offsets into them: the texture copies start there.
    let Some(dev) = subgroup_gpu("split_products_copy_their_windows") else { return };
    dev.set_max_binding_bytes(Some(2048)).unwrap();
    let case = Case { what: "split", a: dense(&[2, 50, 9]), b: dense(&[9, 30]), bias: false };
    let (tex, families) = product(&dev, &case, true);
    assert!(families.len() > 1, "expected a split: {families:?}");
    assert_families("split", &families, true);
    let (buf, _) = product(&dev, &case, false);
    assert!(tex == buf, "split: texture and buffer operands differ");
    let whole = Device::cpu_reference();
    let mut r = rng(7);
    let (a, b) = (r.vec(900, -1.0, 1.0), r.vec(270, -1.0, 1.0));
    let (a, b) = (Buffer::from_f32(&whole, &a).unwrap(), Buffer::from_f32(&whole, &b).unwrap());
    let (c, _) = matmul_epilogue(MatmulConfig::default(), &Epilogue::default(), &a, &case.a.1, &b, &case.b.1).unwrap();
    let want = c.to_f32().unwrap()[..3000].to_vec();
    let got: Vec<f32> = tex.iter().map(|b| f32::from_bits(*b)).collect();
    wgrad_gpu_core::testing::assert_close("split vs the CPU twin", &got, &want, 1e-5, 1e-5);
}

/// Every batch-norm kernel that reads activations, on `d` with texture
/// inputs `on` or off: statistics with the running update, the forward with
/// and without residual, the gradient sums and the training input gradient
/// with the residual's; the results' bits and the profiled kernel families.
fn batch_norm(dev: &Device, d: ChannelDims, on: bool) -> (Vec<u32>, Vec<String>) {
    use wgrad_gpu_core::ops::operands::Operands::F32;
    dev.set_texture_operands(on);
    let (n, c) = (d.numel(), d.channels);
    let mut r = rng(13);
    let up = |v: Vec<f32>| Buffer::from_f32(dev, &v).unwrap();
    let (x, res, dy) = (up(r.vec(n, -2.0, 2.0)), up(r.vec(n, -1.0, 1.0)), up(r.vec(n, -1.0, 1.0)));
    let (w, b, rm, rv) =
        (up(r.vec(c, -2.0, 2.0)), up(r.vec(c, -1.0, 1.0)), up(r.vec(c, -1.0, 1.0)), up(r.vec(c, 0.5, 2.0)));
    let (outs, p) = dev
        .profile(|| {
            let running = Running { mean: &rm, var: &rv, momentum: 0.1 };
            let stats = batch_norm_stats(&x, d, 1e-5, Some(running), F32).unwrap();
            let (new_mean, new_var) = (rm.clone(), rv.clone());
            let centre = Centre::Stats(&stats);
            let plain = batch_norm_forward(&x, d, centre, Some(&w), Some(&b), None, false, F32).unwrap();
            let y = batch_norm_forward(&x, d, centre, Some(&w), Some(&b), Some(&res), true, F32).unwrap();
            let (db, dw) = batch_norm_grad_sums(&dy, &x, Some(&y), d, centre, F32).unwrap();
            let (dx, dres) =
                batch_norm_backward(&dy, &x, Some(&y), d, centre, Some(&w), Some((&db, &dw)), true, F32).unwrap();
            let dres = dres.unwrap();
            [(stats, 2 * c), (new_mean, c), (new_var, c), (plain, n), (y, n), (db, c), (dw, c), (dx, n), (dres, n)]
        })
        .unwrap();
    let bits = outs.iter().flat_map(|(b, n)| b.to_f32().unwrap()[..*n].iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    (bits.collect(), p.launches.iter().map(|l| l.family.clone()).collect())
}

#[test]
fn batch_norm_texture_inputs_give_the_buffer_kernels_bits() {
    let Some(dev) = fresh_gpu_or_skip("batch_norm_texture_inputs_give_the_buffer_kernels_bits") else { return };
    // Planes of a multiple of 4 (the vec4 entries) and of 35 (the scalar
    // ones); 4 x 3 x 1,000 values span three texture rows, the last partial.
    for (outer, channels, inner) in [(3, 5, 12), (2, 3, 35), (4, 3, 1000)] {
        let d = ChannelDims { outer, channels, inner };
        let (tex, tex_families) = batch_norm(&dev, d, true);
        let (buf, buf_families) = batch_norm(&dev, d, false);
        assert!(tex == buf, "{d:?}: texture and buffer inputs differ");
        // The kernels that read activations are the textured ones exactly
        // when the path is on; the per-channel finishing kernels never are.
        for (families, on) in [(&tex_families, true), (&buf_families, false)] {
            let reading: Vec<&String> = families
                .iter()
                .filter(|f| ["stats_partial", "forward", "grad_partial", "backward"].iter().any(|e| f.contains(e)))
                .collect();
            assert_eq!(reading.len(), 5, "{d:?}: {families:?}");
            for f in reading {
                assert_eq!(f.starts_with("batch_norm_tex:"), on, "{d:?} with texture inputs {on}: {f}");
            }
            assert!(families.iter().any(|f| f.starts_with("batch_norm:stats_final")), "{families:?}");
        }
    }
}

/// Softmax, cross-entropy, row normalisation and reductions (one thread per
/// output over a strided view, and a workgroup per output over a long axis)
/// with texture inputs `on` or off: the results' bits and the profiled
/// families of the kernels that read x.
fn rows_and_reductions(dev: &Device, on: bool) -> (Vec<u32>, Vec<String>) {
    use wgrad_gpu_core::ops::binary::{binary, BinaryOp};
    use wgrad_gpu_core::ops::norm::{normalize_rows, normalize_rows_backward};
    use wgrad_gpu_core::ops::reduce::{reduce, ReduceOp};
    use wgrad_gpu_core::ops::softmax::{cross_entropy_rows, softmax_rows, softmax_rows_backward, CeArgs, CeTarget};
    use wgrad_gpu_core::ops::unary::{unary, unary_grad, UnaryOp};
    dev.set_texture_operands(on);
    // One launch per op, so each kernel's own inputs are compared.
    dev.set_fusion(false).unwrap();
    let (rows, cols) = (37, 300);
    let mut r = rng(17);
    let x = Buffer::from_f32(dev, &r.vec(rows * cols, -3.0, 3.0)).unwrap();
    let classes: Vec<u32> = (0..rows as u32).map(|i| (i * 7) % cols as u32).collect();
    let t = Buffer::from_u32(dev, &classes).unwrap();
    let (outs, p) = dev
        .profile(|| {
            let args = CeArgs {
                rows,
                cols,
                target: CeTarget::Classes(&t),
                weight: None,
                ignore_index: None,
                label_smoothing: 0.1,
            };
            let sm = softmax_rows(&x, rows, cols, true).unwrap();
            let (loss, _, probs) = cross_entropy_rows(&x, &args).unwrap();
            let (y, mean, rstd) = normalize_rows(&x, rows, cols, 1e-5).unwrap();
            // The backward passes read dy and y (row_grads_tex.wgsl); `probs`
            // stands in for an incoming gradient.
            let dsm = softmax_rows_backward(&sm, &probs, rows, cols, false).unwrap();
            let dnorm = normalize_rows_backward(&probs, &y, &rstd, rows, cols).unwrap();
            // The transposed view [cols, rows]: strided loads per output.
            let t_view = view(&[cols, rows], &[1, cols], 0);
            let (over_rows, _) = reduce(ReduceOp::Sum, &x, &t_view, &[1], false).unwrap();
            let (over_all, _) = reduce(ReduceOp::Max, &x, &Layout::contiguous(&[rows * cols]), &[0], false).unwrap();
            let n = rows * cols;
            // Elementwise: a unary op and its gradient, a binary op with a
            // broadcast row at an odd offset (the scalar entry) and a
            // same-shape one (the vec4 entry: 300 columns).
            let gelu = unary(UnaryOp::GeluTanh, &x, n).unwrap();
            let dgelu = unary_grad(UnaryOp::GeluTanh, &x, &gelu, &sm, n).unwrap();
            let shape = [rows, cols];
            let row = view(&[rows, cols], &[0, 1], 5);
            let (bcast, _) = binary(BinaryOp::Mul, &x, &Layout::contiguous(&shape), &probs, &row).unwrap();
            let (same, _) =
                binary(BinaryOp::Sub, &x, &Layout::contiguous(&shape), &y, &Layout::contiguous(&shape)).unwrap();
            [
                (sm, n),
                (loss, rows),
                (probs, n),
                (y, n),
                (mean, rows),
                (rstd, rows),
                (dsm, n),
                (dnorm, n),
                (over_rows, cols),
                (over_all, 1),
                (gelu, n),
                (dgelu, n),
                (bcast, n),
                (same, n),
            ]
        })
        .unwrap();
    let bits = outs.iter().flat_map(|(b, n)| b.to_f32().unwrap()[..*n].iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    let reading = ["softmax_fwd", "softmax_bwd", "ce_fwd", "normalize_rows", "reduce", "unary", "binary"];
    let families = p.launches.iter().map(|l| l.family.clone()).filter(|f| reading.iter().any(|e| f.contains(e)));
    (bits.collect(), families.collect())
}

#[test]
fn row_reduction_and_elementwise_kernels_read_textures_with_the_same_bits() {
    let Some(dev) = fresh_gpu_or_skip("row_reduction_and_elementwise_kernels_read_textures_with_the_same_bits") else {
        return;
    };
    let (tex, tex_families) = rows_and_reductions(&dev, true);
    let (buf, buf_families) = rows_and_reductions(&dev, false);
    assert!(tex == buf, "texture and buffer inputs differ");
    for (families, on) in [(&tex_families, true), (&buf_families, false)] {
        assert_eq!(families.len(), 11, "{families:?}");
        assert!(families.iter().any(|f| f.contains("binary") && f.ends_with(":main4")), "{families:?}");
        assert!(families.iter().any(|f| f.contains("binary") && f.ends_with(":main")), "{families:?}");
        for f in families {
            assert_eq!(f.split(':').next().unwrap().ends_with("_tex"), on, "texture inputs {on}: {f}");
        }
    }
}

/// Two products sharing their weight, an in-place SGD update of the weight,
/// and a third product: with texture operands on, the second product binds
/// the weight's texture again (no copy), the third copies the updated
/// weight; on `dev` with textures `on` or off: the three results' bits and
/// the (copies, reuses) counters.
fn reuse_then_update(dev: &Device, on: bool) -> (Vec<u32>, (u64, u64)) {
    use wgrad_gpu_core::ops::optim::{update, Rule};
    dev.set_texture_operands(on);
    let mut r = rng(21);
    let up = |v: Vec<f32>| Buffer::from_f32(dev, &v).unwrap();
    let (a1, a2, w, g) = (
        up(r.vec(33 * 20, -1.0, 1.0)),
        up(r.vec(33 * 20, -1.0, 1.0)),
        up(r.vec(20 * 24, -1.0, 1.0)),
        up(r.vec(480, -1.0, 1.0)),
    );
    let (la, lw) = (Layout::contiguous(&[33, 20]), Layout::contiguous(&[20, 24]));
    let mm = |a: &Buffer| matmul_epilogue(subgroup(), &Epilogue::default(), a, &la, &w, &lw).unwrap().0;
    let before = dev.stats();
    let (c1, c2) = (mm(&a1), mm(&a2));
    let sgd = Rule::Sgd { momentum: 0.0, dampening: 0.0, nesterov: false };
    update(&sgd, 0.5, 0.0, 1, &w, &g, &[], 480).unwrap();
    let c3 = mm(&a1);
    let bits: Vec<u32> = [c1, c2, c3]
        .iter()
        .flat_map(|c| c.to_f32().unwrap()[..33 * 24].iter().map(|v| v.to_bits()).collect::<Vec<_>>())
        .collect();
    let d = dev.stats() - before;
    (bits, (d.texture_copies, d.texture_reuses))
}

#[test]
fn textures_are_reused_until_their_buffer_is_written() {
    let Some(dev) = subgroup_gpu("textures_are_reused_until_their_buffer_is_written") else { return };
    let (tex, (copies, reuses)) = reuse_then_update(&dev, true);
    let (buf, (no_copies, no_reuses)) = reuse_then_update(&dev, false);
    // a1, w; a2 (w reused); a1 (reused: nothing wrote it), w (updated: copied).
    assert_eq!((copies, reuses), (4, 2), "texture copies and reuses");
    assert_eq!((no_copies, no_reuses), (0, 0), "buffers only with textures off");
    assert!(tex == buf, "a reused or updated texture gave other bits than the buffers");
    // The update must show: the third product differs from the first.
    let third = 2 * 33 * 24;
    assert!(tex[..33 * 24] != tex[third..], "the third product did not see the updated weight");
}

/// Max pooling forward and backward and average pooling forward and
/// backward on `dev` with texture operands `on` or off: the results' bits
/// (the argmax as its u32 bits) and the launches' families. The
/// argmax has more entries than one texture row holds, and max pooling's
/// backward reads it through a texture (u32 bits in r32float texels).
fn pooling(dev: &Device, on: bool) -> Run {
    use wgrad_gpu_core::ops::pool::{avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward};
    dev.set_texture_operands(on);
    let mut r = rng(23);
    // 2×2/2 windows (max backward's one-window path) and 3×3/2 padded ones
    // (overlapping: the gather over several windows).
    let shape = [2, 9, 27, 33];
    let n = shape.iter().product::<usize>();
    let x = Buffer::from_f32(dev, &r.vec(n, -2.0, 2.0)).unwrap();
    let (outs, p) = dev
        .profile(|| {
            let mut outs = Vec::new();
            for (k, s, pad) in [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1))] {
                let (y, arg, out_shape) = max_pool2d(&x, &shape, window(k, s, pad, (1, 1))).unwrap();
                let m = out_shape.iter().product::<usize>();
                let dy = Buffer::from_f32(dev, &r.vec(m, -1.0, 1.0)).unwrap();
                let dx = max_pool2d_backward(&dy, &arg, &shape, window(k, s, pad, (1, 1))).unwrap();
                let (avg, _) = avg_pool2d(&x, &shape, window(k, s, pad, (1, 1)), false).unwrap();
                let davg = avg_pool2d_backward(&dy, &shape, window(k, s, pad, (1, 1)), false).unwrap();
                outs.extend([(y, m), (arg, m), (dx, n), (avg, m), (davg, n)]);
            }
            outs
        })
        .unwrap();
    words_and_families(&outs, &p)
}

#[test]
fn pooling_reads_textures_with_the_same_bits() {
    same_bits_on_and_off("pooling_reads_textures_with_the_same_bits", "pool", 8, pooling);
}

/// A case's results as words, and the families of its launches.
type Run = (Vec<u32>, Vec<String>);

/// The first `n` words of each result, and the profiled launches' families.
fn words_and_families(outs: &[(Buffer, usize)], p: &wgrad_gpu_core::Profile) -> Run {
    let words = outs.iter().flat_map(|(b, n)| b.to_u32().unwrap()[..*n].to_vec()).collect();
    (words, p.launches.iter().map(|l| l.family.clone()).collect())
}

/// Runs `case` on a fresh device with texture operands on and then off: the
/// results must be the same words, and each of the `count` launches of the
/// kernel `shader` must run its `_tex` variant exactly when textures are on.
fn same_bits_on_and_off(test: &str, shader: &str, count: usize, case: fn(&Device, bool) -> Run) {
    let Some(dev) = fresh_gpu_or_skip(test) else { return };
    let (tex, tex_families) = case(&dev, true);
    let (buf, buf_families) = case(&dev, false);
    assert!(tex == buf, "{test}: texture and buffer inputs differ");
    for (families, on) in [(tex_families, true), (buf_families, false)] {
        let mine: Vec<String> = families.into_iter().filter(|f| f.starts_with(shader)).collect();
        assert_eq!(mine.len(), count, "{test}: {mine:?}");
        for f in mine {
            assert_eq!(f.starts_with(&format!("{shader}_tex:")), on, "{test}: texture inputs {on}: {f}");
        }
    }
}

/// `contiguous` of a permuted, narrowed view, `copy_into` a strided
/// destination and `contiguous_f16` of a permuted f16 view, on data full of
/// odd bit patterns (NaN payloads, subnormals, -0, u32 indices), with texture
/// operands `on` or off: the results' words and the launches' families.
fn copies(dev: &Device, on: bool) -> Run {
    use wgrad_gpu_core::ops::copy::{contiguous, contiguous_f16, copy_into};
    dev.set_texture_operands(on);
    let n = 7 * 33 * 40;
    // Hashed words: about 1 in 256 has an all-ones exponent (a NaN with a
    // payload, or infinity) and 1 in 256 a zero one (subnormal or zero).
    let words: Vec<u32> = (0..n as u32).map(|k| k.wrapping_mul(0x9e37_79b9) ^ (k % 3) << 30).collect();
    let x = Buffer::from_u32(dev, &words).unwrap();
    let view = Layout::contiguous(&[7, 33, 40]).narrow(1, 2, 29).unwrap().permute(&[2, 0, 1]).unwrap();
    let (outs, p) = dev
        .profile(|| {
            let a = contiguous(&x, &view).unwrap();
            let dst = Buffer::from_u32(dev, &vec![0; 2 * view.numel()]).unwrap();
            // Every other word of dst, from word 1.
            let strided = self::view(&view.shape, &[2 * 7 * 29, 2 * 29, 2], 1);
            copy_into(&x, &view, &dst, &strided).unwrap();
            // The same words as f16 halves: twice as many elements.
            let halves = Layout::contiguous(&[14, 33, 40]).permute(&[1, 2, 0]).unwrap();
            let h = contiguous_f16(&x, &halves).unwrap();
            [(a, view.numel()), (dst, 2 * view.numel()), (h, n)]
        })
        .unwrap();
    words_and_families(&outs, &p)
}

#[test]
fn copies_read_textures_with_the_same_bits() {
    same_bits_on_and_off("copies_read_textures_with_the_same_bits", "copy", 3, copies);
}

/// An LSTM (with `b_hh`), a GRU (with `b_hh`, reversed) and a ReLU RNN
/// (without: its bias binding is a placeholder) run forward and backward
/// with texture operands `on` or off: every state, saved gate and gradient
/// as words, and the launches' families.
fn recurrences(dev: &Device, on: bool) -> Run {
    use wgrad_gpu_core::ops::recurrent::{recurrent_backward, recurrent_forward, RecurrentKind};
    dev.set_texture_operands(on);
    let (t, b, h) = (3, 2, 5);
    let data = |n: usize, seed: usize| -> Vec<f32> {
        (0..n).map(|i| (((i * 37 + seed * 11) % 23) as f32 - 11.0) / 16.0).collect()
    };
    let kinds =
        [(RecurrentKind::Lstm, true, false), (RecurrentKind::Gru, true, true), (RecurrentKind::RnnRelu, false, false)];
    let (outs, p) = dev
        .profile(|| {
            let mut outs = Vec::new();
            for (i, (kind, with_bias, reverse)) in kinds.into_iter().enumerate() {
                let gh = kind.gates() * h;
                let xw = Buffer::from_f32(dev, &data(t * b * gh, i)).unwrap();
                let w_hh = Buffer::from_f32(dev, &data(gh * h, i + 3)).unwrap();
                let b_hh = with_bias.then(|| Buffer::from_f32(dev, &data(gh, i + 5)).unwrap());
                let h0 = Buffer::from_f32(dev, &data(b * h, i + 7)).unwrap();
                let c0 = (kind == RecurrentKind::Lstm).then(|| Buffer::from_f32(dev, &data(b * h, i + 9)).unwrap());
                let saved =
                    recurrent_forward(kind, &xw, &w_hh, b_hh.as_ref(), &h0, c0.as_ref(), t, b, h, reverse).unwrap();
                let dy = Buffer::from_f32(dev, &data(t * b * h, i + 13)).unwrap();
                let g = recurrent_backward(&saved, &w_hh, &dy, None, None).unwrap();
                let states = saved.states_shape().iter().product();
                outs.push((saved.states().clone(), states));
                if let Some(gates) = saved.gates() {
                    outs.push((gates.clone(), t * b * 4 * h));
                }
                outs.extend([(g.dxw, t * b * gh), (g.dw_hh, gh * h), (g.dh0, b * h)]);
                outs.extend(g.db_hh.map(|d| (d, gh)).into_iter().chain(g.dc0.map(|d| (d, b * h))));
            }
            outs
        })
        .unwrap();
    words_and_families(&outs, &p)
}

#[test]
fn recurrent_cells_read_textures_with_the_same_bits() {
    // Three kinds, three steps each way; the LSTM's steps run in its
    // products' stores (matmul_subgroup_cell[_tex], bits compared here too)
    // but the first backward one.
    same_bits_on_and_off("recurrent_cells_read_textures_with_the_same_bits", "recurrent", 13, recurrences);
}
