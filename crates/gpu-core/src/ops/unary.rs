//! Elementwise unary functions (`shaders/unary.wgsl`): activations and math.
//! The op table and its reference twins are `kernels/unary.rs`.

use super::{dispatch_fusable, f32s, f32s_mut, groups, run, Kind, Params, ParamsDecl};
use crate::gpu::fusion::{Access, Fusable, Node};
pub use crate::kernels::unary::{chain_rule, erf_approx, wgsl_library, Domain, UnaryOp};
use crate::{Buffer, Result};

/// `unary.wgsl`'s `Params`: the element count and the op's fields.
pub(crate) const PARAMS: ParamsDecl =
    ParamsDecl { shader: "unary", fields: &[("n", Kind::U32), ("alpha", Kind::F32), ("beta", Kind::F32)] };

/// `unary_grad.wgsl`'s `Params` (the same members as [`PARAMS`]).
pub(crate) const GRAD_PARAMS: ParamsDecl = ParamsDecl { shader: "unary_grad", fields: PARAMS.fields };

/// `y[i] = op(x[i])` for the first `n` f32 of `x`.
pub fn unary(op: UnaryOp, x: &Buffer, n: usize) -> Result<Buffer> {
    super::check_u32("unary", n)?;
    x.check_len("unary", "input", n, 4)?;
    let dev = x.device();
    let out = Buffer::alloc_overwritten(dev, n as u64 * 4)?;
    let (a, b) = op.args();
    run(
        dev,
        |g| {
            let params = Params::of(&PARAMS).set_u32("n", n).set_f32("alpha", a).set_f32("beta", b);
            let what = Fusable { node: Node::Unary(op), n, access: smallvec::smallvec![Access::Dense] };
            let shader = g.texture_variant("unary", [x.len_bytes()]);
            dispatch_fusable(g, shader, "main", &[("OP", op.code() as f64)], &params, &[x], &out, groups(n, 256), what)
        },
        || {
            let (xs, mut ys) = (x.host(), out.host_mut());
            if dev.runs_fast_cpu() {
                let out = &mut f32s_mut(&mut ys)[..n];
                return op.with_fn(crate::cpu::elementwise::Map { x: &f32s(&xs)[..n], out });
            }
            for (y, &v) in f32s_mut(&mut ys)[..n].iter_mut().zip(&f32s(&xs)[..n]) {
                *y = op.apply(v);
            }
        },
    )?;
    Ok(out)
}

/// Backward of [`unary`]: `dx[i] = g[i] * f'(x[i])` in one fused pass, where
/// `y = unary(op, x)` is the forward output (several derivatives use it).
pub fn unary_grad(op: UnaryOp, x: &Buffer, y: &Buffer, g: &Buffer, n: usize) -> Result<Buffer> {
    super::check_u32("unary_grad", n)?;
    for (b, what) in [(x, "x"), (y, "y"), (g, "gradient")] {
        b.check_len("unary_grad", what, n, 4)?;
    }
    let dev = x.device();
    Buffer::check_same_device("unary_grad", dev, &[y, g])?;
    let out = Buffer::alloc_overwritten(dev, n as u64 * 4)?;
    let (a, b) = op.args();
    run(
        dev,
        |gpu| {
            let params = Params::of(&GRAD_PARAMS).set_u32("n", n).set_f32("alpha", a).set_f32("beta", b);
            let what = Fusable { node: Node::UnaryGrad(op), n, access: smallvec::smallvec![Access::Dense; 3] };
            let constants = [("OP", op.code() as f64)];
            let shader = gpu.texture_variant("unary_grad", [x, y, g].map(Buffer::len_bytes));
            dispatch_fusable(gpu, shader, "main", &constants, &params, &[x, y, g], &out, groups(n, 256), what)
        },
        || {
            let (xs, ys, gs, mut dx) = (x.host(), y.host(), g.host(), out.host_mut());
            let (xs, ys, gs) = (f32s(&xs), f32s(&ys), f32s(&gs));
            if dev.runs_fast_cpu() {
                let out = &mut f32s_mut(&mut dx)[..n];
                let (xs, ys, gs) = (&xs[..n], &ys[..n], &gs[..n]);
                let gated = op.gated();
                return op.with_derivative(crate::cpu::elementwise::ChainRule { x: xs, y: ys, g: gs, gated, out });
            }
            for (i, d) in f32s_mut(&mut dx)[..n].iter_mut().enumerate() {
                *d = chain_rule(op.gated(), gs[i], op.derivative(xs[i], ys[i]));
            }
        },
    )?;
    Ok(out)
}
