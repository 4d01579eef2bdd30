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

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// 2⁻²⁴: maps a 24-bit integer into [0, 1) exactly.
const TWO_POW_M24: f32 = 1.0 / 16_777_216.0;

/// The Philox4x32-10 block function (Random123's `philox4x32(ctr, key)` with 10 rounds).
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mulhilo = |a: u32, b: u32| {
        let p = a as u64 * b as u64;
        ((p >> 32) as u32, p as u32)
    };
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(PHILOX_W0), k[1].wrapping_add(PHILOX_W1)];
        }
        let (hi0, lo0) = mulhilo(PHILOX_M0, c[0]);
        let (hi1, lo1) = mulhilo(PHILOX_M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Counters one call of `n` elements consumes: advance `offset` by this for fresh numbers.
pub fn counters_used(n: usize) -> u64 {
    n.div_ceil(4) as u64
}

/// The four Philox words for counter `offset + q` under `seed`.
pub(crate) fn block(seed: u64, offset: u64, q: usize) -> [u32; 4] {
    let c = offset.wrapping_add(q as u64);
    philox4x32_10([c as u32, (c >> 32) as u32, 0, 0], [seed as u32, (seed >> 32) as u32])
}

pub(crate) fn unit(w: u32) -> f32 {
    (w >> 8) as f32 * TWO_POW_M24
}

/// The distributions of `random.wgsl`: its `DIST` override.
#[derive(Clone, Copy)]
enum Dist {
    Uniform,
    Normal,
    Mask,
}

impl Dist {
    /// The CPU twin: four outputs from one Philox block, given the kernel's (a, b) uniforms.
    fn map(self, w: [u32; 4], a: f32, b: f32) -> [f32; 4] {
        match self {
            Dist::Uniform => w.map(|w| a + b * unit(w)),
            Dist::Mask => w.map(|w| if unit(w) < a { 0.0 } else { b }),
            Dist::Normal => {
                let pair = |w0: u32, w1: u32| {
                    let r = (-2.0 * (((w0 >> 8) + 1) as f32 * TWO_POW_M24).ln()).sqrt();
                    let t = std::f32::consts::TAU * unit(w1);
                    (a + b * (r * t.cos()), a + b * (r * t.sin()))
                };
                let (z0, z1) = pair(w[0], w[1]);
                let (z2, z3) = pair(w[2], w[3]);
                [z0, z1, z2, z3]
            }
        }
    }
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
            let mut h = out.host_mut();
            for (q, chunk) in f32s_mut(&mut h)[..n].chunks_mut(4).enumerate() {
                let v = dist.map(block(seed, offset, q), a, b);
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
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
