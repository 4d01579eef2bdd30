//! The CPU backend's two kinds of kernel.
//!
//! * **Reference twins** live in `kernels/*.rs`, one file per family (batch
//!   norm's, pooling's and matmul's still in their `ops/*.rs`): the
//!   definition of the op, loop by loop and single-threaded (f64
//!   accumulation where the kernel has it). They are the oracle: the GPU
//!   kernels and the fast paths below are both tested against them, and
//!   [`Device::cpu_reference`](crate::Device::cpu_reference) runs them.
//! * **Fast paths** (this module and the `fast` branches of the op files) are
//!   what [`Device::cpu`](crate::Device::cpu) runs: threaded over all cores
//!   with rayon, dense loops over contiguous slices that the compiler
//!   vectorizes, scratch reused instead of allocated per element. Where an op
//!   has no fast path for a layout it runs its reference twin.
//!
//! The fast paths build on `kernels/` and `layout` only: whether they run
//! is the op's choice (`ops/`, through `Device::runs_fast_cpu`), so this
//! layer never names a device.
//!
//! `tests/main/parity_fast_cpu.rs` checks the fast paths against the reference on
//! awkward shapes (zero-size, odd, strided, large).

pub(crate) mod aligned;
pub(crate) mod attention;
pub(crate) mod batch_norm;
pub(crate) mod conv;
pub(crate) mod copy;
pub(crate) mod elementwise;
pub(crate) mod gemm;
pub(crate) mod gemm_abt;
pub(crate) mod gemm_dots;
pub(crate) mod gemm_packed_a;
pub(crate) mod index;
pub(crate) mod lanes;
pub(crate) mod norm_rows;
pub(crate) mod optim;
pub(crate) mod pool;
pub(crate) mod pooling;
pub(crate) mod recurrent;
pub(crate) mod reduce;
pub(crate) mod simd;
pub(crate) mod threads;

use rayon::prelude::*;

/// Elements below which a loop stays on the calling thread: handing work to
/// another core costs a few microseconds, about what a thread does to 16K
/// floats.
pub(crate) const GRAIN: usize = 1 << 14;

/// Runs `f(row, a_row, b_row)` for every row of `a` (`a_len` elements
/// each) and of `b` (`b_len` each; empty rows when `b` is empty): on all
/// cores when `fast`, else in order on this thread. Rows are independent,
/// so a reference loop run this way gives the same bits: the fast path of
/// row-wise ops (pooling planes, softmax, cross-entropy; row norms run
/// their own loops through it, `norm_rows.rs`).
pub(crate) fn per_row2<T: Send, U: Send>(
    fast: bool,
    (a, a_len): (&mut [T], usize),
    (b, b_len): (&mut [U], usize),
    f: impl Fn(usize, &mut [T], &mut [U]) + Sync,
) {
    let b_len = if b.is_empty() { 0 } else { b_len };
    let rows = a.len().checked_div(a_len).unwrap_or(0);
    if !fast || rows * a_len <= GRAIN || rayon::current_num_threads() == 1 {
        for (p, ap) in a.chunks_exact_mut(a_len.max(1)).enumerate() {
            f(p, ap, &mut b[p * b_len..(p + 1) * b_len]);
        }
        return;
    }
    // A few tasks per thread; each task owns whole rows of both outputs.
    let per = rows.div_ceil(4 * rayon::current_num_threads()).max(GRAIN.div_ceil(a_len));
    let tasks = rows.div_ceil(per);
    let b_chunks: Vec<&mut [U]> = match b_len {
        0 => (0..tasks).map(|_| <&mut [U]>::default()).collect(),
        _ => b.chunks_mut(per * b_len).collect(),
    };
    a.par_chunks_mut(per * a_len).zip(b_chunks).enumerate().for_each(|(t, (a, b))| {
        for (i, ap) in a.chunks_exact_mut(a_len).enumerate() {
            f(t * per + i, ap, &mut b[i * b_len..(i + 1) * b_len]);
        }
    });
}

/// [`per_row2`] with one output.
pub(crate) fn per_row<T: Send>(fast: bool, a: (&mut [T], usize), f: impl Fn(usize, &mut [T]) + Sync) {
    per_row2(fast, a, (&mut [] as &mut [u8], 0), |r, a, _| f(r, a));
}

/// Runs `f(start, chunk)` over consecutive chunks of `out` (`start` is the
/// chunk's first index), on all cores when `out` is longer than `grain`
/// elements; chunks are whole multiples of `unit` elements (a row), so `f`
/// may work row by row.
pub(crate) fn par_chunks<T: Send>(out: &mut [T], unit: usize, grain: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let unit = unit.max(1);
    if out.len() <= grain || rayon::current_num_threads() == 1 {
        f(0, out);
        return;
    }
    // A few chunks per thread balance uneven cores without tiny tasks.
    let per = out.len().div_ceil(4 * rayon::current_num_threads()).max(grain);
    let chunk = per.div_ceil(unit) * unit;
    out.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i * chunk, c));
}
