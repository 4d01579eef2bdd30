//! Row kernels (one workgroup per row of a contiguous `[rows, cols]`
//! tensor: softmax, cross-entropy, row normalisation) past the storage-binding
//! limit: the work runs in ranges of whole rows, each launch binding the
//! window of its rows in every buffer. Windows start on the adapter's offset
//! alignment, so a range's first row sits some elements into its window;
//! the kernels take the first row (`row0`) and where each kind of window
//! starts (`mat_shift` for `[rows, cols]` f32 buffers, `x_shift` for the
//! input x in f32 or f16, `vec_shift` for per-row vectors) as the last four
//! members of their `Params`, and subtract them from their indices. A whole
//! launch passes zeros, so both share one pipeline.

use super::operands::Operands;
use super::{dispatch_indexed, groups, Params};
use crate::gpu::window::{window, Window};
use crate::gpu::{GpuContext, Launch};
use crate::{Buffer, Error, Result};

/// How a row kernel binds one buffer, which says its window when the work
/// runs in ranges of rows.
#[derive(Clone, Copy)]
pub(crate) enum Bind {
    /// `[rows, cols]` f32 (windows start at the kernel's `mat_shift`).
    Rows,
    /// The input x, `[rows, cols]` stored as the given operands (`x_shift`).
    X(Operands),
    /// One f32 or u32 per row (`vec_shift`).
    PerRow,
    /// Bound whole (class weights, placeholders).
    Whole,
}

/// The shape and launch options of one row kernel.
pub(crate) struct RowLaunch<'a> {
    pub kernel: (&'static str, &'static str),
    pub constants: &'a [(&'static str, f64)],
    /// The kernel's own members; `launch_rows` appends `row0`, `mat_shift`,
    /// `x_shift` and `vec_shift`.
    pub params: Params,
    pub rows: usize,
    pub cols: usize,
    /// Also bind the index-error record (ce_fwd).
    pub check_indices: bool,
    /// The kernel's thread-per-row entry point (`*_serial`, [`SERIAL_ROWS`]
    /// rows a workgroup) and its constants, if it has one: used on CPU
    /// adapters (see [`thread_per_row`]) when the launch is not cut into
    /// ranges of rows. Its own constants because it has no use for the
    /// workgroup entry's `WG`, which would only key more pipelines.
    pub serial_entry: Option<(&'static str, &'a [(&'static str, f64)])>,
}

/// Rows per workgroup of the thread-per-row entries (`SERIAL_ROWS` in
/// `shaders/row_serial.wgsl`; a test checks the two agree).
pub(crate) const SERIAL_ROWS: usize = 64;

/// Whether a row kernel with a thread-per-row entry uses it (and whether a
/// reduction with `rows` outputs takes one thread per output, `reduce.rs`):
/// on CPU adapters (where a barrier makes the whole shader a coroutine, and
/// a workgroup per short row leaves most of its SIMD lanes idle), once there
/// are rows for a whole workgroup of them. Fewer rows keep the
/// workgroup-per-row entry, so a CPU adapter runs both (the tests use both).
pub(crate) fn thread_per_row(g: &GpuContext, rows: usize) -> bool {
    g.is_cpu_adapter() && rows >= SERIAL_ROWS
}

/// Records `l`'s kernel over its rows, one workgroup each (or, see
/// `serial_entry`, one thread each): one launch, or,
/// when a buffer is past the binding limit, one launch per range of rows
/// binding windows of the buffers (the kernel subtracts where each window
/// starts), as long as one row fits.
pub(crate) fn launch_rows(
    g: &GpuContext,
    l: RowLaunch,
    inputs: &[(&Buffer, Bind)],
    outputs: &[(&Buffer, Bind)],
) -> Result<()> {
    let (rows, cols) = (l.rows, l.cols);
    let limit = g.binding_limit();
    let ranged = |r0: usize, [mat, x, vec]: [usize; 3]| {
        l.params.clone().set_u32("row0", r0).set_u32("mat_shift", mat).set_u32("x_shift", x).set_u32("vec_shift", vec)
    };
    let bound = || inputs.iter().chain(outputs);
    if bound().all(|(b, _)| b.len_bytes() <= limit) {
        let (ins, outs): (Vec<&Buffer>, Vec<&Buffer>) =
            (inputs.iter().map(|b| b.0).collect(), outputs.iter().map(|b| b.0).collect());
        let params = ranged(0, [0; 3]);
        let (kernel, constants, per_group) = match l.serial_entry {
            Some((entry, constants)) if thread_per_row(g, rows) => ((l.kernel.0, entry), constants, SERIAL_ROWS),
            _ => (l.kernel, l.constants, 1),
        };
        let workgroups = groups(rows, per_group);
        return dispatch_indexed(g, kernel, constants, &params, &ins, &outs, workgroups, l.check_indices);
    }
    let align = g.window_align();
    // A window of whole rows starts up to `align` bytes early and ends on 16.
    let per = (limit.saturating_sub(align + 16) / (cols as u64 * 4).max(1)) as usize;
    if per == 0 {
        return Err(Error::LimitExceeded {
            what: format!("kernel `{}:{}` binding one row of {cols} values", l.kernel.0, l.kernel.1),
            needed: cols as u64 * 4 + align,
            limit: "max_storage_buffer_binding_size",
            allowed: limit,
        });
    }
    let ins: Vec<&wgpu::Buffer> = inputs.iter().map(|b| b.0.wgpu()).collect();
    let mut outs: Vec<&wgpu::Buffer> = outputs.iter().map(|b| b.0.wgpu()).collect();
    if l.check_indices {
        outs.push(g.index_errors_for_launch());
    }
    for r0 in (0..rows).step_by(per) {
        let n = per.min(rows - r0);
        let window_of = |bind: Bind| match bind {
            Bind::Rows => Some(window(r0 * cols, n * cols, 4, align)),
            Bind::X(io) => Some(window(r0 * cols, n * cols, io.size(), align)),
            Bind::PerRow => Some(window(r0, n, 4, align)),
            Bind::Whole => None,
        };
        let shifts = [Bind::Rows, Bind::X(inputs_x(inputs)), Bind::PerRow].map(|b| window_of(b).map_or(0, |w| w.1));
        let mut windows: Vec<Option<Window>> =
            inputs.iter().chain(outputs).map(|b| window_of(b.1).map(|w| w.0)).collect();
        windows.resize(ins.len() + outs.len(), None);
        let params = ranged(r0, shifts);
        let launch = Launch {
            shader: l.kernel.0,
            entry: l.kernel.1,
            constants: l.constants,
            params: params.finish(),
            inputs: &ins,
            outputs: &outs,
            workgroups: groups(n, 1),
        };
        super::launch::dispatch_launch(g, &launch, &windows)?;
    }
    Ok(())
}

/// The storage of the kernel's x binding (f32 when it has none).
fn inputs_x(inputs: &[(&Buffer, Bind)]) -> Operands {
    inputs.iter().find_map(|b| if let Bind::X(io) = b.1 { Some(io) } else { None }).unwrap_or(Operands::F32)
}

#[cfg(test)]
mod tests {
    /// The host counts thread-per-row workgroups with the rows per
    /// workgroup the shaders use (a mismatch would skip or double rows).
    #[test]
    fn serial_rows_match_the_shaders() {
        for name in ["softmax", "norm"] {
            assert_eq!(crate::shaders::u32_constant(name, "SERIAL_ROWS"), super::SERIAL_ROWS, "{name}");
        }
    }
}
