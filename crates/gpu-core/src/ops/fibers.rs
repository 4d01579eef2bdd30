//! The ops that work along the fibers of one dim of a dense tensor (cumsum,
//! argsort): its shape seen as `[outer, n, inner]` around the dim, checked
//! once, and the CPU side's loop over the outer blocks.

use bytemuck::Pod;

use super::check_u32;
use crate::cpu::per_row;
use crate::{Buffer, Device, Error, Result};

/// A dense shape around one dim: `outer` blocks of `n` rows of `inner`
/// elements, `outer · inner` fibers of `n` elements.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fibers {
    pub outer: usize,
    pub n: usize,
    pub inner: usize,
}

impl Fibers {
    /// `shape` around `dim` for `op` on the f32 buffer `x`: `dim` in range,
    /// the elements within the kernels' u32 arithmetic, `x` holding them.
    pub fn around(op: &'static str, x: &Buffer, shape: &[usize], dim: usize) -> Result<Fibers> {
        if dim >= shape.len() {
            return Err(Error::invalid(op, format!("dim {dim} out of range for shape {shape:?}")));
        }
        let f =
            Fibers { outer: shape[..dim].iter().product(), n: shape[dim], inner: shape[dim + 1..].iter().product() };
        check_u32(op, f.numel())?;
        x.check_len(op, "input", f.numel(), 4)?;
        Ok(f)
    }

    /// Elements in all.
    pub fn numel(&self) -> usize {
        self.outer * self.n * self.inner
    }

    /// The CPU side: `block(src, dst)` on each outer block of the f32
    /// buffer `src` and its words in `dst` (f32 or u32), on all cores on
    /// the fast backend.
    pub fn per_block<U: Pod + Send>(
        &self,
        dev: &Device,
        src: &Buffer,
        dst: &Buffer,
        block: impl Fn(&[f32], &mut [U]) + Sync,
    ) {
        let (xs, mut ys) = (src.host(), dst.host_mut());
        let (xs, ys): (&[f32], &mut [U]) = (bytemuck::cast_slice(&xs), bytemuck::cast_slice_mut(&mut ys));
        let len = self.n * self.inner;
        per_row(dev.runs_fast_cpu(), (&mut ys[..self.numel()], len), |o, y| block(&xs[o * len..][..len], y));
    }
}
