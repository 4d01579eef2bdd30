//! Batched matrix product with NumPy batch broadcasting (`shaders/matmul.wgsl`
//! for GPUs, `shaders/matmul_subgroup.wgsl` for CPU adapters,
//! `shaders/matmul_coop.wgsl` on matrix units).
//!
//! Operands are strided views: a transposed operand is a permuted [`Layout`]
//! and is read in place, never copied.
//!
//! This file holds the entry points and [`product`], which every product
//! but a recurrent cell's (`cell.rs`) goes through (plain, with an
//! epilogue, a convolution's gathered operand):
//! checks, the epilogue's fallbacks, then one launch, a split launch or the
//! CPU twin. Beside it:
//! - `family.rs`: which kernel family runs a product ([`MatmulKernel`],
//!   [`MatmulConfig`], matrix units);
//! - `tiles.rs`: each family's output tile for a shape;
//! - `job.rs`: a product's launch on a GPU (the uniform block `PARAMS`,
//!   override constants, bound windows, the store the fuser may extend);
//! - `split_k.rs`: products with few outputs and a long K as slices of K;
//! - `binding_split.rs`: products too large for one launch's bindings;
//! - `cell.rs`: a recurrent step's product with the LSTM cell in its store.

mod binding_split;
mod cell;
mod family;
// Seen by `ops::params`, which lists `job::PARAMS` with every uniform block.
pub(super) mod job;
mod split_k;
mod tiles;

pub(crate) use cell::{cell_product, cell_product_runs, cell_reads_textures};
pub use family::{MatmulConfig, MatmulKernel, SplitK};
pub(crate) use split_k::{k_slices, slices_for};
// The recurrent rule's tests force counts and ask where the knob sends products.
#[cfg(test)]
pub(crate) use split_k::{cap as split_k_cap, largest_divisor};

pub(crate) use super::epilogue::CellStore;
pub use super::epilogue::{Bias, BiasAxis, Epilogue};
pub use super::operands::{HalfLoads, Operands};

use super::operands::{host_f32, HostOutput};
use super::run_fallible;
use super::unary::UnaryOp;
use crate::cpu::gemm::{gemm, Mat};
pub(crate) use crate::kernels::conv::ConvGather;
use crate::kernels::conv::ConvGeometry;
use crate::kernels::matmul::{self as twin, BOperand};
use crate::layout::{broadcast_shapes, coalesce, numel, Dims, Layout};
use crate::{Buffer, Error, Result};
use family::{rounds_in_store, Family};
use job::{binds_whole, Job, Part};
use split_k::split_k;

/// The broadcast batch shape and each operand's batch dims as a view of it,
/// or an error naming both shapes.
fn check_shapes(la: &Layout, lb: &Layout) -> Result<(Dims, Layout, Layout)> {
    let shapes = || format!("{:?} and {:?}", la.shape, lb.shape);
    if la.rank() < 2 || lb.rank() < 2 {
        return Err(Error::invalid(
            "matmul",
            format!("operands must have rank >= 2 ([..batch, M, K] @ [..batch, K, N]), got shapes {}", shapes()),
        ));
    }
    let (ra, rb) = (la.rank() - 2, lb.rank() - 2);
    if la.shape[ra + 1] != lb.shape[rb] {
        return Err(Error::invalid(
            "matmul",
            format!("inner dimensions differ ({} vs {}) for shapes {}", la.shape[ra + 1], lb.shape[rb], shapes()),
        ));
    }
    let batch = broadcast_shapes(&la.shape[..ra], &lb.shape[..rb]).ok_or_else(|| {
        Error::invalid("matmul", format!("batch dimensions cannot be broadcast together for shapes {}", shapes()))
    })?;
    // Stride 0 where an operand broadcasts; the offset is the operand's.
    let view = |l: &Layout, r: usize| {
        Layout { shape: l.shape[..r].into(), strides: l.strides[..r].into(), offset: l.offset }.broadcast_to(&batch)
    };
    let (va, vb) = (view(la, ra)?, view(lb, rb)?);
    Ok((batch, va, vb))
}

/// `a @ b` for `a` viewed as `[..batch, M, K]` and `b` as `[..batch, K, N]`
/// (rank ≥ 2 each; batch dims broadcast like NumPy). Returns the result,
/// contiguous, and its shape `[..broadcast batch, M, N]`.
///
/// Either view may be transposed or sliced: both are read through their
/// strides. 1-D operands are the caller's business (promote them to
/// `[1, K]` / `[K, 1]` first).
pub fn matmul(a: &Buffer, la: &Layout, b: &Buffer, lb: &Layout) -> Result<(Buffer, Dims)> {
    matmul_with(MatmulKernel::Auto, a, la, b, lb)
}

/// [`matmul`] on a chosen GPU kernel (for tests and benchmarks); an error
/// when the device cannot run it.
pub fn matmul_with(kernel: MatmulKernel, a: &Buffer, la: &Layout, b: &Buffer, lb: &Layout) -> Result<(Buffer, Dims)> {
    matmul_config(MatmulConfig { kernel, ..MatmulConfig::default() }, a, la, b, lb)
}

/// [`matmul`] of two f16 operands (packed, [`Buffer::from_f16`]'s layout):
/// f32 products and sums, an f32 result.
pub fn matmul_f16(a: &Buffer, la: &Layout, b: &Buffer, lb: &Layout) -> Result<(Buffer, Dims)> {
    matmul_config(MatmulConfig::f16(), a, la, b, lb)
}

/// [`matmul`] with every choice spelled out (tests and benchmarks).
pub fn matmul_config(cfg: MatmulConfig, a: &Buffer, la: &Layout, b: &Buffer, lb: &Layout) -> Result<(Buffer, Dims)> {
    matmul_epilogue(cfg, &Epilogue::default(), a, la, b, lb)
}

/// [`matmul_config`] through an [`Epilogue`]: a bias added to the f32 sums
/// and/or the result stored as f16 (rounded once), in the product's own
/// launch. An f16 result of odd N is stored as f32 and cast (a second
/// launch; packed f16 stores need whole words).
pub fn matmul_epilogue(
    cfg: MatmulConfig,
    epi: &Epilogue,
    a: &Buffer,
    la: &Layout,
    b: &Buffer,
    lb: &Layout,
) -> Result<(Buffer, Dims)> {
    for (buf, l) in [(a, la), (b, lb)] {
        l.check_rank("matmul")?;
        buf.check_len("matmul", "operand", l.span(), cfg.operands.size())?;
        super::check_u32("matmul", l.span())?;
    }
    let (batch, va, vb) = check_shapes(la, lb)?;
    product(cfg, epi, a, la, &va, b, &strided_b(lb, vb), batch)
}

/// `op(a @ b)` through `epi` with the op of the unary table in the store
/// (after the scale and bias, before the residual): the result and the
/// values before the op (the product as `epi` alone would store it, which
/// the op's gradient reads), or `None` for those without `keep_pre`. One
/// launch where it binds its buffers whole and stores f32; otherwise (f16
/// results, products split past the binding limit) the product, then the
/// op as a launch of its own, with the same values.
///
/// # Errors
/// As [`matmul_epilogue`], and for an `epi` that already has a ReLU or an
/// activation.
pub fn matmul_activation(
    cfg: MatmulConfig,
    epi: &Epilogue,
    op: UnaryOp,
    keep_pre: bool,
    (a, la): (&Buffer, &Layout),
    (b, lb): (&Buffer, &Layout),
) -> Result<(Buffer, Option<Buffer>, Dims)> {
    if epi.relu || epi.activation.is_some() {
        return Err(Error::invalid("matmul", "matmul_activation takes an epilogue without an activation"));
    }
    for l in [la, lb] {
        l.check_rank("matmul")?;
    }
    let (batch, _, _) = check_shapes(la, lb)?;
    let total = numel(&batch) * la.shape[la.rank() - 2] * lb.shape[lb.rank() - 1];
    let dev = a.device();
    let fused = epi.output == Operands::F32 && dev.gpu_ctx().is_none_or(|g| binds_whole(g, epi, (a, b), total));
    if !fused {
        // The residual joins after the op: the product stores the values before it.
        let plain = epi.without_residual();
        let (pre, shape) = matmul_epilogue(cfg, &plain, a, la, b, lb)?;
        let wide = match epi.output {
            Operands::F32 => pre.clone(),
            Operands::F16 => super::cast::f16_to_f32(&pre, total)?,
        };
        let mut y = super::unary::unary(op, &wide, total)?;
        if let Some(r) = epi.residual {
            let l = Layout::contiguous(&shape);
            y = super::binary::binary(super::binary::BinaryOp::Add, &y, &l, r, &l)?.0;
        }
        if epi.output == Operands::F16 {
            y = super::cast::f32_to_f16(&y, total)?;
        }
        return Ok((y, keep_pre.then_some(pre), shape));
    }
    super::check_u32("matmul", total)?;
    let pre = if keep_pre { Some(Buffer::alloc(dev, total as u64 * 4)?) } else { None };
    let with_op = Epilogue { activation: Some(op), pre: pre.as_ref(), ..*epi };
    let (y, shape) = matmul_epilogue(cfg, &with_op, a, la, b, lb)?;
    Ok((y, pre, shape))
}

/// B as the strided matrix in `lb`'s last two dims, its batch dims seen
/// as `view` (from [`check_shapes`]).
fn strided_b(lb: &Layout, view: Layout) -> BOperand {
    let rb = lb.rank() - 2;
    BOperand {
        view,
        k: lb.shape[rb],
        n: lb.shape[rb + 1],
        rs: lb.strides[rb],
        cs: lb.strides[rb + 1],
        offset: lb.offset,
        conv: None,
    }
}

/// A convolution's B operand: the matrix `form` of geometry `geo`, `k` x
/// `n` per batch entry, gathered on the fly from the dense tensor `src`,
/// whose batch entry `i` (of the broadcast batch shape) starts at
/// `batch.index_of(i)` (`batch` holds the gathered batch dims, their strides
/// and the offset).
pub(crate) struct ConvOperand<'a> {
    pub src: &'a Buffer,
    pub batch: Layout,
    pub form: ConvGather,
    pub geo: ConvGeometry,
    pub k: usize,
    pub n: usize,
}

/// `a @ g` for `a` `[..batch, M, K]` and the gathered operand `g`. The
/// caller (ops::conv) has checked `g.src`'s length.
pub(crate) fn conv_matmul(
    cfg: MatmulConfig,
    epi: &Epilogue,
    a: &Buffer,
    la: &Layout,
    g: &ConvOperand,
) -> Result<(Buffer, Dims)> {
    la.check_rank("conv2d")?;
    a.check_len("conv2d", "weight", la.span(), cfg.operands.size())?;
    if epi.activation.is_some() {
        // Its values before the op would be stored relative to each piece
        // of a split convolution; ReLU (`relu`) is the convolutions' one.
        return Err(Error::invalid("conv2d", "a convolution's store applies ReLU only, not other activations"));
    }
    let (ra, k, n) = (la.rank() - 2, g.k, g.n);
    let shapes = || format!("{:?} and gathered [{:?}, {k}, {n}]", la.shape, g.batch.shape);
    if la.shape[ra + 1] != k {
        return Err(Error::invalid("conv2d", format!("inner dimensions differ for {}", shapes())));
    }
    let bshape = broadcast_shapes(&la.shape[..ra], &g.batch.shape)
        .ok_or_else(|| Error::invalid("conv2d", format!("batch dims do not broadcast for {}", shapes())))?;
    let va = Layout { shape: la.shape[..ra].into(), strides: la.strides[..ra].into(), offset: la.offset }
        .broadcast_to(&bshape)?;
    let view = g.batch.broadcast_to(&bshape)?;
    let bop = BOperand { view, k, n, rs: 0, cs: 0, offset: g.batch.offset, conv: Some((g.form, g.geo)) };
    product(cfg, epi, a, la, &va, g.src, &bop, bshape)
}

/// Records (or on the CPU backend computes) one batched product: `a` seen
/// through `la` (its batch dims broadcast as `va`), B as `bop`, stored
/// through `epi`.
#[allow(clippy::too_many_arguments)]
fn product(
    cfg: MatmulConfig,
    epi: &Epilogue,
    a: &Buffer,
    la: &Layout,
    va: &Layout,
    b: &Buffer,
    bop: &BOperand,
    batch: Dims,
) -> Result<(Buffer, Dims)> {
    let dev = a.device();
    Buffer::check_same_device("matmul", dev, &[a, b])?;
    let vb = &bop.view;
    let ra = la.rank() - 2;
    let (m, k, n) = (la.shape[ra], bop.k, bop.n);
    let batches = numel(&batch);
    let total = batches * m * n;
    for elems in [total, la.span()] {
        super::check_u32("matmul", elems)?;
    }
    epi.check("matmul", dev, (batches, m, n))?;
    if let Some(slices) = split_k(cfg, epi, (a, b), bop, (batches, m, k, n))? {
        return split_product(cfg, slices, (a, la, va), (b, bop), batch);
    }
    // The subgroup family's f32-then-cast path, unless its f32 sums could
    // not be bound whole by the cast (which does not split): then the
    // fused store, slower on llvmpipe but able to split. An f16 result with
    // a residual takes it too: the residual joins the f32 sums, and the
    // sum is rounded once.
    let cast_fits = dev.gpu_ctx().is_none_or(|g| total as u64 * 4 <= g.binding_limit());
    let f32_first = !rounds_in_store(cfg, dev) || epi.residual.is_some();
    if epi.needs_cast(n) || (epi.stores_f16(n) && f32_first && cast_fits) {
        let (sums, shape) = product(cfg, &epi.as_f32(), a, la, va, b, bop, batch)?;
        return Ok((super::cast::f32_to_f16(&sums, total)?, shape));
    }
    // The store adds a residual where one launch writes the whole f32
    // result; a product split past the binding limit (or an f16 result too
    // large for the cast) adds it after.
    if let Some(r) = epi.residual {
        let whole = dev.gpu_ctx().is_none_or(|g| binds_whole(g, epi, (a, b), total));
        if epi.output != Operands::F32 || !whole {
            let (y, shape) = product(cfg, &epi.without_residual(), a, la, va, b, bop, batch)?;
            let (y_view, r_view) = (Layout::contiguous(&shape), Layout::contiguous(&shape));
            let add = |y: &Buffer| super::binary::binary(super::binary::BinaryOp::Add, y, &y_view, r, &r_view);
            let sum = match epi.output {
                Operands::F32 => add(&y)?.0,
                Operands::F16 => super::cast::f32_to_f16(&add(&super::cast::f16_to_f32(&y, total)?)?.0, total)?,
            };
            return Ok((sum, shape));
        }
    }
    let mut shape = batch.clone();
    shape.extend([m, n]);
    let out = Buffer::alloc_overwritten(dev, total as u64 * epi.output.size())?;
    if total == 0 {
        return Ok((out, shape));
    }
    crate::profiler::annotate_flops(2 * total as u64 * k as u64);
    run_fallible(
        dev,
        |g| {
            let family = Family::of(cfg, g, dev, "matmul")?;
            let (bshape, bstrides) = coalesce(&batch, &[&va.strides, &vb.strides]);
            let job = Job { g, cfg, family, la, bop, m, k, n, a, b, out: &out, bstrides: &bstrides };
            if binds_whole(g, epi, (a, b), total) {
                // Everything fits: one launch binding whole buffers, or the
                // spans of A and B where they go through textures.
                let mut whole = Part { dims: &bshape, level: 0, a_offset: la.offset, b_offset: bop.offset, m, k, n };
                let binds = job.texture_spans(&mut whole);
                return job.launch(epi, &whole, binds);
            }
            if epi.activation.is_some() {
                // Split launches store windows; the values before the op are
                // bound whole (matmul_activation checks first).
                return Err(Error::invalid("matmul", "an activation in the store needs the product bound whole"));
            }
            job.split(epi, &bshape, shape.as_slice())
        },
        || {
            let (ha, hb, mut ho) = (a.host(), b.host(), out.host_mut());
            let (wa, wb) = (host_f32(dev, &ha, cfg.operands)?, host_f32(dev, &hb, cfg.operands)?);
            let mut stored = HostOutput::new(dev, &mut ho, total, epi.output)?;
            let fast = dev.runs_fast_cpu();
            sums_cpu(fast, (&wa[..], la, va), (&wb[..], bop), (batches, m, k, n), stored.values());
            epi.apply_cpu(stored.values(), (m, n), fast);
            stored.finish();
            Ok(())
        },
    )?;
    Ok((out, shape))
}

/// `a @ b` as `slices` products over consecutive ranges of K, one launch
/// with an outer batch dim (`[slices, ..batch, M, N]`, strided views of
/// the same operands, no copy), then their sum over that dim in slice
/// order, one reduction launch: the same bits on every run.
fn split_product(
    cfg: MatmulConfig,
    slices: usize,
    (a, la, va): (&Buffer, &Layout, &Layout),
    (b, bop): (&Buffer, &BOperand),
    batch: Dims,
) -> Result<(Buffer, Dims)> {
    let ra = la.rank() - 2;
    let (m, n) = (la.shape[ra], bop.n);
    let total = numel(&batch) * m * n;
    let parts = partials(cfg, slices, (a, la, va), (b, bop), &batch)?;
    let (sum, _) = super::reduce::reduce(
        super::reduce::ReduceOp::Sum,
        &parts,
        &Layout::contiguous(&[slices, total]),
        &[0],
        false,
    )?;
    let mut shape = batch;
    shape.extend([m, n]);
    Ok((sum, shape))
}

/// The `[slices, ..batch, M, N]` products of `a @ b` over consecutive
/// ranges of K (`slices` divides K), one launch.
fn partials(
    cfg: MatmulConfig,
    slices: usize,
    (a, la, va): (&Buffer, &Layout, &Layout),
    (b, bop): (&Buffer, &BOperand),
    batch: &Dims,
) -> Result<Buffer> {
    let (la_s, va_s, bop_s, batch_s) = split_k::sliced(slices, (la, va), bop, batch);
    let whole = MatmulConfig { split_k: SplitK::Slices(1), ..cfg };
    Ok(product(whole, &Epilogue::default(), a, &la_s, &va_s, b, &bop_s, batch_s)?.0)
}

/// [`matmul`] as `slices` products over consecutive ranges of K, unsummed:
/// `[slices, ..batch, M, N]` in one launch (`slices` divides K; 1: the
/// product itself). For a caller that adds the slices where it reads them
/// (a recurrent cell kernel).
pub(crate) fn matmul_partials(a: &Buffer, la: &Layout, b: &Buffer, lb: &Layout, slices: usize) -> Result<Buffer> {
    if slices == 1 {
        return Ok(matmul(a, la, b, lb)?.0);
    }
    let (batch, va, vb) = check_shapes(la, lb)?;
    partials(MatmulConfig::default(), slices, (a, la, &va), (b, &strided_b(lb, vb)), &batch)
}

/// The kernels' sums on the host: `xo` (`batches` entries of `m x n`) gets
/// `a @ b` for each batch entry, by the reference twin ([`twin::sums`]) or,
/// when `fast`, the fast paths (the same sgemm, with convolution operands
/// gathered into reused scratch or their products batched per core).
fn sums_cpu(
    fast: bool,
    (xa, la, va): (&[f32], &Layout, &Layout),
    (xb, bop): (&[f32], &BOperand),
    (batches, m, k, n): (usize, usize, usize, usize),
    xo: &mut [f32],
) {
    if !fast {
        let mul = |dims, (a, a_rs, a_cs): twin::View, (b, b_rs, b_cs): twin::View, c: &mut [f32]| {
            gemm(dims, 1.0, Mat { data: a, rs: a_rs, cs: a_cs }, Mat { data: b, rs: b_rs, cs: b_cs }, 0.0, c, n)
        };
        return twin::sums((xa, la, va), (xb, bop), (m, k, n), xo, mul);
    }
    let vb = &bop.view;
    let ra = la.rank() - 2;
    let (a_rs, a_cs, b_rs, b_cs) = (la.strides[ra], la.strides[ra + 1], bop.rs, bop.cs);
    if k == 0 {
        // An empty sum; the operands may hold no elements at all.
        xo.fill(0.0);
        return;
    }
    let shared_a = va.shape.iter().zip(&va.strides).all(|(&d, &st)| st == 0 || d == 1);
    // A stride-1 convolution reads its source in place (no gather).
    let implicit = match bop.conv {
        Some((form, geo)) if shared_a && batches > 0 => crate::cpu::conv::Implicit::new(form, &geo, (m, k, n)),
        _ => None,
    };
    if let Some(imp) = implicit {
        let a = crate::cpu::gemm_packed_a::PackedA::new((m, k), (&xa[va.offset..], a_rs, a_cs));
        return crate::cpu::conv::product_implicit(&imp, &a, xb, |i| vb.index_of(i), xo);
    }
    match bop.conv {
        // Only when at least two entries fit side by side in the
        // scratch; larger products are wide enough on their own.
        // Small products (ResNet-20's: 2.4M multiply-adds each) run
        // one entry per core; a single one is too small to thread.
        Some((form, geo)) if batches > 1 && m * k * n <= crate::cpu::conv::PER_ENTRY_MAX_MACS => {
            let (a_at, b_at) = (|i| va.index_of(i), |i| vb.index_of(i));
            let a_view = (xa, a_rs, a_cs);
            return crate::cpu::conv::product_per_entry(form, &geo, a_view, a_at, (m, k, n), xb, b_at, xo);
        }
        Some((form, geo))
            if shared_a
                && batches > 1
                && form != ConvGather::ColumnsT
                && 2 * k * n <= crate::cpu::conv::SIDE_BY_SIDE_FLOATS =>
        {
            let a_view = (&xa[va.offset..], a_rs, a_cs);
            let entry = |i| vb.index_of(i);
            return crate::cpu::conv::product_shared_a(form, &geo, a_view, (m, k, n), xb, entry, xo);
        }
        _ => {}
    }
    // A gathered B is materialised per batch entry into one reused scratch.
    let mut scratch = Vec::new();
    for (i, c) in xo.chunks_exact_mut(m * n).enumerate() {
        let (oa, ob) = (va.index_of(i), vb.index_of(i));
        // A gathered B is k x n in the scratch; a plain one is read in place.
        let b = match bop.conv {
            Some((form, geo)) => {
                scratch.resize(k * n, 0.0);
                let (rs, cs) = crate::cpu::conv::gather(form, &geo, &xb[ob..], k, n, &mut scratch);
                Mat { data: &scratch, rs, cs }
            }
            None => Mat { data: &xb[ob..], rs: b_rs, cs: b_cs },
        };
        gemm((m, k, n), 1.0, Mat { data: &xa[oa..], rs: a_rs, cs: a_cs }, b, 0.0, c, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_errors_name_both_shapes() {
        let c = crate::Device::cpu();
        let x = Buffer::from_f32(&c, &[0.0; 24]).unwrap();
        let l = Layout::contiguous;
        for (sa, sb) in [(&[2, 3][..], &[4, 2][..]), (&[3][..], &[3, 1][..]), (&[2, 1, 3][..], &[3, 3, 1][..])] {
            let msg = matmul(&x, &l(sa), &x, &l(sb)).unwrap_err().to_string();
            assert!(msg.contains(&format!("{sa:?}")) && msg.contains(&format!("{sb:?}")), "{msg}");
        }
    }
}
