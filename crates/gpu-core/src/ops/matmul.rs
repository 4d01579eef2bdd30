//! Batched matrix product with NumPy batch broadcasting (`shaders/matmul.wgsl`).
//!
//! Operands are strided views: a transposed operand is a permuted [`Layout`]
//! and is read in place, never copied.

use super::{f32s, f32s_mut, run, Params};
use crate::gpu::Launch;
use crate::layout::{broadcast_shapes, coalesce, numel, Layout};
use crate::{Buffer, Error, Result};

/// Output rows per workgroup (`BM = TM * WM` in `shaders/matmul.wgsl`).
const BM: usize = 64;
/// Output columns per workgroup (`BN = TN * WN` in `shaders/matmul.wgsl`).
const BN: usize = 64;

/// The broadcast batch shape and each operand's view of it, or an error
/// naming both shapes.
fn check_shapes(la: &Layout, lb: &Layout) -> Result<(Vec<usize>, Layout, Layout)> {
    let shapes = || format!("{:?} and {:?}", la.shape, lb.shape);
    if la.rank() < 2 || lb.rank() < 2 {
        return Err(Error::invalid(
            "matmul",
            format!("operands must have rank >= 2 ([..batch, M, K] @ [..batch, K, N]), got shapes {}", shapes()),
        ));
    }
    let (ra, rb) = (la.rank() - 2, lb.rank() - 2);
    if la.shape[ra + 1] != lb.shape[rb] {
        return Err(Error::invalid(
            "matmul",
            format!(
                "inner dimensions differ ({} vs {}) for shapes {}",
                la.shape[ra + 1],
                lb.shape[rb],
                shapes()
            ),
        ));
    }
    let batch = broadcast_shapes(&la.shape[..ra], &lb.shape[..rb]).ok_or_else(|| {
        Error::invalid("matmul", format!("batch dimensions cannot be broadcast together for shapes {}", shapes()))
    })?;
    // Each operand's batch dims as a view over the broadcast batch shape
    // (stride 0 where it broadcasts); its offset is that of the operand.
    let view = |l: &Layout, r: usize| {
        Layout { shape: l.shape[..r].to_vec(), strides: l.strides[..r].to_vec(), offset: l.offset }.broadcast_to(&batch)
    };
    Ok((batch.clone(), view(la, ra)?, view(lb, rb)?))
}

/// `a @ b` for `a` viewed as `[..batch, M, K]` and `b` as `[..batch, K, N]`
/// (rank ≥ 2 each; batch dims broadcast like NumPy). Returns the result,
/// contiguous, and its shape `[..broadcast batch, M, N]`.
///
/// Either view may be transposed or sliced: both are read through their
/// strides. 1-D operands are the caller's business (promote them to
/// `[1, K]` / `[K, 1]` first).
pub fn matmul(a: &Buffer, la: &Layout, b: &Buffer, lb: &Layout) -> Result<(Buffer, Vec<usize>)> {
    for (buf, l) in [(a, la), (b, lb)] {
        l.check_rank("matmul")?;
        buf.check_len("matmul", "operand", l.span(), 4)?;
    }
    let dev = a.device();
    Buffer::check_same_device("matmul", dev, &[a, b])?;
    let (batch, va, vb) = check_shapes(la, lb)?;
    let (ra, rb) = (la.rank() - 2, lb.rank() - 2);
    let (m, k, n) = (la.shape[ra], la.shape[ra + 1], lb.shape[rb + 1]);
    let (a_rs, a_cs, b_rs, b_cs) = (la.strides[ra], la.strides[ra + 1], lb.strides[rb], lb.strides[rb + 1]);
    let batches = numel(&batch);
    let total = batches * m * n;
    super::check_u32("matmul", total)?;
    super::check_u32("matmul", la.span())?;
    super::check_u32("matmul", lb.span())?;
    let mut shape = batch.clone();
    shape.extend([m, n]);
    let out = Buffer::alloc(dev, total as u64 * 4)?;
    if total == 0 {
        return Ok((out, shape));
    }
    run(
        dev,
        |g| {
            let (bshape, bstrides) = coalesce(&batch, &[&va.strides, &vb.strides]);
            let (tiles_m, tiles_n) = (m.div_ceil(BM), n.div_ceil(BN));
            let workgroups = u32::try_from(batches * tiles_m * tiles_n)
                .map_err(|_| Error::invalid("matmul", format!("too many tiles for one launch: {shape:?}")))?;
            let params = Params::new()
                .dims(&bshape)
                .dims(&bstrides[0])
                .dims(&bstrides[1])
                .u32(m)
                .u32(n)
                .u32(k)
                .u32(bshape.len())
                .u32(la.offset)
                .u32(a_rs)
                .u32(a_cs)
                .u32(lb.offset)
                .u32(b_rs)
                .u32(b_cs)
                .u32(tiles_n)
                .u32(tiles_m * tiles_n)
                .u32(workgroups as usize);
            // Load threads walk the unit-stride index of each operand, so a
            // plain (row-major) A and B, and their transposes, all read
            // global memory contiguously.
            let a_k_fast = !(a_rs == 1 && a_cs != 1);
            let b_k_fast = b_rs == 1 && b_cs != 1;
            let flag = |f: bool| if f { 1.0 } else { 0.0 };
            g.launch(&Launch {
                shader: "matmul",
                entry: "main",
                constants: &[("A_K_FAST", flag(a_k_fast)), ("B_K_FAST", flag(b_k_fast))],
                params: &params.0,
                inputs: &[a.wgpu(), b.wgpu()],
                outputs: &[out.wgpu()],
                workgroups,
            })
        },
        || {
            let (ha, hb, mut ho) = (a.host(), b.host(), out.host_mut());
            let (xa, xb, xo) = (f32s(&ha), f32s(&hb), &mut f32s_mut(&mut ho)[..total]);
            if k == 0 {
                // An empty sum; the operands may hold no elements at all.
                xo.fill(0.0);
                return;
            }
            let s = |v: usize| v as isize;
            for (i, c) in xo.chunks_exact_mut(m * n).enumerate() {
                let (oa, ob) = (va.index_of(i), vb.index_of(i));
                // SAFETY: `check_len` proved both views (every batch entry,
                // M x K and K x N through their strides) lie inside the host
                // slices, and `c` holds exactly M x N contiguous elements.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        xa.as_ptr().add(oa),
                        s(a_rs),
                        s(a_cs),
                        xb.as_ptr().add(ob),
                        s(b_rs),
                        s(b_cs),
                        0.0,
                        c.as_mut_ptr(),
                        s(n),
                        1,
                    );
                }
            }
        },
    )?;
    Ok((out, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's tile sizes must be the shader's, or launches miss tiles.
    #[test]
    fn tile_sizes_match_the_shader() {
        let src = crate::shaders::source("matmul");
        let module = naga::front::wgsl::parse_str(&src).expect("matmul.wgsl parses");
        let value = |name: &str| {
            let c = module.constants.iter().find(|(_, c)| c.name.as_deref() == Some(name)).expect(name).1;
            match module.global_expressions[c.init] {
                naga::Expression::Literal(naga::Literal::U32(v)) => v as usize,
                ref e => panic!("{name} is not a folded u32 literal: {e:?}"),
            }
        };
        assert_eq!((value("BM"), value("BN")), (BM, BN));
    }

    #[test]
    fn shape_errors_name_both_shapes() {
        let c = crate::Device::cpu();
        let x = Buffer::from_f32(&c, &[0.0; 24]).unwrap();
        let l = Layout::contiguous;
        for (sa, sb) in [(&[2, 3][..], &[4, 2][..]), (&[3][..], &[3, 1][..]), (&[2, 1, 3][..], &[3, 3, 1][..])] {
            let msg = matmul(&x, &l(sa), &x, &l(sb)).unwrap_err().to_string();
            assert!(msg.contains(&format!("{sa:?}")) && msg.contains(&format!("{sb:?}")), "{msg}");
        }
    }
}
