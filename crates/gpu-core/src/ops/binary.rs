//! Elementwise binary ops with NumPy broadcasting (`shaders/binary.wgsl`)
//! and the ternary select `where` (`shaders/where.wgsl`).

use super::{f32s, f32s_mut, groups, launch_elementwise, run, Params};
use crate::gpu::Launch;
use crate::layout::{coalesce, Layout};
use crate::{Buffer, Error, Result};

/// A binary function. Comparisons give 1.0 / 0.0 masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
    /// a^b (IEEE pow: negative bases with integer exponents work)
    Pow,
    /// max(a, b)
    Maximum,
    /// min(a, b)
    Minimum,
    /// a == b
    Eq,
    /// a < b
    Lt,
    /// a ≤ b
    Le,
    /// a > b
    Gt,
    /// a ≥ b
    Ge,
}

impl BinaryOp {
    fn code(self) -> u32 {
        self as u32
    }

    /// The CPU twin: f applied to one pair.
    pub fn apply(self, a: f32, b: f32) -> f32 {
        use BinaryOp::*;
        let mask = |c: bool| if c { 1.0 } else { 0.0 };
        match self {
            Add => a + b,
            Sub => a - b,
            Mul => a * b,
            Div => a / b,
            Pow => a.powf(b),
            Maximum => a.max(b),
            Minimum => a.min(b),
            Eq => mask(a == b),
            Lt => mask(a < b),
            Le => mask(a <= b),
            Gt => mask(a > b),
            Ge => mask(a >= b),
        }
    }
}

/// Broadcasts operand views to their common shape, or a shape error naming the op.
fn broadcast_all(op: &'static str, views: &[&Layout]) -> Result<(Vec<usize>, Vec<Layout>)> {
    let mut shape: Vec<usize> = vec![];
    for v in views {
        shape = crate::layout::broadcast_shapes(&shape, &v.shape).ok_or_else(|| {
            let shapes: Vec<_> = views.iter().map(|v| format!("{:?}", v.shape)).collect();
            Error::invalid(op, format!("shapes {} cannot be broadcast together", shapes.join(" and ")))
        })?;
    }
    let out = views.iter().map(|v| v.broadcast_to(&shape)).collect::<Result<Vec<_>>>()?;
    Ok((shape, out))
}

fn check_views(op: &'static str, pairs: &[(&Buffer, &Layout)]) -> Result<()> {
    for (b, l) in pairs {
        l.check_rank(op)?;
        b.check_len(op, "operand", l.span(), 4)?;
    }
    let dev = pairs[0].0.device();
    Buffer::check_same_device(op, dev, &pairs.iter().map(|p| p.0).collect::<Vec<_>>())
}

/// Per operand, how `binary.wgsl`'s `main4` reads it (1.0: vec4 loads, 0.0:
/// one broadcast value per four outputs), or `None` when the coalesced view
/// does not allow four outputs per thread: the innermost dim must be a
/// multiple of 4, and each operand either reads it with stride 1 (offset and
/// other strides multiples of 4, so each vec4 is aligned) or broadcasts it.
fn vec4_modes(shape: &[usize], operands: &[(&[usize], usize)]) -> Option<Vec<f64>> {
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
pub fn binary(op: BinaryOp, a: &Buffer, la: &Layout, b: &Buffer, lb: &Layout) -> Result<(Buffer, Vec<usize>)> {
    check_views("binary", &[(a, la), (b, lb)])?;
    let (shape, views) = broadcast_all("binary", &[la, lb])?;
    let n = crate::layout::numel(&shape);
    super::check_u32("binary", n)?;
    let dev = a.device();
    let out = Buffer::alloc(dev, n as u64 * 4)?;
    let (va, vb) = (&views[0], &views[1]);
    run(
        dev,
        |g| {
            let (cs, st) = coalesce(&shape, &[&va.strides, &vb.strides]);
            let params = Params::new().dims(&cs).dims(&st[0]).dims(&st[1]).u32(n).u32(va.offset).u32(vb.offset);
            let rank = ("RANK", cs.len() as f64);
            match vec4_modes(&cs, &[(&st[0], va.offset), (&st[1], vb.offset)]) {
                Some(m) => {
                    let constants = [("OP", op.code() as f64), rank, ("A_VEC", m[0]), ("B_VEC", m[1])];
                    let ins: [&wgpu::Buffer; 2] = [a.wgpu(), b.wgpu()];
                    g.launch(&Launch {
                        shader: "binary",
                        entry: "main4",
                        constants: &constants,
                        params: &params.0,
                        inputs: &ins,
                        outputs: &[out.wgpu()],
                        workgroups: groups(n / 4, 256),
                    })
                }
                None => {
                    let constants = [("OP", op.code() as f64), rank];
                    launch_elementwise(g, "binary", &constants, params, &[a, b], &[&out], n)
                }
            }
        },
        || {
            let (ha, hb, mut ho) = (a.host(), b.host(), out.host_mut());
            let (xa, xb) = (f32s(&ha), f32s(&hb));
            for (i, z) in f32s_mut(&mut ho)[..n].iter_mut().enumerate() {
                *z = op.apply(xa[va.index_of(i)], xb[vb.index_of(i)]);
            }
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
) -> Result<(Buffer, Vec<usize>)> {
    check_views("where", &[(cond, lc), (a, la), (b, lb)])?;
    let (shape, views) = broadcast_all("where", &[lc, la, lb])?;
    let n = crate::layout::numel(&shape);
    super::check_u32("where", n)?;
    let dev = a.device();
    let out = Buffer::alloc(dev, n as u64 * 4)?;
    let (vc, va, vb) = (&views[0], &views[1], &views[2]);
    run(
        dev,
        |g| {
            let (cs, st) = coalesce(&shape, &[&vc.strides, &va.strides, &vb.strides]);
            let params = Params::new()
                .dims(&cs)
                .dims(&st[0])
                .dims(&st[1])
                .dims(&st[2])
                .u32(n)
                .u32(vc.offset)
                .u32(va.offset)
                .u32(vb.offset);
            launch_elementwise(g, "where", &[("RANK", cs.len() as f64)], params, &[cond, a, b], &[&out], n)
        },
        || {
            let (hc, ha, hb, mut ho) = (cond.host(), a.host(), b.host(), out.host_mut());
            let (xc, xa, xb) = (f32s(&hc), f32s(&ha), f32s(&hb));
            for (i, z) in f32s_mut(&mut ho)[..n].iter_mut().enumerate() {
                *z = if xc[vc.index_of(i)] != 0.0 { xa[va.index_of(i)] } else { xb[vb.index_of(i)] };
            }
        },
    )?;
    Ok((out, shape))
}
