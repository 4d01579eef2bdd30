//! The output tile of one workgroup of each kernel family for a product's
//! shape, and the tuning knobs that replace the choice
//! (`WGRAD_MATMUL_TILE`, `WGRAD_MATMUL_MIN_WORKGROUPS`, `WGRAD_COOP_*`).

use crate::gpu::matrix_units::MatrixUnits;
use crate::gpu::GpuContext;
use crate::{Error, Result};

/// The output tile (rows, columns) of one workgroup for an `m` x `n`
/// product: the `TILE_M` x `TILE_N` overrides of `shaders/matmul.wgsl`. Few
/// rows (convolutions with 16 or 32 output channels) get flat tiles, so no
/// work goes to rows beyond M; wide products get 64 x 128 tiles (128
/// threads), which on an NVIDIA H100 ran twice as fast as 64 x 64 at 2048^3
/// and as fast at 1024^3 (docs/performance.md). The subgroup kernel's tile
/// is 64 columns wide, computed by one subgroup (`ROW_GROUPS` groups of 8
/// rows, see [`subgroup_row_groups`]); with buffer operands, products of
/// at most 32 columns get 32-column tiles (half the work: a one-channel
/// convolution's weight gradient has 9 columns). Texture operands always
/// take 64-column tiles: each narrow product was a pipeline of its own,
/// and a CPU adapter's cold first step is its pipelines' compile time
/// (docs/history/performance-issue-11.md, "Fewer, smaller kernels for a cold first step").
/// `WGRAD_MATMUL_TILE` replaces the tiled kernel's choice (see [`tile_override`]).
///
/// `WGRAD_MATMUL_MIN_WORKGROUPS` shrinks the tiles of launches with few
/// workgroups ([`tiled_tile`]).
pub(super) fn tile(subgroup: bool, reads: Reads, m: usize, n: usize, batches: usize) -> Result<(usize, usize)> {
    if subgroup {
        return Ok((8 * subgroup_row_groups(reads, m), if n <= 32 && reads == Reads::Buffers { 32 } else { 64 }));
    }
    if let Some(t) = tile_override().map_err(|e| Error::invalid("matmul", e))? {
        return Ok(t);
    }
    let min = min_workgroups().map_err(|e| Error::invalid("matmul", e))?;
    Ok(tiled_tile(m, n, batches, min))
}

/// The tiled kernel's tile for a launch of `batches` `m` x `n` products:
/// by shape, then smaller ([`smaller_tile`]) while the launch has fewer
/// than `min` workgroups. Off by default (`min` 0): on an H200 a compiled
/// ResNet-20 step ran 9-11% faster with every product on 32 x 64 tiles
/// (`WGRAD_MATMUL_TILE=32x64`), but 2-4% slower with this rule at minimums
/// of 512 to 4096 (before 16-row tiles shrank too), where an LSTM step
/// ran 9% faster (docs/performance.md, "Products with few workgroups").
pub(super) fn tiled_tile(m: usize, n: usize, batches: usize, min: usize) -> (usize, usize) {
    let mut t = match m {
        0..=16 => (16, 128),
        17..=32 => (32, 128),
        _ if n > 64 => (64, 128),
        _ => (64, 64),
    };
    while batches * m.div_ceil(t.0) * n.div_ceil(t.1) < min {
        match smaller_tile(t) {
            Some(s) => t = s,
            None => break,
        }
    }
    t
}

/// The next tile down for a launch with too few workgroups: half as many
/// columns, then half as many rows, down to 32 x 64 (32 threads, the
/// kernel's fewest); a 16-row tile becomes 32 x 64 (16 x 64 would be 16
/// threads): twice the workgroups, each computing rows past M it does not
/// store.
pub(super) fn smaller_tile(t: (usize, usize)) -> Option<(usize, usize)> {
    match t {
        (64, 128) => Some((64, 64)),
        (16, 128) | (32, 128) | (64, 64) => Some((32, 64)),
        _ => None,
    }
}

/// `WGRAD_MATMUL_MIN_WORKGROUPS` (a tuning knob like `WGRAD_MATMUL_TILE`),
/// else 0: no launch's tiles shrink.
pub(super) fn min_workgroups() -> std::result::Result<usize, String> {
    static MIN: std::sync::OnceLock<std::result::Result<usize, String>> = std::sync::OnceLock::new();
    MIN.get_or_init(|| match std::env::var("WGRAD_MATMUL_MIN_WORKGROUPS") {
        Err(_) => Ok(0),
        Ok(v) => v.trim().parse().map_err(|_| format!("WGRAD_MATMUL_MIN_WORKGROUPS={v:?} is not a number")),
    })
    .clone()
}

/// How a subgroup-kernel launch reads its operands, as far as its tile
/// goes (the tiled kernel ignores it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reads {
    /// Storage buffers.
    Buffers,
    /// Textures (the `operands_tex` library, CPU adapters), B a strided matrix;
    /// `small` when the product has fewer than [`SMALL_PRODUCT`]
    /// multiply-adds.
    Textures { small: bool },
    /// Textures, B gathered from a convolution's tensor (`B_CONV` > 0).
    ConvTextures,
}

/// Most groups of 8 rows one subgroup computes when its operands are
/// textures (the subgroup kernel's `ROW_GROUPS` goes up to 8, used with
/// buffer operands, whose stalling per-lane loads a 64-row block amortises
/// best). With texture operands a 64-row block ran no faster than a 32-row
/// one on lavapipe and took twice as long to compile: a cold ResNet-20
/// first step 46 -> 27 s, a cold Transformer step 26 -> 15 s, steps the
/// same within noise (docs/history/performance-issue-11.md, "Texture operands").
pub(super) const SUBGROUP_TEXTURE_ROW_GROUPS: usize = 4;

/// The same for a convolution's gathered products: 16 rows, so that
/// convolutions with 16, 32 and 64 output channels (ResNet-20's three
/// stages) share pipelines of half the code. A CPU adapter's cold first
/// step is mostly its pipelines' compile time: ResNet-20's fell from
/// 11.1-11.5 s to 4.7 s (with 64-column tiles only), for convolutions with
/// 64 output channels 15-20% slower (docs/history/performance-issue-11.md, "Fewer, smaller
/// kernels for a cold first step"). Plain products keep 32 rows: a
/// recurrent step's or attention's batch of 32 rows ran 10% slower in two
/// tiles; small ones ([`SMALL_PRODUCT`]) take 16 rows too.
pub(super) const SUBGROUP_CONV_TEXTURE_ROW_GROUPS: usize = 2;

/// Multiply-adds (over all batch entries of the launch) below which a
/// plain product read through textures takes the 16-row tiles of
/// convolutions: a classifier's products take well under a millisecond in
/// either tile, while each pipeline of their own cost ResNet-20's cold
/// first step 0.5-0.9 s.
pub(super) const SMALL_PRODUCT: usize = 1 << 20;

/// The subgroup kernel's largest `ROW_GROUPS` (its tile is 8 times as many
/// rows tall) for an `m`-row product read as `reads`: the texture caps
/// above, else 4 when 4 cover all rows, else 8.
pub(super) fn subgroup_row_groups(reads: Reads, m: usize) -> usize {
    match reads {
        Reads::ConvTextures | Reads::Textures { small: true } => SUBGROUP_CONV_TEXTURE_ROW_GROUPS,
        Reads::Textures { small: false } => SUBGROUP_TEXTURE_ROW_GROUPS,
        Reads::Buffers if m <= 32 => 4,
        Reads::Buffers => 8,
    }
}

/// `shaders/matmul.wgsl`'s register block (`TM` = `TN`) and staged depth
/// (`BK`); a test checks them against the shader.
pub(super) const TILED_BLOCK: usize = 8;
pub(super) const TILED_BK: usize = 16;

/// `shaders/matmul_coop.wgsl`'s staged depth (`CK`), the staged A tile's
/// row stride in halves (`A_STRIDE`; B's rows are `TILE_N` + the same 8
/// halves of padding) and the registers each thread stages a slice through
/// (`MAX_SLOTS` quads per operand); a test checks them against the shader.
pub(super) const COOP_DEPTH: usize = 32;
pub(super) const COOP_A_STRIDE: usize = 40;
pub(super) const COOP_MAX_SLOTS: usize = 16;

/// Whether the tiled kernel can run an `m` x `n` output tile: whole
/// register blocks, 32 to 256 threads, tile loads that divide evenly among
/// the threads, and both staged tiles within WebGPU's 16 KiB of workgroup
/// memory.
pub(super) fn tiled_fits(m: usize, n: usize) -> bool {
    let threads = (m / TILED_BLOCK) * (n / TILED_BLOCK);
    m.is_multiple_of(TILED_BLOCK)
        && n.is_multiple_of(TILED_BLOCK)
        && (32..=256).contains(&threads)
        && (TILED_BK * m / 4).is_multiple_of(threads)
        && (TILED_BK * n / 4).is_multiple_of(threads)
        && TILED_BK * (m + n) * 4 <= 16 << 10
}

/// `WGRAD_MATMUL_TILE=MxN` (e.g. `128x128`): one output tile for every
/// product of the tiled kernel, for tuning on a new GPU (`cargo bench
/// --bench matmul`); unset, [`tile`] picks by shape.
pub(super) fn tile_override() -> std::result::Result<Option<(usize, usize)>, String> {
    static TILE: std::sync::OnceLock<std::result::Result<Option<(usize, usize)>, String>> = std::sync::OnceLock::new();
    TILE.get_or_init(|| {
        let Ok(v) = std::env::var("WGRAD_MATMUL_TILE") else { return Ok(None) };
        let parsed = v.split_once('x').and_then(|(m, n)| Some((m.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((m, n)) if tiled_fits(m, n) => Ok(Some((m, n))),
            _ => Err(format!(
                "WGRAD_MATMUL_TILE={v:?} is not a tile the kernel can run: MxN, multiples of 8, \
                 32-256 threads (M/8 x N/8), M and N dividing 256, M + N <= 256"
            )),
        }
    })
    .clone()
}

/// A matrix-unit tile: rows and columns, the fragments' edge (`FR` in
/// `matmul_coop.wgsl`) and each subgroup's fragments along N (`FN`; two
/// fragments, 2 `FR` rows, along M).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CoopTile {
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) fragment: usize,
    pub(super) frags_n: usize,
}

impl CoopTile {
    /// Subgroups along rows and columns.
    pub(super) fn subgroups(self) -> (usize, usize) {
        (self.m / (2 * self.fragment), self.n / (self.fragment * self.frags_n))
    }
}

/// `WGRAD_COOP_FRAGS` (2 or 4): each subgroup's fragments along N where the
/// tile is wide enough; 2 when unset. Read once per process, like
/// [`tile_override`]: a product is recorded per launch.
pub(super) fn coop_frags() -> usize {
    static FRAGS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *FRAGS.get_or_init(|| match std::env::var("WGRAD_COOP_FRAGS").as_deref().map(str::trim) {
        Ok("4") => 4,
        _ => 2,
    })
}

/// `WGRAD_COOP_PREFETCH=0` loads each K slice of a matrix-unit product
/// after the barrier that ends the slice before, rather than while the
/// units multiply it (`PREFETCH` in `matmul_coop.wgsl`): for measuring.
/// Read once per process.
pub(super) fn coop_prefetch() -> bool {
    static PREFETCH: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PREFETCH.get_or_init(|| crate::env::switch("WGRAD_COOP_PREFETCH", true))
}

/// `WGRAD_COOP_TILE=MxN`, read once per process: the tile asked for, or
/// the text when it does not parse as one (an error at the first product).
pub(super) fn coop_tile_override() -> Option<std::result::Result<(usize, usize), &'static str>> {
    static TILE: std::sync::OnceLock<Option<std::result::Result<(usize, usize), String>>> = std::sync::OnceLock::new();
    let parsed = TILE.get_or_init(|| {
        let v = std::env::var("WGRAD_COOP_TILE").ok()?;
        let tile = v.split_once('x').and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
        Some(tile.ok_or(v))
    });
    parsed.as_ref().map(|r| r.as_ref().map(|t| *t).map_err(String::as_str))
}

/// The output tile of a matrix-unit product of `m` x `n` on `g`: 2
/// fragments' rows and [`coop_frags`] fragments' columns per subgroup
/// (32 x 32 with 16 x 16 fragments), as few subgroups as cover the
/// product, up to 128 x 128, within the adapter's workgroup limits;
/// `WGRAD_COOP_TILE=MxN` (M in 32, 64, 128; N in 32, 64, 128, 256: 128 x
/// 256 with `WGRAD_COOP_FRAGS=4` measured fastest on an H200 in an earlier
/// form of the kernel) replaces the choice.
pub(super) fn coop_tile(g: &GpuContext, units: MatrixUnits, m: usize, n: usize) -> Result<CoopTile> {
    let fragment = units.fragment as usize;
    let tile = |(tm, tn): (usize, usize)| {
        let frags_n = if tn >= fragment * coop_frags() { coop_frags() } else { 2 };
        CoopTile { m: tm, n: tn, fragment, frags_n }
    };
    let fits = |(tm, tn): (usize, usize)| {
        let (sm, sn) = tile((tm, tn)).subgroups();
        let threads = sm * sn * units.subgroup_size as usize;
        // Staged A and B slices as f16, one f32 fragment per subgroup.
        let pad = COOP_A_STRIDE - COOP_DEPTH;
        let bytes = tm * COOP_A_STRIDE * 2 + COOP_DEPTH * (tn + pad) * 2 + sm * sn * fragment * fragment * 4;
        // Each thread's share of a slice, in quads, fits its registers.
        let slots = |elements: usize| (elements / 4).div_ceil(threads) <= COOP_MAX_SLOTS;
        threads <= g.limits.max_compute_invocations_per_workgroup as usize
            && bytes <= g.limits.max_compute_workgroup_storage_size as usize
            && slots(tm * COOP_DEPTH)
            && slots(COOP_DEPTH * tn)
    };
    if let Some(asked) = coop_tile_override() {
        return match asked {
            Ok((tm, tn)) if [32, 64, 128].contains(&tm) && [32, 64, 128, 256].contains(&tn) && fits((tm, tn)) => {
                Ok(tile((tm, tn)))
            }
            _ => Err(Error::invalid(
                "matmul",
                format!(
                    "WGRAD_COOP_TILE={:?}: MxN with M in 32, 64, 128, N in 32 .. 256, within the adapter's workgroup \
                     limits",
                    asked.map_or_else(|v| v.to_string(), |(m, n)| format!("{m}x{n}"))
                ),
            )),
        };
    }
    let side = |len: usize| {
        if len <= 32 {
            32
        } else if len <= 64 {
            64
        } else {
            128
        }
    };
    let mut t = (side(m), side(n));
    while !fits(t) {
        if t.0 >= t.1 && t.0 > 32 {
            t.0 /= 2;
        } else if t.1 > 32 {
            t.1 /= 2;
        } else {
            return Err(Error::invalid("matmul", "the adapter's workgroup limits hold no matrix-unit tile"));
        }
    }
    Ok(tile(t))
}

#[cfg(test)]
mod tests {
    use super::super::family::SUBGROUP_LANES;
    use super::*;

    /// The matrix-unit kernel's staging constants, which the host's tile
    /// check (`coop_tile`) counts with, are the shader's.
    #[test]
    fn host_coop_constants_are_the_shaders() {
        for coop in ["matmul_coop", "matmul_coop8"] {
            let constant = |c: &str| crate::shaders::u32_constant(coop, c);
            assert_eq!(
                (constant("CK"), constant("A_STRIDE"), constant("MAX_SLOTS")),
                (COOP_DEPTH, COOP_A_STRIDE, COOP_MAX_SLOTS),
                "{coop}"
            );
        }
    }
    /// The shaders' default tiles are 64 x 64, and every tile the host picks
    /// fits the kernels: whole register blocks, loads that divide among the
    /// threads, workgroup memory within WebGPU's 16 KiB, and for the subgroup
    /// kernel its 64-column (32 for narrow products), 8-rows-per-group shape.
    #[test]
    fn host_tiles_fit_the_shaders() {
        for name in ["matmul", "matmul_subgroup"] {
            let src = crate::shaders::source(name);
            let module = naga::front::wgsl::parse_str(&src).expect("matmul shaders parse");
            let default = |c: &str| {
                let (_, o) = module.overrides.iter().find(|(_, o)| o.name.as_deref() == Some(c)).expect(c);
                match module.global_expressions[o.init.expect("a default")] {
                    naga::Expression::Literal(naga::Literal::U32(v)) => v as usize,
                    ref e => panic!("{c} is not a u32 literal: {e:?}"),
                }
            };
            assert_eq!((default("TILE_M"), default("TILE_N")), (64, 64), "{name}");
            let constant = |c: &str| crate::shaders::u32_constant(name, c);
            if name == "matmul_subgroup" {
                assert_eq!(constant("LANES"), SUBGROUP_LANES as usize);
            }
            if name == "matmul" {
                assert_eq!((constant("TM"), constant("TN"), constant("BK")), (TILED_BLOCK, TILED_BLOCK, TILED_BK));
            }
            for (m, n) in [1, 16, 17, 32, 33, 64, 1000].into_iter().flat_map(|m| [(m, 1), (m, 64), (m, 65), (m, 4096)])
            {
                let sub = name == "matmul_subgroup";
                let textures = [Reads::Textures { small: false }, Reads::Textures { small: true }];
                for reads in [Reads::Buffers, Reads::ConvTextures].into_iter().chain(textures) {
                    let (tile_m, tile_n) = tile(sub, reads, m, n, 1).unwrap();
                    if sub {
                        let groups = subgroup_row_groups(reads, m);
                        let width = if n <= 32 && reads == Reads::Buffers { 32 } else { 64 };
                        assert!(tile_n == width && tile_m % 8 == 0 && tile_m / 8 <= groups, "{m} x {n}");
                        assert!(groups <= 8, "the shader has 8 row groups at most");
                    } else {
                        assert!(tiled_fits(tile_m, tile_n), "{m} x {n}: {tile_m} x {tile_n}");
                    }
                }
                let (tile_m, tile_n) = tile(sub, Reads::Buffers, m, n, 1).unwrap();
                if sub {
                    assert_eq!(tile_n, if n <= 32 { 32 } else { 64 }, "{m} x {n}");
                } else {
                    assert!(tiled_fits(tile_m, tile_n), "{m} x {n}: {tile_m} x {tile_n}");
                }
            }
        }
        // The tiles worth trying on big GPUs fit; odd ones do not.
        for (m, n) in [(128, 128), (64, 128), (128, 64), (16, 128)] {
            assert!(tiled_fits(m, n), "{m} x {n}");
        }
        for (m, n) in [(256, 128), (8, 8), (48, 64), (64, 20)] {
            assert!(!tiled_fits(m, n), "{m} x {n}");
        }
    }
    /// Launches with few workgroups take smaller tiles down to 32 x 64,
    /// each one the kernel can run; with no minimum the shape rule stands.
    #[test]
    fn few_workgroups_shrink_the_tile() {
        for (m, n) in [(16, 1024), (32, 1024), (64, 64), (256, 1024), (2048, 2048)] {
            let by_shape = tiled_tile(m, n, 1, 0);
            assert_eq!(tiled_tile(m, n, 1 << 20, 4096), by_shape, "{m} x {n}: enough workgroups");
            let small = tiled_tile(m, n, 1, usize::MAX);
            assert_eq!(small, (32, 64), "{m} x {n}");
            for min in [0, 64, 512, 4096] {
                let t = tiled_tile(m, n, 4, min);
                assert!(tiled_fits(t.0, t.1), "{m} x {n}, min {min}: {t:?}");
                let count = |t: (usize, usize)| 4 * m.div_ceil(t.0) * n.div_ceil(t.1);
                assert!(count(t) >= min || t == small, "{m} x {n}, min {min}: {t:?} stopped early");
            }
        }
        // An LSTM step's [32 x 1024] gate product: 8 workgroups on 32 x 128
        // tiles, 16 on 32 x 64.
        assert_eq!(tiled_tile(32, 1024, 1, 0), (32, 128));
        assert_eq!(tiled_tile(32, 1024, 1, 16), (32, 64));
        assert_eq!(tiled_tile(2048, 2048, 1, 512), (64, 128));
        assert_eq!(tiled_tile(2048, 2048, 1, 1024), (64, 64));
    }
    /// With texture operands (CPU adapters) a model's convolutions with
    /// 16, 32 and 64 output channels take the same tile, so they share
    /// pipelines (a cold first step is their compile time), as do narrow
    /// and wide products; large plain products keep 32-row tiles.
    #[test]
    fn texture_products_share_tiles_across_channel_counts() {
        let rows = |reads, m: usize| 8 * m.div_ceil(8).min(subgroup_row_groups(reads, m));
        for m in [16, 32, 64] {
            assert_eq!(rows(Reads::ConvTextures, m), 16, "{m} output channels");
            assert_eq!(rows(Reads::Textures { small: true }, m), 16, "{m} rows");
        }
        assert_eq!(rows(Reads::Textures { small: false }, 32), 32);
        for reads in [Reads::ConvTextures, Reads::Textures { small: true }, Reads::Textures { small: false }] {
            assert_eq!(tile(true, reads, 16, 9, 1).unwrap().1, 64, "{reads:?}");
        }
        assert_eq!(tile(true, Reads::Buffers, 16, 9, 1).unwrap().1, 32);
    }
}
