//! The positions that sort a dim (`shaders/argsort.wgsl`): `torch.argsort`
//! with `stable=True`, and so `sort` and `topk` (the values are a `gather`
//! at these positions, whose gradient needs nothing new).
//!
//! On a GPU one workgroup sorts each fiber with a bitonic network on (key,
//! position) pairs in a scratch buffer; every pair differs, so the result
//! is the CPU twin's exactly. A long fiber is one workgroup's work (about
//! log²n / 2 passes over it): fine for a vocabulary's logits, slow for a
//! million elements in one fiber.

use super::chunks::by_rows;
use super::fibers::Fibers;
use super::{check_u32, groups, run, Kind, Params, ParamsDecl};
use crate::kernels::argsort as twin;
use crate::{Buffer, Result};

/// `argsort.wgsl`'s `Params`.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "argsort",
    fields: &[
        ("fibers", Kind::U32),
        ("n", Kind::U32),
        ("inner", Kind::U32),
        ("pow2", Kind::U32),
        ("descending", Kind::U32),
    ],
};

/// The u32 positions that sort the dense f32 buffer `x` of `shape` along
/// `dim`, ascending or largest first; equal values keep their order (a
/// stable sort), NaN sorts above every number and -0.0 equals 0.0, as in
/// PyTorch. Same shape as `x`.
pub fn argsort(x: &Buffer, shape: &[usize], dim: usize, descending: bool) -> Result<Buffer> {
    const OP: &str = "argsort";
    let Fibers { outer, n, inner } = Fibers::around(OP, x, shape, dim)?;
    let numel = outer * n * inner;
    let idx = Buffer::alloc(x.device(), numel as u64 * 4)?;
    if numel == 0 {
        return Ok(idx);
    }
    let dev = x.device();
    run(
        dev,
        |g| {
            let pow2 = n.next_power_of_two().max(2);
            check_u32(OP, outer * inner * 2 * pow2)?;
            let keys = Buffer::alloc(dev, (outer * inner * 2 * pow2) as u64 * 4)?;
            let launch = |rows: usize, ins: &[&Buffer], outs: &[&Buffer]| {
                let fibers = rows * inner;
                let params = Params::of(&PARAMS)
                    .set_u32("fibers", fibers)
                    .set_u32("n", n)
                    .set_u32("inner", inner)
                    .set_u32("pow2", pow2)
                    .set_u32("descending", descending as usize);
                super::dispatch(g, "argsort", "main", &[], &params, ins, outs, groups(fibers, 1))
            };
            // Outer slices are independent: past the binding limit, chunks
            // of them (the keys, a scratch, counted as an output).
            if super::past_limit(g, [x, &idx, &keys]) {
                let what = format!("{OP}: one slice of {shape:?} along dim {dim}");
                return by_rows(g, &what, outer, &[x], &[&idx, &keys], launch);
            }
            launch(outer, &[x], &[&idx, &keys])
        },
        || {
            let f = Fibers { outer, n, inner };
            f.per_block(dev, x, &idx, |x, ids: &mut [u32]| twin::argsort_block(n, inner, descending, x, ids))
        },
    )?;
    Ok(idx)
}
