//! Storage of activations and operands: f32, or f16 in [`Buffer::from_f16`]'s
//! packed layout, which the kernels widen to f32 on load (mixed precision's
//! "f16 storage, f32 arithmetic"). Shared by the kernel families that take
//! f16 data (matmul and convolution operands, batch norm's activations, the
//! f16 inputs of softmax, cross-entropy, row norm and reductions), with the
//! CPU twins' widening and rounding.
//!
//! [`Buffer::from_f16`]: crate::Buffer::from_f16

use std::cell::Cell;

use half::f16;

use super::{f32s, f32s_mut};
use crate::gpu::GpuContext;
use crate::reservation::HostVec;
use crate::{Device, Error, Result};

/// How activations or operands are stored. Arithmetic is f32 either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Operands {
    /// f32, 4 bytes per element.
    #[default]
    F32,
    /// f16, 2 bytes per element in [`Buffer::from_f16`](crate::Buffer::from_f16)'s
    /// packed layout (element `2k` in the low half of word `k`). Elements are
    /// widened to f32 as they are loaded (exactly), so products, sums and
    /// every other operation are f32: mixed precision's "f16 inputs, f32
    /// math". Each op documents which of its buffers this covers and whether
    /// its results are f16 too (rounded to nearest even).
    F16,
}

impl Operands {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Operands::F32 => 4,
            Operands::F16 => 2,
        }
    }
}

/// How a GPU kernel reads f16 operands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HalfLoads {
    /// [`Native`](Self::Native) where the device has `SHADER_F16`,
    /// [`Packed`](Self::Packed) elsewhere.
    #[default]
    Auto,
    /// WGSL's `f16` type (`enable f16;`).
    Native,
    /// u32 words unpacked with `unpack2x16float`: runs on every adapter.
    Packed,
}

impl HalfLoads {
    /// Whether f16 data is read as WGSL's `f16` on `g` (true) or as packed
    /// u32 words (false); an error naming `op` for [`Native`](Self::Native)
    /// on an adapter without `SHADER_F16`.
    pub(crate) fn native(self, g: &GpuContext, op: &'static str) -> Result<bool> {
        let has = g.features.contains(wgpu::Features::SHADER_F16);
        match self {
            HalfLoads::Packed => Ok(false),
            HalfLoads::Auto => Ok(has),
            HalfLoads::Native if has => Ok(true),
            HalfLoads::Native => {
                Err(Error::invalid(op, format!("{} has no SHADER_F16 for native f16 loads", g.info.name)))
            }
        }
    }
}

thread_local! {
    static THREAD_HALF_LOADS: Cell<HalfLoads> = const { Cell::new(HalfLoads::Auto) };
}

/// Runs `f` with `loads` as this thread's way of reading f16 data in the
/// kernels that take an [`Operands`] without a configuration of their own
/// (batch norm, softmax, cross-entropy, row norm, reductions; matmul and
/// convolution use their config's `half_loads`),
/// then restores the previous choice (also when `f` panics). The default is
/// [`HalfLoads::Auto`]; tests and benchmarks use this to run both the
/// packed and the native kernels on one adapter. The choice is read when an
/// op is called, so it covers the ops called inside `f` on this thread.
pub fn with_half_loads<R>(loads: HalfLoads, f: impl FnOnce() -> R) -> R {
    struct Restore(HalfLoads);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_HALF_LOADS.with(|l| l.set(self.0));
        }
    }
    let _restore = Restore(THREAD_HALF_LOADS.with(|l| l.replace(loads)));
    f()
}

/// This thread's choice (see [`with_half_loads`]).
pub(crate) fn thread_half_loads() -> HalfLoads {
    THREAD_HALF_LOADS.with(|l| l.get())
}

/// f32 views of host words: borrowed for f32, widened (exactly) for f16, the
/// CPU twin of the kernels' loads. An f16 view has two elements per word
/// (an odd count's unused last half included). The widened copy is host
/// memory beside the buffer, taken under the budget of `device` (an
/// [`Error::OutOfMemory`] when it does not fit; see `memory.rs`).
pub(crate) fn host_f32<'a>(device: &Device, words: &'a [u32], storage: Operands) -> Result<HostF32<'a>> {
    Ok(match storage {
        Operands::F32 => HostF32::Borrowed(f32s(words)),
        Operands::F16 => {
            let halves: &[f16] = bytemuck::cast_slice(words);
            HostF32::Widened(HostVec::collect(device, halves.len(), halves.iter().map(|h| h.to_f32()))?)
        }
    })
}

/// What [`host_f32`] gives: the words themselves, or their widened copy.
pub(crate) enum HostF32<'a> {
    Borrowed(&'a [f32]),
    Widened(HostVec<f32>),
}

impl std::ops::Deref for HostF32<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            HostF32::Borrowed(v) => v,
            HostF32::Widened(v) => v,
        }
    }
}

/// An f32 view of the first `n` elements of an output's host words, the CPU
/// twin of the kernels' stores: the words themselves for f32; for f16 a
/// scratch vector (taken under the device's budget, as [`host_f32`]'s
/// copies) that [`finish`](Self::finish) rounds into them (to nearest
/// even, ±inf past ±65504, NaN stays NaN; an odd count's unused last half 0).
pub(crate) struct HostOutput<'a> {
    words: &'a mut [u32],
    n: usize,
    scratch: Option<HostVec<f32>>,
}

impl<'a> HostOutput<'a> {
    pub(crate) fn new(device: &Device, words: &'a mut [u32], n: usize, storage: Operands) -> Result<Self> {
        let scratch = match storage {
            Operands::F16 => Some(HostVec::filled(device, n, 0.0)?),
            Operands::F32 => None,
        };
        Ok(HostOutput { words, n, scratch })
    }

    /// The `n` values to fill.
    pub(crate) fn values(&mut self) -> &mut [f32] {
        match &mut self.scratch {
            Some(s) => s,
            None => &mut f32s_mut(self.words)[..self.n],
        }
    }

    /// Writes f16 values to the words (nothing to do for f32).
    pub(crate) fn finish(self) {
        if let Some(s) = self.scratch {
            let half = |v: Option<&f32>| v.map_or(0, |&v| f16::from_f32(v).to_bits() as u32);
            for (w, pair) in self.words.iter_mut().zip(s.chunks(2)) {
                *w = half(pair.first()) | half(pair.get(1)) << 16;
            }
        }
    }
}

/// The shader of a kernel whose input `x` is read through
/// the `load_x_f32` library (softmax, row norm, reduce, attention): `names[0]` for
/// f32 storage (or its variant reading `x` through a texture, where the
/// device wants that: CPU adapters, see `gpu/texture_operands.rs`),
/// `names[1]` (packed loads) or `names[2]` (WGSL's f16, by this thread's
/// [`HalfLoads`]) for f16.
pub(crate) fn load_x_shader(
    g: &GpuContext,
    names: [&'static str; 3],
    io: Operands,
    op: &'static str,
    x: &crate::Buffer,
) -> Result<&'static str> {
    Ok(match io {
        Operands::F32 => g.texture_variant(names[0], [x.len_bytes()]),
        Operands::F16 if thread_half_loads().native(g, op)? => names[2],
        Operands::F16 => names[1],
    })
}
