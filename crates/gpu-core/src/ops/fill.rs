//! Constant fill and arange (`shaders/fill.wgsl`).

use super::{f32s_mut, groups, run, Params};
use crate::gpu::Launch;
use crate::{Buffer, Device, Result};

fn launch(
    device: &Device,
    entry: &'static str,
    n: usize,
    a: f32,
    b: f32,
    cpu: impl Fn(usize) -> f32,
) -> Result<Buffer> {
    super::check_u32("fill", n)?;
    let out = Buffer::alloc(device, n as u64 * 4)?;
    run(
        device,
        |g| {
            g.launch(&Launch {
                shader: "fill",
                entry,
                constants: &[],
                params: &Params::new().u32(n).f32(a).f32(b).0,
                inputs: &[],
                outputs: &[out.wgpu()],
                workgroups: groups(n, 256),
            })
        },
        || {
            let mut h = out.host_mut();
            for (i, y) in f32s_mut(&mut h)[..n].iter_mut().enumerate() {
                *y = cpu(i);
            }
        },
    )?;
    Ok(out)
}

/// `n` copies of `value`.
pub fn fill(device: &Device, n: usize, value: f32) -> Result<Buffer> {
    launch(device, "fill", n, value, 0.0, |_| value)
}

/// `start, start + step, ...` (`n` values), computed as `start + i * step` like PyTorch.
pub fn arange(device: &Device, n: usize, start: f32, step: f32) -> Result<Buffer> {
    launch(device, "arange", n, start, step, |i| start + i as f32 * step)
}
