//! Counter-based random numbers (`shaders/random.wgsl`): Philox4x32-10, the
//! generator of Random123 (Salmon et al., SC'11) that cuRAND and PyTorch's
//! CUDA backend also use. Every number is a pure function of
//! `(seed, offset, i)`, so a GPU and the CPU backend produce the same stream
//! and no generator state lives on the device.
//!
//! The WGSL Philox is the include library `shaders/philox.wgsl`, shared with
//! the dropout masks of [`dropout_mask`].
//!
//! # The exact scheme
//!
//! Element `i` of a call with `seed` and `offset` is word `i % 4` of
//! `philox4x32_10(counter, key)` where
//!
//! * `counter` is the 128-bit value `offset + i / 4` (wrapping in 64 bits):
//!   words `[c as u32, (c >> 32) as u32, 0, 0]`, low word first;
//! * `key` is `[seed as u32, (seed >> 32) as u32]`.
//!
//! A call of `n` elements consumes counters `offset .. offset + ceil(n / 4)`
//! ([`counters_used`]); callers advance `offset` by that much to draw fresh
//! numbers with the same seed.
//!
//! Words become floats as follows:
//!
//! * [`uniform`]: `u = (w >> 8) · 2⁻²⁴` in `[0, 1)` (exact in f32), then
//!   `lo + (hi − lo) · u` — integer work plus two float operations, so GPU and
//!   CPU agree bit for bit;
//! * [`normal`]: Box–Muller on the word pairs (0, 1) and (2, 3) of each
//!   Philox output: `u1 = ((w0 >> 8) + 1) · 2⁻²⁴` in `(0, 1]` (never log 0),
//!   `u2 = (w1 >> 8) · 2⁻²⁴`, `r = √(−2 ln u1)`, elements `4q + 0, 1` are
//!   `mean + std · r · (cos 2πu2, sin 2πu2)`, likewise `4q + 2, 3` from words
//!   2 and 3. GPU `log`/`cos`/`sin` may differ from the CPU's by a few ulp.

use super::{f32s_mut, groups, run, Kind, Params, ParamsDecl};
use crate::gpu::Launch;
pub use crate::kernels::random::philox4x32_10;
use crate::kernels::random::Dist;
use crate::{Buffer, Device, Result};

/// `random.wgsl`'s uniform block.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "random",
    fields: &[
        ("n", Kind::U32),
        ("quads", Kind::U32),
        ("key0", Kind::U32),
        ("key1", Kind::U32),
        ("ctr0", Kind::U32),
        ("ctr1", Kind::U32),
        ("row", Kind::U32),
        ("a", Kind::F32),
        ("b", Kind::F32),
    ],
};

/// Counters one call of `n` elements consumes: advance `offset` by this for fresh numbers.
pub fn counters_used(n: usize) -> u64 {
    n.div_ceil(4) as u64
}

/// Where a draw's key and first counter come from.
#[derive(Clone, Copy)]
pub enum Counter<'a> {
    /// Given by value, in the launch's parameters.
    Value {
        /// The Philox key.
        seed: u64,
        /// The first counter block.
        offset: u64,
    },
    /// Row `row` of a device table of `[seed lo, seed hi, offset lo,
    /// offset hi]` u32 rows. The launch's parameters then hold only the
    /// row, so a recorded step's launches stay the same while a compiled
    /// step rewrites the table before each replay (autograd's
    /// `compiled_random.rs`).
    Row {
        /// The table, 16 bytes per row.
        table: &'a Buffer,
        /// Which row.
        row: usize,
    },
}

fn generate(device: &Device, dist: Dist, n: usize, counter: Counter, a: f32, b: f32) -> Result<Buffer> {
    // The kernel forms indices up to 4·ceil(n/4) in u32.
    super::check_u32("random", n + 4)?;
    if let Counter::Row { table, row } = counter {
        table.check_len("random", "counter table", (row + 1) * 4, 4)?;
    }
    let out = Buffer::alloc(device, n as u64 * 4)?;
    run(
        device,
        |g| {
            // Past the binding limit the buffer is written a window at a
            // time; windows start at multiples of 16 bytes (4 elements), so
            // each starts on a Philox block, whose counter is offset + block.
            for (start, len, window) in g.element_ranges(n, out.wgpu().size()) {
                let block = start as u64 / 4;
                let (entry, key, ctr, row, table) = match counter {
                    Counter::Value { seed, offset } => ("main", seed, offset.wrapping_add(block), 0, None),
                    Counter::Row { table, row } => ("from_table", 0, block, row, Some(table.wgpu())),
                };
                let params = Params::of(&PARAMS)
                    .set_u32("n", len)
                    .set_u32("quads", len.div_ceil(4))
                    .set_u32("key0", key as u32 as usize)
                    .set_u32("key1", (key >> 32) as usize)
                    .set_u32("ctr0", ctr as u32 as usize)
                    .set_u32("ctr1", (ctr >> 32) as usize)
                    .set_u32("row", row)
                    .set_f32("a", a)
                    .set_f32("b", b);
                let outputs: Vec<&wgpu::Buffer> = std::iter::once(out.wgpu()).chain(table).collect();
                let launch = Launch {
                    shader: "random",
                    entry,
                    constants: &[("DIST", dist as u32 as f64)],
                    params: params.finish(),
                    inputs: &[],
                    outputs: &outputs,
                    workgroups: groups(len.div_ceil(4), 256),
                };
                super::launch::dispatch_launch(g, &launch, &[window, None][..outputs.len()])?;
            }
            Ok(())
        },
        || {
            let (seed, offset) = match counter {
                Counter::Value { seed, offset } => (seed, offset),
                Counter::Row { table, row } => {
                    let w = &table.host()[row * 4..row * 4 + 4];
                    (w[0] as u64 | (w[1] as u64) << 32, w[2] as u64 | (w[3] as u64) << 32)
                }
            };
            dist.fill(seed, offset, (a, b), &mut f32s_mut(&mut out.host_mut())[..n]);
        },
    )?;
    Ok(out)
}

/// `n` f32 uniform in `[lo, hi)`, from counters `offset ..` under `seed`.
/// (`u < 1` always, but f32 rounding of `lo + (hi − lo)·u` can still land on `hi`.)
pub fn uniform(device: &Device, n: usize, seed: u64, offset: u64, lo: f32, hi: f32) -> Result<Buffer> {
    uniform_from(device, n, Counter::Value { seed, offset }, lo, hi)
}

/// [`uniform`] with its seed and offset from `counter`.
pub fn uniform_from(device: &Device, n: usize, counter: Counter, lo: f32, hi: f32) -> Result<Buffer> {
    generate(device, Dist::Uniform, n, counter, lo, hi - lo)
}

/// An inverted-dropout mask of `n` f32: `0.0` with probability `p`, else
/// `1 / (1 − p)` (so `x · mask` keeps the expectation of `x`). Element `i` is
/// dropped when element `i` of [`uniform`]`(n, seed, offset, 0, 1)` is below
/// `p`, compared in f32 on both backends, so GPU and CPU masks agree bit for
/// bit; a mask consumes [`counters_used`]`(n)` counters like any other draw.
/// `p = 1` drops everything; `p` outside `[0, 1]` is an error.
pub fn dropout_mask(device: &Device, n: usize, p: f32, seed: u64, offset: u64) -> Result<Buffer> {
    dropout_mask_from(device, n, p, Counter::Value { seed, offset })
}

/// [`dropout_mask`] with its seed and offset from `counter` (a compiled
/// step's table row).
pub fn dropout_mask_from(device: &Device, n: usize, p: f32, counter: Counter) -> Result<Buffer> {
    if !(0.0..=1.0).contains(&p) {
        return Err(crate::Error::invalid("dropout", format!("probability {p} must be in [0, 1]")));
    }
    // u < 1 always, so p = 1 drops every element and the scale is never used.
    let scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
    generate(device, Dist::Mask, n, counter, p, scale)
}

/// `n` f32 normal with `mean` and standard deviation `std`, from counters `offset ..` under `seed`.
pub fn normal(device: &Device, n: usize, seed: u64, offset: u64, mean: f32, std: f32) -> Result<Buffer> {
    normal_from(device, n, Counter::Value { seed, offset }, mean, std)
}

/// [`normal`] with its seed and offset from `counter`.
pub fn normal_from(device: &Device, n: usize, counter: Counter, mean: f32, std: f32) -> Result<Buffer> {
    generate(device, Dist::Normal, n, counter, mean, std)
}
