//! Element type casts (`shaders/cast.wgsl`): f32 ↔ f16 on packed f16
//! storage (2 bytes per element, element `2k` in the low half of word `k`,
//! and an odd count leaves the last word's high half zero: the layout of
//! [`Buffer::from_f16`] / [`Buffer::to_f16`]), and u32 ↔ f32 with Rust's
//! `as` semantics (nearest, ties to even; truncating and saturating).
//!
//! The kernels use WGSL's core `pack2x16float` / `unpack2x16float` on u32
//! words rather than the `f16` type, so they run on every adapter, with or
//! without the `SHADER_F16` feature. Because WGSL leaves `pack2x16float`
//! undefined outside f16's finite range, the kernel maps overflow to ±inf and
//! NaN to a quiet NaN itself; in range it rounds to nearest even like the CPU
//! twin (the `half` crate).
//!
//! The two float casts are elementwise launches the fuser may merge with
//! their neighbours on a GPU (`gpu/fusion.rs`): a widen into the kernel that
//! consumes it (which then reads the f16 input directly), a narrow as the
//! packed store of the kernel that produces its input. The CPU backend runs
//! them eagerly, as it runs everything.

use super::{dispatch, dispatch_fusable, groups, run, Kind, Params, ParamsDecl};
use crate::gpu::fusion::{Access, Fusable, Node};
use crate::kernels::cast as twin;
use crate::{Buffer, Result};

/// `cast.wgsl`'s `Params`: the element count.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl { shader: "cast", fields: &[("n", Kind::U32)] };

/// Launches one entry of `cast.wgsl` with `threads` threads (deferred for
/// the fuser as `fuse` when given), or runs `cpu` on the CPU backend.
fn launch(
    (entry, fuse): (&'static str, Option<Node>),
    x: &Buffer,
    out: &Buffer,
    (n, threads): (usize, usize),
    cpu: impl FnOnce(&[u32], &mut [u32]),
) -> Result<()> {
    // Threads form element indices 2k up to n + 2·255 in u32.
    super::check_u32(entry, n + 512)?;
    run(
        x.device(),
        |g| {
            let params = Params::of(&PARAMS).set_u32("n", n);
            let workgroups = groups(threads, 256);
            match fuse {
                Some(node) => {
                    let what = Fusable { node, n, access: smallvec::smallvec![Access::Dense] };
                    dispatch_fusable(g, "cast", entry, &[], &params, &[x], out, workgroups, what)
                }
                None => dispatch(g, "cast", entry, &[], &params, &[x], &[out], workgroups),
            }
        },
        || cpu(&x.host(), &mut out.host_mut()),
    )
}

/// The first `n` f32 of `x` rounded (to nearest even) into a new packed f16
/// buffer of `2n` bytes; values beyond ±65504 become ±inf.
pub fn f32_to_f16(x: &Buffer, n: usize) -> Result<Buffer> {
    x.check_len("f32_to_f16", "input", n, 4)?;
    let out = Buffer::alloc(x.device(), n as u64 * 2)?;
    launch(("f32_to_f16", Some(Node::Narrow)), x, &out, (n, n.div_ceil(2)), |xs, ys| {
        twin::f32_to_f16(bytemuck::cast_slice(&xs[..n]), ys)
    })?;
    Ok(out)
}

/// The first `n` f16 of the packed buffer `x` widened (exactly) into a new f32 buffer.
pub fn f16_to_f32(x: &Buffer, n: usize) -> Result<Buffer> {
    x.check_len("f16_to_f32", "input", n, 2)?;
    let out = Buffer::alloc(x.device(), n as u64 * 4)?;
    launch(("f16_to_f32", Some(Node::Widen)), x, &out, (n, n.div_ceil(2)), |xs, ys| {
        twin::f16_to_f32(xs, &mut ys[..n])
    })?;
    Ok(out)
}

/// The first `n` u32 of `x` as f32: the nearest value, ties to even (exact
/// below 2^24), like Rust's `as f32`.
pub fn u32_to_f32(x: &Buffer, n: usize) -> Result<Buffer> {
    word_cast("u32_to_f32", x, n, twin::u32_to_f32)
}

/// The first `n` f32 of `x` as u32, like Rust's `as u32`: truncated toward
/// zero, NaN and negatives 0, 2^32 and above `u32::MAX`.
pub fn f32_to_u32(x: &Buffer, n: usize) -> Result<Buffer> {
    word_cast("f32_to_u32", x, n, twin::f32_to_u32)
}

/// A 4-byte to 4-byte cast, one thread per element; `twin` maps one word.
fn word_cast(entry: &'static str, x: &Buffer, n: usize, twin: fn(u32) -> u32) -> Result<Buffer> {
    x.check_len(entry, "input", n, 4)?;
    let out = Buffer::alloc(x.device(), n as u64 * 4)?;
    launch((entry, None), x, &out, (n, n), |xs, ys| {
        for (y, &v) in ys[..n].iter_mut().zip(&xs[..n]) {
            *y = twin(v);
        }
    })?;
    Ok(out)
}
