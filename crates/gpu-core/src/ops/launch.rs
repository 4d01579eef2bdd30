//! The one path from an op to a backend: [`run`] chooses the GPU launch or
//! the CPU kernel of the op's device (and counts and profiles the CPU
//! side), and every GPU launch of the op files is encoded through
//! [`dispatch`] and its variants here, which hand it to the recorder
//! (`GpuContext::launch`, or the fuser's queue for elementwise kernels).

use smallvec::SmallVec;

use super::params::Params;
use crate::gpu::fusion::{Access, Deferred, Fusable, Node};
use crate::gpu::product_store::ProductStore;
use crate::gpu::window::Window;
use crate::gpu::workgroups::groups;
use crate::gpu::{GpuContext, Launch};
use crate::{Buffer, Device, Result};

/// Whether any of `buffers` is past `g`'s binding limit (the ops that split
/// their work then take their split path).
pub(crate) fn past_limit<'a>(g: &GpuContext, buffers: impl IntoIterator<Item = &'a Buffer>) -> bool {
    let limit = g.binding_limit();
    buffers.into_iter().any(|b| b.len_bytes() > limit)
}

/// `shaders/window.wgsl`'s override constants (`KH`, `KW`, `SH`, `SW`,
/// `DH`, `DW`) for a window of `taps` per (rows, columns), with these
/// strides and dilations: the convolutions' and pooling's geometry.
pub(crate) fn window_constants(
    taps: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
) -> [(&'static str, f64); 6] {
    [
        ("KH", taps.0 as f64),
        ("KW", taps.1 as f64),
        ("SH", stride.0 as f64),
        ("SW", stride.1 as f64),
        ("DH", dilation.0 as f64),
        ("DW", dilation.1 as f64),
    ]
}

/// Errors when `n` elements cannot be indexed with the kernels' u32 arithmetic.
pub(crate) fn check_u32(op: &'static str, n: usize) -> Result<()> {
    if n >= u32::MAX as usize {
        return Err(crate::Error::invalid(op, format!("{n} elements exceed the 2^32 limit of one kernel")));
    }
    Ok(())
}

/// Runs `gpu` on a GPU device, or counts a dispatch and runs `cpu` on the CPU
/// backend (timed there by the profiler, whose family for it is the calling
/// op file, e.g. `cpu:conv`).
#[track_caller]
pub(crate) fn run(device: &Device, gpu: impl FnOnce(&GpuContext) -> Result<()>, cpu: impl FnOnce()) -> Result<()> {
    run_fallible(device, gpu, || {
        cpu();
        Ok(())
    })
}

/// [`run`] for a CPU twin that can fail: one that takes host memory beyond
/// its buffers ([`operands::host_f32`], [`operands::HostOutput`]) under the
/// memory budget, before it writes anything.
#[track_caller]
pub(crate) fn run_fallible(
    device: &Device,
    gpu: impl FnOnce(&GpuContext) -> Result<()>,
    cpu: impl FnOnce() -> Result<()>,
) -> Result<()> {
    match device.gpu_ctx() {
        Some(g) => gpu(g),
        None => {
            device.inner.stats.dispatched();
            let profiler = &device.inner.profiler;
            if !profiler.is_active() {
                return cpu();
            }
            // The op's file, or its folder for an op that is one (`matmul/mod.rs`).
            let file = std::path::Path::new(std::panic::Location::caller().file());
            let named = if file.file_stem().is_some_and(|s| s == "mod") { file.parent() } else { Some(file) };
            let family = named.and_then(|p| p.file_stem()).and_then(|s| s.to_str()).unwrap_or("kernel");
            crate::profiler::take_host_bytes();
            let t0 = web_time::Instant::now();
            let done = cpu();
            profiler.record_host(format!("cpu:{family}"), crate::profiler::take_host_bytes(), t0);
            done
        }
    }
}

/// The one launch layer of the kernel files: records one launch of
/// `shader`'s `entry` over `workgroups`, with the uniform block `params`
/// (checked complete against its declaration, when it has one) and the
/// buffers bound in order after it (inputs read-only, then outputs).
#[allow(clippy::too_many_arguments)]
pub(crate) fn dispatch(
    g: &GpuContext,
    shader: &'static str,
    entry: &'static str,
    constants: &[(&'static str, f64)],
    params: &Params,
    inputs: &[&Buffer],
    outputs: &[&Buffer],
    workgroups: u32,
) -> Result<()> {
    dispatch_indexed(g, (shader, entry), constants, params, inputs, outputs, workgroups, false)
}

/// [`dispatch`] that, with `check_indices`, also binds the device's
/// index-error record after `outputs`, for a kernel that validates indices
/// (`index_check.rs`); the next readback then reads the record.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dispatch_indexed(
    g: &GpuContext,
    (shader, entry): (&'static str, &'static str),
    constants: &[(&'static str, f64)],
    params: &Params,
    inputs: &[&Buffer],
    outputs: &[&Buffer],
    workgroups: u32,
    check_indices: bool,
) -> Result<()> {
    let ins: SmallVec<[&wgpu::Buffer; 8]> = inputs.iter().map(|b| b.wgpu()).collect();
    let mut outs: SmallVec<[&wgpu::Buffer; 8]> = outputs.iter().map(|b| b.wgpu()).collect();
    if check_indices {
        outs.push(g.index_errors_for_launch());
    }
    g.launch(&Launch { shader, entry, constants, params: params.finish(), inputs: &ins, outputs: &outs, workgroups })
}

/// [`dispatch`] for a launch its op builds itself (products, reductions,
/// copies, fills, random draws, optimizer updates, row kernels, gathers,
/// batch norm and the direct convolution, which bind buffer windows or
/// buffers that are not `Buffer`s): `windows` gives a binding window per
/// bound buffer, in order, or is empty (every buffer bound whole).
pub(crate) fn dispatch_launch(g: &GpuContext, launch: &Launch, windows: &[Option<Window>]) -> Result<()> {
    g.launch_windows(launch, windows)
}

/// [`dispatch`] for an elementwise kernel with one output that the fuser may
/// merge with its neighbours: `what` says what it computes and how it reads
/// each input (see `gpu/fusion.rs`). With fusion off it is exactly [`dispatch`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn dispatch_fusable(
    g: &GpuContext,
    shader: &'static str,
    entry: &'static str,
    constants: &[(&'static str, f64)],
    params: &Params,
    inputs: &[&Buffer],
    output: &Buffer,
    workgroups: u32,
    what: Fusable,
) -> Result<()> {
    debug_assert_eq!(what.access.len(), inputs.len());
    g.defer(Deferred {
        shader,
        entry,
        constants: constants.into(),
        params: params.finish().into(),
        inputs: inputs.iter().map(|b| b.handle()).collect(),
        output: output.handle(),
        workgroups,
        fusable: what,
        record: None,
        product: None,
    })
}

/// [`dispatch`] with the common elementwise shape: entry `main`, one thread
/// per element in workgroups of 256.
/// Records a product (`ops::matmul`) whose readers the fuser may merge
/// into its store: its launch as `store` builds it with no tail, deferred
/// in the run (see `gpu/tails.rs`). `elements`: the result's count.
pub(crate) fn dispatch_product(
    g: &GpuContext,
    inputs: &[&Buffer],
    output: &Buffer,
    elements: usize,
    store: Box<dyn ProductStore>,
) -> Result<()> {
    let (shader, entry, workgroups) = store.recorded();
    // Its constants and parameters stay with the store (no copies: a
    // product's would not fit the inline room of an elementwise launch's).
    g.defer(Deferred {
        shader,
        entry,
        constants: SmallVec::new(),
        params: SmallVec::new(),
        inputs: inputs.iter().map(|b| b.handle()).collect(),
        output: output.handle(),
        workgroups,
        fusable: Fusable { node: Node::Product, n: elements, access: inputs.iter().map(|_| Access::Dense).collect() },
        record: None,
        product: Some(store),
    })
}

pub(crate) fn launch_elementwise(
    g: &GpuContext,
    shader: &'static str,
    constants: &[(&'static str, f64)],
    params: Params,
    inputs: &[&Buffer],
    outputs: &[&Buffer],
    n: usize,
) -> Result<()> {
    dispatch(g, shader, "main", constants, &params, inputs, outputs, groups(n, 256))
}

/// f32 view of host words.
pub(crate) fn f32s(w: &[u32]) -> &[f32] {
    bytemuck::cast_slice(w)
}

/// Mutable f32 view of host words.
pub(crate) fn f32s_mut(w: &mut [u32]) -> &mut [f32] {
    bytemuck::cast_slice_mut(w)
}
