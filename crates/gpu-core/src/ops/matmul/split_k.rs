//! Products with few outputs and a long K, run as products over slices of
//! K and their sum in slice order (docs/internals/gpu-core.md, "Products
//! in slices of K"): the rule, the sliced views, and the slicing
//! arithmetic and knob (`WGRAD_MATMUL_SPLIT_K`) that a recurrent layer's
//! per-step products share (`recurrent::step_slices`, whose cell kernel
//! adds the slices).

use super::family::{Family, MatmulConfig, SplitK};
use crate::buffer::Buffer;
use crate::kernels::matmul::BOperand;
use crate::layout::{Dims, Layout};
use crate::ops::epilogue::Epilogue;
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
    let cap = cap().map_err(|e| Error::invalid("matmul", e))?;
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

/// The fewest equal slices of `k` that reach `want`, each at least
/// `depth` deep and at most `cap` of them; where K allows no more, as many
/// as it does; 1 (K whole) where `want` is 1 or K has no such divisor.
pub(crate) fn slices_for(k: usize, want: usize, depth: usize, cap: usize) -> usize {
    if want <= 1 {
        return 1;
    }
    let most = (k / depth.max(1)).min(cap);
    (want..=most).find(|s| k.is_multiple_of(*s)).unwrap_or_else(|| largest_divisor(k, most))
}

/// The largest divisor of `k` up to `n` (at least 1): the count of equal
/// slices a forced count gives.
pub(crate) fn largest_divisor(k: usize, n: usize) -> usize {
    (1..=n.min(k).max(1)).rev().find(|s| k.is_multiple_of(*s)).unwrap_or(1)
}

/// `WGRAD_MATMUL_SPLIT_K`, the cap on every product's slices (a tuning
/// knob like `WGRAD_MATMUL_TILE`; `matmul::k_slices` says where it
/// applies): `None` when unset, an error for anything but a count of at
/// least 1. Read once.
pub(crate) fn cap() -> Result<Option<usize>, String> {
    static CAP: std::sync::OnceLock<Result<Option<usize>, String>> = std::sync::OnceLock::new();
    CAP.get_or_init(|| match std::env::var("WGRAD_MATMUL_SPLIT_K") {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(format!("WGRAD_MATMUL_SPLIT_K={v:?} is not a count of at least 1")),
        },
    })
    .clone()
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

    #[test]
    fn slices_divide_k_reach_the_want_and_keep_their_depth() {
        assert_eq!(largest_divisor(1024, 32), 32);
        assert_eq!(largest_divisor(100, 32), 25);
        assert_eq!(largest_divisor(7, 4), 1);
        assert_eq!(largest_divisor(3, 8), 3);
        assert_eq!(largest_divisor(5, 0), 1);
        // (k, want, depth, cap) -> slices; the recurrent and matmul rules'
        // tests check the counts their products get.
        let cases = [
            ((1024, 1, 32, usize::MAX), 1),
            // The fewest that reach the want: 11 is no divisor of 2048, 16 is.
            ((2048, 11, 128, usize::MAX), 16),
            // 2048 at depth 128 allows 16, short of 32; a cap of 12 allows 8.
            ((2048, 32, 128, usize::MAX), 16),
            ((2048, 32, 128, 12), 8),
            // K = 96 at depth 32: 3 slices, a divisor.
            ((96, 4, 32, usize::MAX), 3),
        ];
        for ((k, want, depth, cap), slices) in cases {
            assert_eq!(slices_for(k, want, depth, cap), slices, "k {k}, want {want}, depth {depth}, cap {cap}");
        }
    }
}
