//! Philox4x32-10 and the distributions drawn from it: the reference twin
//! of `shaders/random.wgsl` and of the augmentations' draws. The scheme
//! (counters, keys, how words become floats) is in `ops/random.rs`'s
//! module docs; the launches are there.

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

/// The four Philox words for counter `offset + q` under `seed`.
pub(crate) fn block(seed: u64, offset: u64, q: usize) -> [u32; 4] {
    let c = offset.wrapping_add(q as u64);
    philox4x32_10([c as u32, (c >> 32) as u32, 0, 0], [seed as u32, (seed >> 32) as u32])
}

/// The top 24 bits of `w` as a float in `[0, 1)`, exactly.
pub(crate) fn unit(w: u32) -> f32 {
    (w >> 8) as f32 * TWO_POW_M24
}

/// The distributions of `random.wgsl`: its `DIST` override.
#[derive(Clone, Copy)]
pub(crate) enum Dist {
    Uniform,
    Normal,
    Mask,
}

impl Dist {
    /// Four outputs from one Philox block, given the kernel's (a, b) uniforms.
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

    /// The reference draw (`torch.rand`/`randn`-like, and dropout's
    /// mask, under the module doc's scheme): element `i` of `out` is word
    /// `i % 4` of block `offset + i / 4` under `seed`, mapped with the
    /// kernel's (a, b) uniforms.
    pub(crate) fn fill(self, seed: u64, offset: u64, (a, b): (f32, f32), out: &mut [f32]) {
        for (q, chunk) in out.chunks_mut(4).enumerate() {
            let v = self.map(block(seed, offset, q), a, b);
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}
