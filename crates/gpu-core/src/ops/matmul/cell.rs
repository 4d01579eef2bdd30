//! A recurrent step's product with the LSTM cell in its store instead of a
//! result ([`CellStore`]): one launch per step, nothing allocated.

use super::family::{subgroup_kernel_fits, Family};
use super::family::{MatmulConfig, MatmulKernel};
use super::job::{Binds, Job, Part};
use super::{check_shapes, strided_b};
use crate::layout::coalesce;
use crate::layout::Layout;
use crate::ops::epilogue::{CellStore, Epilogue};
use crate::{Buffer, Error, Result};

/// Whether a [`cell_product`] on `kernel` runs on `dev` binding each of
/// `buffers` (every buffer its launches bind) whole: a GPU whose per-stage
/// limits hold its bindings, 8 storage buffers, or 5 storage textures and
/// 3 buffers where it reads through textures ([`cell_reads_textures`]).
pub(crate) fn cell_product_runs(kernel: MatmulKernel, dev: &crate::Device, buffers: &[&Buffer]) -> bool {
    let Some(g) = dev.gpu_ctx() else { return false };
    let l = &g.limits;
    let fits = if cell_reads_textures(kernel, dev, buffers) {
        l.max_storage_textures_per_shader_stage >= 5 && l.max_storage_buffers_per_shader_stage >= 3
    } else {
        l.max_storage_buffers_per_shader_stage >= 8
    };
    fits && buffers.iter().all(|b| b.wgpu().size() <= g.binding_limit())
}

/// Whether a [`cell_product`] on `kernel` reads its operands and inputs
/// (whole `buffers` or windows of them) through textures: then A may be a
/// view of a buffer the launch writes, and the store need not write the
/// next A ([`CellStore::next`]).
pub(crate) fn cell_reads_textures(kernel: MatmulKernel, dev: &crate::Device, buffers: &[&Buffer]) -> bool {
    dev.gpu_ctx().is_some_and(|g| {
        kernel.resolve(dev) == MatmulKernel::Subgroup
            && subgroup_kernel_fits(g)
            && g.wants_texture_operands(buffers.iter().map(|b| b.wgpu().size()))
    })
}

/// Records `a @ b` (2-D views, f32) on a GPU, on `kernel`, with an LSTM
/// step's cell in its store instead of a result ([`CellStore`]): one
/// launch, nothing allocated. The caller has checked [`cell_product_runs`] for every
/// buffer; an error when the product is not 2-D or `dev` is no GPU.
pub(crate) fn cell_product(
    kernel: MatmulKernel,
    a: &Buffer,
    la: &Layout,
    b: &Buffer,
    lb: &Layout,
    cell: CellStore,
) -> Result<()> {
    const OP: &str = "recurrent_step";
    let dev = a.device();
    let Some(g) = dev.gpu_ctx() else {
        return Err(Error::invalid(OP, "a cell in the product's store runs on a GPU only"));
    };
    let (batch, _, vb) = check_shapes(la, lb)?;
    if !batch.is_empty() {
        return Err(Error::invalid(OP, format!("expects 2-D operands, got {:?} @ {:?}", la.shape, lb.shape)));
    }
    for (buf, l) in [(a, la), (b, lb)] {
        buf.check_len(OP, "operand", l.span(), 4)?;
    }
    let (m, k, n) = (la.shape[0], la.shape[1], lb.shape[1]);
    if m * n == 0 {
        return Ok(());
    }
    crate::profiler::annotate_flops(2 * (m * n * k) as u64);
    let cfg = MatmulConfig { kernel, ..MatmulConfig::default() };
    let family = Family::of(cfg, g, dev, OP)?;
    let bop = strided_b(lb, vb);
    let (bshape, bstrides) = coalesce(&[], &[&[], &[]]);
    let out = cell.outputs[0];
    let job = Job { g, cfg, family, la, bop: &bop, m, k, n, a, b, out, bstrides: &bstrides };
    let mut whole = Part { dims: &bshape, level: 0, a_offset: la.offset, b_offset: lb.offset, m, k, n };
    let binds = Binds { cell: Some(cell), ..job.texture_spans(&mut whole) };
    job.launch(&Epilogue::default(), &whole, binds)
}
