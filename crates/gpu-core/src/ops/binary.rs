//! Elementwise binary ops with NumPy broadcasting (`shaders/binary.wgsl`)
//! and the ternary select `where` (`shaders/where.wgsl`). The op table and
//! its reference twin are `kernels/binary.rs`.

use super::{dispatch_fusable, f32s, f32s_mut, groups, run, Kind, Params, ParamsDecl};
use crate::gpu::fusion::{Access, Fusable, Node};
use crate::kernels::binary::{binary_views, where_views};
pub use crate::kernels::binary::{wgsl_library, BinaryOp};
use crate::layout::{coalesce, Dims, Layout};
use crate::{Buffer, Error, Result};

/// `binary.wgsl`'s `Params`: the coalesced shape, each operand's strides and offset.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "binary",
    fields: &[
        ("shape", Kind::Dims),
        ("a_strides", Kind::Dims),
        ("b_strides", Kind::Dims),
        ("n", Kind::U32),
        ("a_offset", Kind::U32),
        ("b_offset", Kind::U32),
    ],
};

/// `where.wgsl`'s `Params`: as [`PARAMS`] with the condition operand first.
pub(crate) const WHERE_PARAMS: ParamsDecl = ParamsDecl {
    shader: "where",
    fields: &[
        ("shape", Kind::Dims),
        ("c_strides", Kind::Dims),
        ("a_strides", Kind::Dims),
        ("b_strides", Kind::Dims),
        ("n", Kind::U32),
        ("c_offset", Kind::U32),
        ("a_offset", Kind::U32),
        ("b_offset", Kind::U32),
    ],
};

/// Broadcasts operand views to their common shape, or a shape error naming the op.
fn broadcast_all(op: &'static str, views: &[&Layout]) -> Result<(Dims, smallvec::SmallVec<[Layout; 3]>)> {
    let mut shape = Dims::new();
    for v in views {
        shape = crate::layout::broadcast_shapes(&shape, &v.shape).ok_or_else(|| {
            let shapes: Vec<_> = views.iter().map(|v| format!("{:?}", v.shape)).collect();
            Error::invalid(op, format!("shapes {} cannot be broadcast together", shapes.join(" and ")))
        })?;
    }
    let out = views.iter().map(|v| v.broadcast_to(&shape)).collect::<Result<_>>()?;
    Ok((shape, out))
}

fn check_views(op: &'static str, pairs: &[(&Buffer, &Layout)]) -> Result<()> {
    for (b, l) in pairs {
        l.check_rank(op)?;
        b.check_len(op, "operand", l.span(), 4)?;
    }
    let dev = pairs[0].0.device();
    Buffer::check_same_device(op, dev, &pairs.iter().map(|p| p.0).collect::<smallvec::SmallVec<[_; 3]>>())
}

/// Per operand, how `binary.wgsl`'s `main4` reads it (1.0: vec4 loads, 0.0:
/// one broadcast value per four outputs), or `None` when the coalesced view
/// does not allow four outputs per thread: the innermost dim must be a
/// multiple of 4, and each operand either reads it with stride 1 (offset and
/// other strides multiples of 4, so each vec4 is aligned) or broadcasts it.
fn vec4_modes(shape: &[usize], operands: &[(&[usize], usize)]) -> Option<smallvec::SmallVec<[f64; 3]>> {
    let inner = *shape.last()?;
    if !inner.is_multiple_of(4) {
        return None;
    }
    operands
        .iter()
        .map(|(strides, offset)| match strides.last() {
            Some(0) => Some(0.0),
            Some(1) if offset.is_multiple_of(4) && strides.iter().rev().skip(1).all(|s| s.is_multiple_of(4)) => {
                Some(1.0)
            }
            _ => None,
        })
        .collect()
}

/// `op(a, b)` over the broadcast shape of the two views; returns the result
/// (contiguous) and its shape.
pub fn binary(op: BinaryOp, a: &Buffer, la: &Layout, b: &Buffer, lb: &Layout) -> Result<(Buffer, Dims)> {
    check_views("binary", &[(a, la), (b, lb)])?;
    let (shape, views) = broadcast_all("binary", &[la, lb])?;
    let n = crate::layout::numel(&shape);
    super::check_u32("binary", n)?;
    let dev = a.device();
    let out = Buffer::alloc_overwritten(dev, n as u64 * 4)?;
    let (va, vb) = (&views[0], &views[1]);
    run(
        dev,
        |g| {
            let (cs, st) = coalesce(&shape, &[&va.strides, &vb.strides]);
            let params = Params::of(&PARAMS)
                .set_dims("shape", &cs)
                .set_dims("a_strides", &st[0])
                .set_dims("b_strides", &st[1])
                .set_u32("n", n)
                .set_u32("a_offset", va.offset)
                .set_u32("b_offset", vb.offset);
            let rank = ("RANK", cs.len() as f64);
            let access: smallvec::SmallVec<[_; 3]> =
                smallvec::smallvec![Access::of(&cs, &st[0], va.offset), Access::of(&cs, &st[1], vb.offset)];
            let what = Fusable { node: Node::Binary(op), n, access };
            let shader = g.texture_variant("binary", [a, b].map(Buffer::len_bytes));
            match vec4_modes(&cs, &[(&st[0], va.offset), (&st[1], vb.offset)]) {
                Some(m) => {
                    let constants = [("OP", op.code() as f64), rank, ("A_VEC", m[0]), ("B_VEC", m[1])];
                    dispatch_fusable(g, shader, "main4", &constants, &params, &[a, b], &out, groups(n / 4, 256), what)
                }
                None => {
                    let constants = [("OP", op.code() as f64), rank];
                    dispatch_fusable(g, shader, "main", &constants, &params, &[a, b], &out, groups(n, 256), what)
                }
            }
        },
        || {
            let (ha, hb, mut ho) = (a.host(), b.host(), out.host_mut());
            let (xa, xb) = (f32s(&ha), f32s(&hb));
            if dev.runs_fast_cpu() {
                let out = &mut f32s_mut(&mut ho)[..n];
                return op.with_fn(crate::cpu::elementwise::Strided2 { shape: &shape, va, vb, a: xa, b: xb, out });
            }
            binary_views(op, (xa, va), (xb, vb), &mut f32s_mut(&mut ho)[..n]);
        },
    )?;
    Ok((out, shape))
}

/// `cond != 0 ? a : b` over the broadcast shape of the three views.
pub fn where_select(
    cond: &Buffer,
    lc: &Layout,
    a: &Buffer,
    la: &Layout,
    b: &Buffer,
    lb: &Layout,
) -> Result<(Buffer, Dims)> {
    check_views("where", &[(cond, lc), (a, la), (b, lb)])?;
    let (shape, views) = broadcast_all("where", &[lc, la, lb])?;
    let n = crate::layout::numel(&shape);
    super::check_u32("where", n)?;
    let dev = a.device();
    let out = Buffer::alloc_overwritten(dev, n as u64 * 4)?;
    let (vc, va, vb) = (&views[0], &views[1], &views[2]);
    run(
        dev,
        |g| {
            let (cs, st) = coalesce(&shape, &[&vc.strides, &va.strides, &vb.strides]);
            let params = Params::of(&WHERE_PARAMS)
                .set_dims("shape", &cs)
                .set_dims("c_strides", &st[0])
                .set_dims("a_strides", &st[1])
                .set_dims("b_strides", &st[2])
                .set_u32("n", n)
                .set_u32("c_offset", vc.offset)
                .set_u32("a_offset", va.offset)
                .set_u32("b_offset", vb.offset);
            let access = [(&st[0], vc.offset), (&st[1], va.offset), (&st[2], vb.offset)]
                .iter()
                .map(|(strides, offset)| Access::of(&cs, strides, *offset))
                .collect();
            let what = Fusable { node: Node::Where, n, access };
            let constants = [("RANK", cs.len() as f64)];
            dispatch_fusable(g, "where", "main", &constants, &params, &[cond, a, b], &out, groups(n, 256), what)
        },
        || {
            let (hc, ha, hb, mut ho) = (cond.host(), a.host(), b.host(), out.host_mut());
            let (xc, xa, xb) = (f32s(&hc), f32s(&ha), f32s(&hb));
            where_views((xc, vc), (xa, va), (xb, vb), &mut f32s_mut(&mut ho)[..n]);
        },
    )?;
    Ok((out, shape))
}
