//! Products with few outputs and a long K, run as products over slices of
//! K and their sum in slice order (docs/internals/gpu-core.md, "Products
//! in slices of K"); the slicing arithmetic shared with a recurrent
//! layer's per-step products is `ops/k_slices.rs`.

use super::family::{Family, MatmulConfig, SplitK};
use crate::buffer::Buffer;
use crate::kernels::matmul::BOperand;
use crate::layout::{Dims, Layout};
use crate::ops::epilogue::Epilogue;
use crate::ops::k_slices::{largest_divisor, slices_for};
use crate::ops::operands::Operands;
use crate::{Error, Result};

/// Partial sums [`split_k`] aims a product at: what about 256 workgroups
/// of the tiled kernel's 64 x 128 tile hold (two per compute unit of a
/// large GPU: an H200 has 132), so about 32,768 threads.
pub(super) const SPLIT_OUTPUTS: usize = 256 * 64 * 128;

/// The fewest values of K a slice of [`split_k`] keeps: eight of the tiled
/// kernel's staged depths.
pub(super) const SPLIT_DEPTH: usize = 128;

/// How many slices of K a product runs in ([`SplitK`]; `split_product` in
/// `mod.rs` runs them), or `None` for one launch of the whole product.
///
/// The tiled kernel gives each thread an 8 x 8 block of outputs summed
/// over all of K, so a product with few outputs and a long K is a few
/// threads each walking that K: a Linear layer's `[256, 256]` weight
/// gradient at 2048 tokens is 8 workgroups whose threads each do what a
/// thread of the 2048^3 product does, which takes 0.63 ms on an H200 with
/// 512 workgroups busy. In slices of at least [`SPLIT_DEPTH`] it gets up to
/// [`SPLIT_OUTPUTS`] partial sums and one reduction launch. Only products
/// without an epilogue (f32 sums stored as they are), whose B is a strided
/// matrix and whose operands and partial sums each bind whole; where
/// [`k_slices`] allows.
pub(super) fn split_k(
    cfg: MatmulConfig,
    epi: &Epilogue,
    (a, b): (&Buffer, &Buffer),
    bop: &BOperand,
    (batches, m, k, n): (usize, usize, usize, usize),
) -> Result<Option<usize>> {
    let dev = a.device();
    let Some(g) = dev.gpu_ctx() else { return Ok(None) };
    let plain = epi.scale.is_none()
        && epi.bias.is_none()
        && !epi.relu
        && epi.activation.is_none()
        && epi.residual.is_none()
        && epi.output == Operands::F32;
    // One more batch dim must fit the kernel's batch shape.
    let rank_fits = bop.view.rank() < crate::layout::MAX_DIMS;
    if !plain || bop.conv.is_some() || !rank_fits || m * n == 0 {
        return Ok(None);
    }
    let slices = match cfg.split_k {
        SplitK::Slices(s) => largest_divisor(k, s),
        SplitK::Auto => k_slices(cfg, dev, |cap| auto_slices((batches, m, k, n), cap))?,
    };
    let limit = g.binding_limit();
    let fits = (slices * batches * m * n) as u64 * 4 <= limit && [a, b].iter().all(|x| x.wgpu().size() <= limit);
    Ok((slices > 1 && fits).then_some(slices))
}

/// Where products are cut into slices of K, `rule`'s count for the cap
/// `WGRAD_MATMUL_SPLIT_K` sets (`usize::MAX` unset), else 1. Unset: f32
/// products of the tiled kernel on GPUs that are no CPU adapter (whose
/// few cores a whole product already fills). Set (1: never cut): on every
/// adapter and family, so tests and benches take the GPUs' path on a CPU
/// adapter's subgroup kernel. Shared by [`split_k`] and a recurrent
/// layer's per-step products (`recurrent::step_slices`).
pub(crate) fn k_slices(cfg: MatmulConfig, dev: &crate::Device, rule: impl FnOnce(usize) -> usize) -> Result<usize> {
    let Some(g) = dev.gpu_ctx() else { return Ok(1) };
    let cap = crate::ops::k_slices::cap().map_err(|e| Error::invalid("matmul", e))?;
    if cfg.operands != Operands::F32 {
        return Ok(1);
    }
    if cap.is_none() && (g.is_cpu_adapter() || Family::of(cfg, g, dev, "matmul")? != Family::Tiled) {
        return Ok(1);
    }
    Ok(rule(cap.unwrap_or(usize::MAX)))
}

/// [`split_k`]'s rule: enough slices for [`SPLIT_OUTPUTS`], each at least
/// [`SPLIT_DEPTH`] deep, at most `cap`.
pub(super) fn auto_slices((batches, m, k, n): (usize, usize, usize, usize), cap: usize) -> usize {
    slices_for(k, SPLIT_OUTPUTS.div_ceil((batches * m * n).max(1)), SPLIT_DEPTH, cap)
}

/// The views of `slices` products over consecutive ranges of K (`slices`
/// divides K) as one batched product with an outer batch dim: A as `la`
/// with K cut to a slice (its batch dims as `va`), B as `bop`, the batch
/// shape `batch`, each with the slice dim in front, strided over the same
/// buffers (no copy).
pub(super) fn sliced(
    slices: usize,
    (la, va): (&Layout, &Layout),
    bop: &BOperand,
    batch: &Dims,
) -> (Layout, Layout, BOperand, Dims) {
    let ra = la.rank() - 2;
    let depth = bop.k / slices;
    let outer = |v: &Layout, step: usize| Layout {
        shape: std::iter::once(slices).chain(v.shape.iter().copied()).collect(),
        strides: std::iter::once(step).chain(v.strides.iter().copied()).collect(),
        offset: v.offset,
    };
    let mut la_s = la.clone();
    la_s.shape[ra + 1] = depth;
    let va_s = outer(va, depth * la.strides[ra + 1]);
    let bop_s = BOperand { view: outer(&bop.view, depth * bop.rs), k: depth, ..bop.clone() };
    let batch_s: Dims = std::iter::once(slices).chain(batch.iter().copied()).collect();
    (la_s, va_s, bop_s, batch_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiled kernel's products with few outputs and a long K take
    /// slices (the weight gradients of the sequence benches' Linear layers
    /// and of the LSTM's W_hh at 2048 tokens), products with enough
    /// outputs or a short K none, and a cap bounds the count. Fails when
    /// the rule changes (the docs quote its counts).
    #[test]
    fn the_rule_splits_products_with_few_outputs_and_a_long_k() {
        let cases = [
            // (batches, m, k, n), cap -> slices
            (((1, 256, 2048, 256), usize::MAX), 16),
            (((1, 768, 2048, 256), usize::MAX), 16),
            (((1, 1024, 2048, 256), usize::MAX), 8),
            (((1, 256, 2048, 1024), usize::MAX), 8),
            (((1, 768, 2048, 2304), usize::MAX), 2),
            (((1, 2048, 2048, 2048), usize::MAX), 1),
            (((1, 256, 96, 256), usize::MAX), 1),
            (((16, 256, 128, 256), usize::MAX), 1),
            (((1, 256, 2048, 256), 4), 4),
            (((1, 256, 2048, 256), 1), 1),
        ];
        for (((b, m, k, n), cap), want) in cases {
            assert_eq!(auto_slices((b, m, k, n), cap), want, "{b} x {m} x {k} x {n}, cap {cap}");
        }
    }
}
