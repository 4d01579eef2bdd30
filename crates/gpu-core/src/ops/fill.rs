//! Constant fill and arange (`shaders/fill.wgsl`).

use super::{dispatch, f32s_mut, groups, run, Kind, Params, ParamsDecl};
use crate::gpu::Launch;
use crate::kernels::fill::arange_at;
use crate::{Buffer, Device, Result};

/// `fill.wgsl`'s `Params`: the count and the entry's two constants.
pub(crate) const PARAMS: ParamsDecl =
    ParamsDecl { shader: "fill", fields: &[("n", Kind::U32), ("a", Kind::F32), ("b", Kind::F32), ("base", Kind::U32)] };

/// Fills a new buffer of `n` f32 with `entry` of `fill.wgsl`, or with `cpu(i)` on the CPU backend.
fn launch(
    device: &Device,
    entry: &'static str,
    n: usize,
    a: f32,
    b: f32,
    cpu: impl Fn(usize) -> f32 + Sync,
) -> Result<Buffer> {
    super::check_u32("fill", n)?;
    // Both paths write all n values: a CPU pool's vector need not be cleared first.
    let out = Buffer::alloc_overwritten(device, n as u64 * 4)?;
    run(
        device,
        |g| {
            let params =
                |n, base| Params::of(&PARAMS).set_u32("n", n).set_f32("a", a).set_f32("b", b).set_u32("base", base);
            if out.wgpu().size() <= g.binding_limit() {
                return dispatch(g, "fill", entry, &[], &params(n, 0), &[], &[&out], groups(n, 256));
            }
            // Past the binding limit: a window at a time, each launch told
            // the index its window starts at (arange's values depend on it).
            for (start, len, window) in g.element_ranges(n, out.wgpu().size()) {
                let params = params(len, start);
                let launch = Launch {
                    shader: "fill",
                    entry,
                    constants: &[],
                    params: params.finish(),
                    inputs: &[],
                    outputs: &[out.wgpu()],
                    workgroups: groups(len, 256),
                };
                super::launch::dispatch_launch(g, &launch, &[window])?;
            }
            Ok(())
        },
        || {
            let mut h = out.host_mut();
            // On all cores for the fast backend (a gradient's zeros are
            // megabytes); each value depends only on its index.
            let grain = if device.runs_fast_cpu() { crate::cpu::GRAIN } else { usize::MAX };
            crate::cpu::par_chunks(&mut f32s_mut(&mut h)[..n], 1, grain, |start, ys| {
                for (i, y) in ys.iter_mut().enumerate() {
                    *y = cpu(start + i);
                }
            });
        },
    )?;
    Ok(out)
}

/// `n` copies of `value` (in ranges of elements, one launch each, when the
/// buffer is past the device's binding limit).
pub fn fill(device: &Device, n: usize, value: f32) -> Result<Buffer> {
    launch(device, "fill", n, value, 0.0, |_| value)
}

/// `start, start + step, ...` (`n` values), computed as `start + i * step`
/// like PyTorch (in ranges of elements past the binding limit, as [`fill`]).
pub fn arange(device: &Device, n: usize, start: f32, step: f32) -> Result<Buffer> {
    launch(device, "arange", n, start, step, |i| arange_at(start, step, i))
}
