//! The matmul kernels' epilogue: what happens to a product's f32 sums as
//! they are stored (`store4` in `shaders/matmul.wgsl`, shared by both kernel
//! families). The sums may be scaled (attention's `q kᵀ · scale`), a bias
//! added (a convolution's per-output-channel bias, a Linear layer's
//! per-feature one), a ReLU applied (a Linear → ReLU block) or, in the
//! `_act` variants, any other op of the unary table (a Linear → GELU
//! block; `matmul::matmul_activation`), a residual
//! added (a Transformer block's `x + f(x)`), and the result stored rounded
//! once to packed f16 (mixed precision's f16 activations), so none of them
//! costs a launch of its own or an intermediate buffer.
//!
//! The CPU twin (`kernels/matmul.rs`'s `HostEpilogue`) has the same semantics: f32 sums, times the scale in f32,
//! plus the bias in f32, the ReLU or the op, plus the residual, then one rounding to
//! nearest even (the `half` crate, as `shaders/half.wgsl`).

use super::operands::Operands;
use super::unary::UnaryOp;
use super::Params;
use crate::gpu::product_store::Tail;
pub use crate::kernels::matmul::BiasAxis;
use crate::kernels::matmul::HostEpilogue;
use crate::{Buffer, Error, Result};

/// A bias added to a product's f32 sums before they are stored.
#[derive(Clone, Copy, Debug)]
pub struct Bias<'a> {
    /// The values, f32.
    pub values: &'a Buffer,
    /// Rows or columns.
    pub axis: BiasAxis,
    /// Consecutive batch entries that read consecutive slices of `values`
    /// (entry `e` reads slice `e % groups`): a grouped convolution's groups,
    /// whose products are batch entries. 1 when every entry reads the same
    /// M (or N) values.
    pub groups: usize,
}

/// What the store does with the f32 sums. The default stores them as they
/// are, as f32.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// Multiplies the sums first (`None`: 1, the sums as they are).
    pub scale: Option<f32>,
    /// Added to the (scaled) sums, if any.
    pub bias: Option<Bias<'a>>,
    /// `max(v, 0)` after the bias (the shaders' `relu` parameter).
    pub relu: bool,
    /// Any other op of the unary table after the bias (the matmul's `_act`
    /// variants, a pipeline per op; a Linear followed by a GELU), before
    /// the residual; not with `relu`, and not in a convolution's store.
    /// f32 results of products one launch binds whole only:
    /// [`matmul_activation`](super::matmul::matmul_activation) runs the op
    /// as a launch of its own otherwise.
    pub activation: Option<UnaryOp>,
    /// With `activation`: also store the values before it here (f32, the
    /// result's shape), which the op's gradient reads.
    pub pre: Option<&'a Buffer>,
    /// Added last, after the ReLU: f32, the result's shape, dense (a
    /// residual connection's `x` in `x + f(x)`). In the store of an f32
    /// result one launch writes whole (an f16 result is such an f32 store
    /// and a cast: one rounding); a product split past the binding limit
    /// adds it after.
    pub residual: Option<&'a Buffer>,
    /// The result's storage: f32, or f16 rounded once from the f32 sums
    /// (bias included).
    pub output: Operands,
}

/// An epilogue's parameter members, as the shaders read them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Members {
    bias_axis: usize,
    bias_batches: usize,
    relu: bool,
    scale: f32,
    activation: Option<UnaryOp>,
    save_pre: bool,
}

impl Members {
    /// These members with the fuser's `tail` merged (`gpu/tails.rs`): a
    /// ReLU whose input is not stored is the `relu` switch, any other
    /// activation (or a ReLU whose input is) the `_act` variants' op; the
    /// residual is a constant ([`Epilogue::constants`]).
    pub(crate) fn with_tail(self, tail: &Tail) -> Members {
        match tail.activation {
            Some(UnaryOp::Relu) if !tail.pre => Members { relu: true, ..self },
            Some(op) => Members { activation: Some(op), save_pre: tail.pre, ..self },
            None => self,
        }
    }

    /// Whether the product adds a bias (binding 3 then holds it, so a
    /// ReLU gradient's `y` cannot go there).
    pub(crate) fn has_bias(&self) -> bool {
        self.bias_axis != 0
    }

    /// The op of the `_act` variants, if any.
    pub(crate) fn activation(&self) -> Option<UnaryOp> {
        self.activation
    }

    /// `params` followed by the members.
    pub(crate) fn write(self, params: Params) -> Params {
        let (alpha, beta) = self.activation.map_or((0.0, 0.0), UnaryOp::args);
        params
            .set_u32("bias_axis", self.bias_axis)
            .set_u32("bias_batches", self.bias_batches)
            .set_u32("relu", usize::from(self.relu))
            .set_f32("scale", self.scale)
            .set_f32("alpha", alpha)
            .set_f32("beta", beta)
            .set_u32("save_pre", usize::from(self.save_pre))
    }
}

/// An LSTM step's cell run in its recurrent product's store instead of an
/// epilogue (`matmul::cell_product`, `shaders/matmul_store_cell.wgsl`,
/// whose header says what each binding holds): the store reads `inputs`
/// (bindings 3-5) and writes `outputs` (6-8) instead of a result.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CellStore<'a> {
    /// The cell's backward (`CELL` 2) rather than its forward (1).
    pub backward: bool,
    pub inputs: [&'a Buffer; 3],
    /// The last is the next step's A, written only with `next` (the
    /// shader's `NEXT`); without it any buffer not otherwise bound.
    pub outputs: [&'a Buffer; 3],
    /// Write the next step's A: needed unless A is read through a texture
    /// ([`cell_reads_textures`](super::matmul::cell_reads_textures)).
    pub next: bool,
    /// Forward: `inputs[0]` is b_hh, added to the gates (`CELL_BIAS`).
    pub bias: bool,
    /// The shader's `cell_*` parameters, in order: hidden size, offsets
    /// of xw[t], of the state slots before and after t, of the cell-state
    /// block and of dy[t].
    pub params: [usize; 6],
}

impl<'a> Epilogue<'a> {
    /// No bias, an f16 result.
    pub fn f16() -> Self {
        Epilogue { output: Operands::F16, ..Epilogue::default() }
    }

    /// This epilogue with a ReLU after the bias.
    pub fn with_relu(self) -> Self {
        Epilogue { relu: true, ..self }
    }

    /// This epilogue with the sums multiplied by `scale` before the bias.
    pub fn with_scale(self, scale: f32) -> Self {
        Epilogue { scale: Some(scale), ..self }
    }

    /// This epilogue with `residual` added last.
    pub fn with_residual(self, residual: &'a Buffer) -> Self {
        Epilogue { residual: Some(residual), ..self }
    }

    /// This epilogue without its residual (the add then follows the product).
    pub(crate) fn without_residual(&self) -> Self {
        Epilogue { residual: None, ..*self }
    }

    /// This epilogue with `bias` added.
    pub fn with_bias(self, values: &'a Buffer, axis: BiasAxis, groups: usize) -> Self {
        Epilogue { bias: Some(Bias { values, axis, groups }), ..self }
    }

    /// Whether the store writes f16 for a product `n` columns wide. Packed
    /// f16 stores write whole 32-bit words, which a thread owns only when N
    /// is even; an odd N is stored as f32 and cast (see [`needs_cast`](Self::needs_cast)).
    pub(crate) fn stores_f16(&self, n: usize) -> bool {
        self.output == Operands::F16 && n.is_multiple_of(2)
    }

    /// Whether an f16 result needs the fallback: the f32 store, then a cast.
    pub(crate) fn needs_cast(&self, n: usize) -> bool {
        self.output == Operands::F16 && !self.stores_f16(n)
    }

    /// This epilogue with an f32 result (the fallback's first half).
    pub(crate) fn as_f32(&self) -> Self {
        Epilogue { output: Operands::F32, ..*self }
    }

    /// The shaders' override constants (`F16_OUT`: the store's type;
    /// `RESIDUAL`; `RELU_GRAD`, which only the fuser's tails set). The
    /// scale, the bias and the ReLU are parameters ([`params`](Self::params)),
    /// so they add no pipelines; a residual does (the few products that
    /// take one).
    pub(crate) fn constants(&self, n: usize) -> [(&'static str, f64); 3] {
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        [("F16_OUT", flag(self.stores_f16(n))), ("RESIDUAL", flag(self.residual.is_some())), ("RELU_GRAD", 0.0)]
    }

    /// The `_act` variants' constant (`OP`, the table code), if any.
    pub(crate) fn activation_constants(&self) -> Option<(&'static str, f64)> {
        self.activation.map(|op| ("OP", op.code() as f64))
    }

    /// `params` followed by the shaders' `bias_axis`, `bias_batches`,
    /// `relu`, `scale`, `alpha`, `beta` and `save_pre` parameters.
    pub(crate) fn params(&self, params: Params) -> Params {
        self.members().write(params)
    }

    /// The parameter members this epilogue sets, owned (a deferred
    /// product's store keeps them to rebuild its launch with a tail).
    pub(crate) fn members(&self) -> Members {
        let axis = match self.bias.map(|b| b.axis) {
            None => 0,
            Some(BiasAxis::Rows) => 1,
            Some(BiasAxis::Columns) => 2,
        };
        Members {
            bias_axis: axis,
            bias_batches: self.bias.map_or(1, |b| b.groups.max(1)),
            relu: self.relu,
            scale: self.scale.unwrap_or(1.0),
            activation: self.activation,
            save_pre: self.pre.is_some(),
        }
    }

    /// Errors (naming `op`) when the bias is not an f32 buffer of
    /// `groups · M` (rows) or `groups · N` (columns) values on `device`,
    /// `groups` does not divide the batch entries, or the residual is not
    /// `batches · M · N` f32 values on `device`.
    pub(crate) fn check(
        &self,
        op: &'static str,
        device: &crate::Device,
        (batches, m, n): (usize, usize, usize),
    ) -> Result<()> {
        if let Some(r) = self.residual {
            Buffer::check_same_device(op, device, &[r])?;
            r.check_len(op, "residual", batches * m * n, 4)?;
        }
        if self.activation.is_some() && self.relu {
            return Err(Error::invalid(op, "an epilogue takes a ReLU or another activation, not both"));
        }
        if self.pre.is_some() && self.activation.is_none() {
            return Err(Error::invalid(op, "values before an activation are stored only with one"));
        }
        if let Some(pre) = self.pre {
            Buffer::check_same_device(op, device, &[pre])?;
            pre.check_len(op, "pre-activation", batches * m * n, 4)?;
        }
        let Some(b) = self.bias else { return Ok(()) };
        Buffer::check_same_device(op, device, &[b.values])?;
        if b.groups == 0 || !batches.is_multiple_of(b.groups) {
            return Err(Error::invalid(
                op,
                format!("bias groups = {} must divide the {batches} batch entries of the product", b.groups),
            ));
        }
        let per = match b.axis {
            BiasAxis::Rows => m,
            BiasAxis::Columns => n,
        };
        b.values.check_len(op, "bias", b.groups * per, 4)
    }

    /// The epilogue before the rounding on the host: its buffers mapped to
    /// slices for the twin ([`HostEpilogue::apply_row`]: the scale, the bias,
    /// the ReLU or the activation, then the residual, on `sums` (`batches`
    /// entries of `m x n`, f32) in place), the values before the activation
    /// copied to `pre`. The rounding is `operands::HostOutput`'s. With
    /// `parallel` (the fast CPU backend) the rows go to all cores: the same
    /// steps per element, so the same bits.
    pub(crate) fn apply_cpu(&self, sums: &mut [f32], (m, n): (usize, usize), parallel: bool) {
        let nothing = self.scale.is_none()
            && self.bias.is_none()
            && !self.relu
            && self.activation.is_none()
            && self.residual.is_none()
            && self.pre.is_none();
        if nothing || m == 0 || n == 0 {
            return;
        }
        let (bias, residual) = (self.bias.map(|b| b.values.host()), self.residual.map(|r| r.host()));
        let host = HostEpilogue {
            scale: self.scale,
            bias: self.bias.zip(bias.as_ref()).map(|(b, h)| (super::f32s(h), b.axis, b.groups)),
            relu: self.relu,
            activation: self.activation,
            residual: residual.as_ref().map(|h| super::f32s(h)),
        };
        let mut pre_host = self.pre.map(Buffer::host_mut);
        let pre: &mut [f32] = match pre_host.as_mut() {
            Some(h) => &mut super::f32s_mut(h)[..sums.len()],
            None => &mut [],
        };
        crate::cpu::per_row2(parallel, (sums, n), (pre, n), |r, row, pre| host.apply_row(row, r, (m, n), pre));
    }
}
