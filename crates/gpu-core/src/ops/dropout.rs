//! Inverted-dropout masks (`shaders/dropout.wgsl`) from the counter-based
//! Philox stream of [`random`](super::random).
//!
//! Element `i` of `dropout_mask(n, p, seed, offset)` is `0.0` when
//! `u_i < p` (dropped) and `1 / (1 − p)` otherwise, where `u_i` is exactly
//! element `i` of `random::uniform(n, seed, offset, 0.0, 1.0)`. The
//! comparison is done in f32 on both sides, so GPU and CPU masks agree bit
//! for bit, and a mask consumes [`counters_used(n)`](super::random::counters_used)
//! counters like any other draw.

use super::random::{block, unit};
use super::{f32s_mut, groups, run, Params};
use crate::gpu::Launch;
use crate::{Buffer, Device, Error, Result};

/// An f32 mask of `n` elements: `0.0` with probability `p`, else `1 / (1 − p)`
/// (so `x · mask` keeps the expectation of `x`), from counters `offset ..`
/// under `seed`. `p = 1` drops everything (all zeros); `p` outside `[0, 1]`
/// is an error.
pub fn dropout_mask(device: &Device, n: usize, p: f32, seed: u64, offset: u64) -> Result<Buffer> {
    const OP: &str = "dropout";
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid(OP, format!("probability {p} must be in [0, 1]")));
    }
    // The kernel forms indices up to 4·ceil(n/4) in u32.
    super::check_u32(OP, n + 4)?;
    // u < 1 always, so p = 1 drops every element and the scale is never used.
    let scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
    let out = Buffer::alloc(device, n as u64 * 4)?;
    let quads = n.div_ceil(4);
    run(
        device,
        |g| {
            let params = Params::new()
                .u32(n)
                .u32(quads)
                .u32(seed as u32 as usize)
                .u32((seed >> 32) as usize)
                .u32(offset as u32 as usize)
                .u32((offset >> 32) as usize)
                .f32(p)
                .f32(scale);
            g.launch(&Launch {
                shader: "dropout",
                entry: "main",
                constants: &[],
                params: &params.0,
                inputs: &[],
                outputs: &[out.wgpu()],
                workgroups: groups(quads, 256),
            })
        },
        || {
            let mut h = out.host_mut();
            for (q, chunk) in f32s_mut(&mut h)[..n].chunks_mut(4).enumerate() {
                let w = block(seed, offset, q);
                for (y, &w) in chunk.iter_mut().zip(&w) {
                    *y = if unit(w) < p { 0.0 } else { scale };
                }
            }
        },
    )?;
    Ok(out)
}
