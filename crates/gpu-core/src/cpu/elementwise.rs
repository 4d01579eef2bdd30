//! Fast elementwise loops. The op tables (`BinaryOp::with_fn`,
//! `UnaryOp::with_fn`) hand these a concrete closure per op, so each loop is
//! compiled for that op, once per vector level ([`dispatch`]), and
//! vectorizes over contiguous runs; work is split over all cores by
//! [`par_chunks`].

use super::simd::{dispatch, Loop};
use super::{par_chunks, GRAIN};
use crate::kernels::table::{Binary, Unary};
use crate::kernels::unary::chain_rule;
use crate::layout::{coalesce, Layout};

/// `out[i] = f(x[i])` over equal-length slices.
pub(crate) struct Map<'a> {
    pub x: &'a [f32],
    pub out: &'a mut [f32],
}

impl Unary for Map<'_> {
    type Out = ();
    fn call<F: Fn(f32) -> f32 + Copy + Sync>(self, f: F) {
        let x = self.x;
        par_chunks(self.out, 1, GRAIN, |start, out| dispatch(MapLoop { x: &x[start..], out, f }));
    }
}

/// One chunk of [`Map`].
struct MapLoop<'a, F> {
    x: &'a [f32],
    out: &'a mut [f32],
    f: F,
}

impl<F: Fn(f32) -> f32> Loop for MapLoop<'_, F> {
    #[inline(always)]
    fn run(self) {
        for (o, &v) in self.out.iter_mut().zip(self.x) {
            *o = (self.f)(v);
        }
    }
}

/// `out[i] = g[i] * f'(x[i], y[i])`: the backward pass of a unary op.
pub(crate) struct ChainRule<'a> {
    pub x: &'a [f32],
    pub y: &'a [f32],
    pub g: &'a [f32],
    /// The op's [`UnaryOp::gated`](crate::ops::unary::UnaryOp::gated).
    pub gated: bool,
    pub out: &'a mut [f32],
}

impl Binary for ChainRule<'_> {
    type Out = ();
    fn call<F: Fn(f32, f32) -> f32 + Copy + Sync>(self, df: F) {
        let (x, y, g, gated) = (self.x, self.y, self.g, self.gated);
        par_chunks(self.out, 1, GRAIN, |start, out| {
            let n = out.len();
            let (x, y, g) = (&x[start..][..n], &y[start..][..n], &g[start..][..n]);
            dispatch(ChainLoop { x, y, g, gated, out, df })
        });
    }
}

/// One chunk of [`ChainRule`].
struct ChainLoop<'a, F> {
    x: &'a [f32],
    y: &'a [f32],
    g: &'a [f32],
    gated: bool,
    out: &'a mut [f32],
    df: F,
}

impl<F: Fn(f32, f32) -> f32> Loop for ChainLoop<'_, F> {
    #[inline(always)]
    fn run(self) {
        let ChainLoop { x, y, g, gated, out, df } = self;
        for (i, o) in out.iter_mut().enumerate() {
            *o = chain_rule(gated, g[i], df(x[i], y[i]));
        }
    }
}

/// `out[i] = f(a[va(i)], b[vb(i)])` over the broadcast `shape`, with the two
/// views already broadcast to it.
pub(crate) struct Strided2<'a> {
    pub shape: &'a [usize],
    pub va: &'a Layout,
    pub vb: &'a Layout,
    pub a: &'a [f32],
    pub b: &'a [f32],
    pub out: &'a mut [f32],
}

impl Binary for Strided2<'_> {
    type Out = ();
    fn call<F: Fn(f32, f32) -> f32 + Copy + Sync>(self, f: F) {
        if self.out.is_empty() {
            return;
        }
        // The innermost merged dim is a run both operands walk with one
        // stride each (1 = contiguous, 0 = a broadcast value); the outer
        // dims are decoded once per run, not per element.
        let (cs, st) = coalesce(self.shape, &[&self.va.strides, &self.vb.strides]);
        let r = cs.len() - 1;
        let (run, sa, sb) = (cs[r], st[0][r], st[1][r]);
        let outer = |strides: &[usize], offset| Layout { shape: cs[..r].into(), strides: strides[..r].into(), offset };
        let (oa, ob) = (outer(&st[0], self.va.offset), outer(&st[1], self.vb.offset));
        let (a, b) = (self.a, self.b);
        par_chunks(self.out, run, GRAIN, |start, out| {
            dispatch(RunsLoop { a: (a, &oa), b: (b, &ob), first: start / run, run: (run, sa, sb), out, f })
        });
    }
}

/// One chunk of [`Strided2`]: rows of `run` elements from row `first`,
/// each operand's row found through its outer layout and walked with one
/// stride (1 = contiguous, 0 = a broadcast value).
struct RunsLoop<'a, F> {
    a: (&'a [f32], &'a Layout),
    b: (&'a [f32], &'a Layout),
    first: usize,
    /// The run's length and each operand's stride along it.
    run: (usize, usize, usize),
    out: &'a mut [f32],
    f: F,
}

impl<F: Fn(f32, f32) -> f32> Loop for RunsLoop<'_, F> {
    #[inline(always)]
    fn run(self) {
        let RunsLoop { a: (a, oa), b: (b, ob), first, run: (run, sa, sb), out, f } = self;
        for (i, o) in out.chunks_exact_mut(run).enumerate() {
            let (a, b) = (&a[oa.index_of(first + i)..], &b[ob.index_of(first + i)..]);
            match (sa, sb) {
                (1, 1) => o.iter_mut().zip(&a[..run]).zip(&b[..run]).for_each(|((o, &x), &y)| *o = f(x, y)),
                (1, 0) => o.iter_mut().zip(&a[..run]).for_each(|(o, &x)| *o = f(x, b[0])),
                (0, 1) => o.iter_mut().zip(&b[..run]).for_each(|(o, &y)| *o = f(a[0], y)),
                _ => o.iter_mut().enumerate().for_each(|(j, o)| *o = f(a[j * sa], b[j * sb])),
            }
        }
    }
}
