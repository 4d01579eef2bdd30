//! One product's launch on a GPU ([`Job`]): its parameter block (the
//! kernels' uniform block [`PARAMS`]), override constants, bound windows
//! and texture spans, the store the fuser may extend with a tail
//! ([`MatmulStore`]), and the launches past the binding limit
//! (`binding_split.rs` plans them).

use super::binding_split::{Piece, Planner};
use super::family::{textured, Family, MatmulConfig};
use super::tiles::{coop_prefetch, coop_tile, subgroup_row_groups, tile, Reads, SMALL_PRODUCT};
use crate::gpu::product_store::{switch_on, ProductLaunch, ProductStore, Tail, Takes};
use crate::gpu::window::{window, Window};
use crate::gpu::{GpuContext, Launch};
use crate::kernels::conv::ConvGather;
use crate::kernels::matmul::BOperand;
use crate::layout::{Dims, Layout};
use crate::ops::epilogue::{BiasAxis, CellStore, Epilogue, Members};
use crate::ops::operands::Operands;
use crate::ops::{Kind, Params, ParamsDecl};
use crate::{Buffer, Error, Result};

/// `matmul.wgsl`'s uniform block (every matmul family and variant
/// includes it); the epilogue's members are written by
/// `Epilogue::params`.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "matmul",
    fields: &[
        ("batch_shape", Kind::Dims),
        ("a_bstrides", Kind::Dims),
        ("b_bstrides", Kind::Dims),
        ("m", Kind::U32),
        ("n", Kind::U32),
        ("k", Kind::U32),
        ("brank", Kind::U32),
        ("a_offset", Kind::U32),
        ("a_rs", Kind::U32),
        ("a_cs", Kind::U32),
        ("b_offset", Kind::U32),
        ("b_rs", Kind::U32),
        ("b_cs", Kind::U32),
        ("tiles_n", Kind::U32),
        ("tiles_per_batch", Kind::U32),
        ("workgroups", Kind::U32),
        ("conv_in_h", Kind::U32),
        ("conv_in_w", Kind::U32),
        ("conv_out_h", Kind::U32),
        ("conv_out_w", Kind::U32),
        ("conv_pad_top", Kind::U32),
        ("conv_pad_left", Kind::U32),
        ("conv_stride_h", Kind::U32),
        ("conv_stride_w", Kind::U32),
        ("bias_axis", Kind::U32),
        ("bias_batches", Kind::U32),
        ("relu", Kind::U32),
        ("scale", Kind::F32),
        ("alpha", Kind::F32),
        ("beta", Kind::F32),
        ("save_pre", Kind::U32),
        ("cell_hidden", Kind::U32),
        ("cell_x", Kind::U32),
        ("cell_prev", Kind::U32),
        ("cell_out", Kind::U32),
        ("cell_c", Kind::U32),
        ("cell_dy", Kind::U32),
    ],
};

/// The implicit-GEMM convolution's members, in `PARAMS` order.
const CONV_FIELDS: [&str; 8] = [
    "conv_in_h",
    "conv_in_w",
    "conv_out_h",
    "conv_out_w",
    "conv_pad_top",
    "conv_pad_left",
    "conv_stride_h",
    "conv_stride_w",
];

/// The LSTM cell epilogue's members, in `PARAMS` order.
const CELL_FIELDS: [&str; 6] = ["cell_hidden", "cell_x", "cell_prev", "cell_out", "cell_c", "cell_dy"];

/// `params` followed by the recurrent cell's members (zeros outside a cell store).
fn cell_members(mut params: Params, values: [usize; 6]) -> Params {
    for (name, v) in CELL_FIELDS.iter().zip(values) {
        params = params.set_u32(name, v);
    }
    params
}

/// How `matmul_subgroup.wgsl` reads one operand (its `A_MODE` / `B_MODE`):
/// 1 when the row stride is 1 (vec4 along rows), 2 when the column stride is
/// 1 (vec4 along columns), 0 (element by element) otherwise or when a vec4
/// would straddle a 16-byte boundary. A stride of a size-1 dim never matters,
/// batch dims included: a plain 2-D product is planned with one batch entry
/// of stride 1, which must not send it to element-by-element loads.
fn load_mode(rows: usize, cols: usize, rs: usize, cs: usize, batch: &Layout) -> u32 {
    let aligned = batch.offset.is_multiple_of(4)
        && batch.strides.iter().zip(&batch.shape).all(|(s, &len)| len == 1 || s.is_multiple_of(4));
    let unit = |s: usize, len: usize| s == 1 || len == 1;
    let quad = |s: usize, len: usize| s.is_multiple_of(4) || len == 1;
    if aligned && unit(cs, cols) && quad(rs, rows) {
        1
    } else if aligned && unit(rs, rows) && quad(cs, cols) {
        2
    } else {
        0
    }
}

/// Whether one launch binds a product's buffers whole: A, B, the
/// epilogue's bias and residual, and an output of `total` elements stored
/// as `epi.output`, each within the binding limit (otherwise the product
/// runs in pieces, `Job::split`). The output is judged by its bytes: the
/// pool never rounds a buffer that fits the limit past it
/// (`GpuContext::backing_size`), so every caller decides the same.
pub(super) fn binds_whole(g: &GpuContext, epi: &Epilogue, (a, b): (&Buffer, &Buffer), total: usize) -> bool {
    let limit = g.binding_limit();
    let epilogue = epi.bias.map(|bias| bias.values).into_iter().chain(epi.residual);
    total as u64 * epi.output.size() <= limit && [a, b].into_iter().chain(epilogue).all(|x| x.wgpu().size() <= limit)
}

/// One product as recorded on a GPU: everything a launch of it needs
/// besides the share of the work and the windows bound.
pub(super) struct Job<'a> {
    pub(super) g: &'a GpuContext,
    pub(super) cfg: MatmulConfig,
    /// The kernel family: tiled, subgroup or matrix units (`matmul_coop.wgsl`).
    pub(super) family: Family,
    pub(super) la: &'a Layout,
    pub(super) bop: &'a BOperand,
    pub(super) m: usize,
    pub(super) k: usize,
    pub(super) n: usize,
    pub(super) a: &'a Buffer,
    pub(super) b: &'a Buffer,
    pub(super) out: &'a Buffer,
    /// A's and B's strides over the coalesced batch shape.
    pub(super) bstrides: &'a [Dims],
}

/// One launch's share: batch dims `dims` (the coalesced ones from `level`
/// on), operand offsets relative to their windows, and M, K and N.
pub(super) struct Part<'a> {
    pub(super) dims: &'a [usize],
    pub(super) level: usize,
    pub(super) a_offset: usize,
    pub(super) b_offset: usize,
    pub(super) m: usize,
    pub(super) k: usize,
    pub(super) n: usize,
}

/// The buffers and windows one launch binds in place of the job's whole
/// A, B, bias and output (each `None`: the job's own, whole).
#[derive(Default)]
pub(super) struct Binds<'a> {
    pub(super) a: Option<Window>,
    pub(super) b: Option<Window>,
    pub(super) bias: Option<(&'a Buffer, Option<Window>)>,
    pub(super) out: Option<(&'a Buffer, Option<Window>)>,
    /// A recurrent cell stored instead of the result (`cell_product`).
    pub(super) cell: Option<CellStore<'a>>,
}

impl Job<'_> {
    /// Where the operands go through textures, windows of A and B around
    /// the elements their views reach (B's unless it is a convolution's
    /// gathered image), with `part`'s offsets made relative to them; no
    /// windows elsewhere. A texture operand is copied in whole, and a
    /// recurrent layer's per-step product reads one step's rows of a
    /// whole-sequence buffer that every step writes: bound whole, the LSTM
    /// bench copied 800 MB a step (docs/history/performance-issue-11.md).
    pub(super) fn texture_spans(&self, part: &mut Part) -> Binds<'static> {
        let mut binds = Binds::default();
        if !self.family.subgroup() || self.cfg.operands != Operands::F32 || part.k == 0 {
            return binds;
        }
        let (ra, bop, align) = (self.la.rank() - 2, self.bop, self.g.window_align());
        let span = |strides: &[usize], rows: (usize, usize), cols: (usize, usize)| {
            let batch = part.dims.iter().zip(strides).map(|(&d, &s)| (d - 1) * s).sum::<usize>();
            batch + (rows.0 - 1) * rows.1 + (cols.0 - 1) * cols.1 + 1
        };
        let (la, lb) = (
            span(&self.bstrides[0], (part.m, self.la.strides[ra]), (part.k, self.la.strides[ra + 1])),
            span(&self.bstrides[1], (part.k, bop.rs), (part.n, bop.cs)),
        );
        let (aw, a_shift) = window(part.a_offset, la, 4, align);
        let (bw, b_shift) = window(part.b_offset, lb, 4, align);
        let b_spanned = bop.conv.is_none();
        let sizes = [aw.size, if b_spanned { bw.size } else { self.b.wgpu().size() }];
        if !self.g.wants_texture_operands(sizes) {
            return binds;
        }
        (binds.a, part.a_offset) = (Some(aw), part.a_offset - a_shift);
        if b_spanned {
            (binds.b, part.b_offset) = (Some(bw), part.b_offset - b_shift);
        }
        binds
    }

    /// Records one launch of the kernel over `part`, stored through `epi`.
    pub(super) fn launch(&self, epi: &Epilogue, part: &Part, binds: Binds) -> Result<()> {
        let cell = binds.cell;
        let (g, bop) = (self.g, self.bop);
        let (m, k, n) = (part.m, part.k, part.n);
        let ra = self.la.rank() - 2;
        let (a_rs, a_cs, b_rs, b_cs) = (self.la.strides[ra], self.la.strides[ra + 1], bop.rs, bop.cs);
        let batches: usize = part.dims.iter().product();
        let strides = |i: usize| &self.bstrides[i][part.level..];
        // f32 operands of the subgroup kernel are read through textures.
        let textures = self.family.subgroup()
            && self.cfg.operands == Operands::F32
            && textured(g, [(self.a, binds.a), (self.b, binds.b)])
            && cell.is_none_or(|c| g.wants_texture_operands(c.inputs.map(|b| b.wgpu().size())));
        let reads = match (textures, bop.conv.is_some()) {
            (false, _) => Reads::Buffers,
            (true, false) => Reads::Textures { small: batches * m * n * k < SMALL_PRODUCT },
            (true, true) => Reads::ConvTextures,
        };
        let coop_tile = self.family.units().map(|units| coop_tile(g, units, m, n)).transpose()?;
        let (tile_m, tile_n) = match coop_tile {
            Some(t) => (t.m, t.n),
            None => tile(self.family.subgroup(), reads, m, n, batches)?,
        };
        let (tiles_m, tiles_n) = (m.div_ceil(tile_m), n.div_ceil(tile_n));
        let workgroups = u32::try_from(batches * tiles_m * tiles_n)
            .map_err(|_| Error::invalid("matmul", format!("too many tiles for one launch: {batches} x {m} x {n}")))?;
        let geo = bop.conv.map(|(_, geo)| geo);
        let conv_dims = geo
            .map_or([0; 8], |g| [g.in_h, g.in_w, g.out_h(), g.out_w(), g.pad_top, g.pad_left, g.stride_h, g.stride_w]);
        let mut params = Params::of(&PARAMS)
            .set_dims("batch_shape", part.dims)
            .set_dims("a_bstrides", strides(0))
            .set_dims("b_bstrides", strides(1))
            .set_u32("m", m)
            .set_u32("n", n)
            .set_u32("k", k)
            .set_u32("brank", part.dims.len())
            .set_u32("a_offset", part.a_offset)
            .set_u32("a_rs", a_rs)
            .set_u32("a_cs", a_cs)
            .set_u32("b_offset", part.b_offset)
            .set_u32("b_rs", b_rs)
            .set_u32("b_cs", b_cs)
            .set_u32("tiles_n", tiles_n)
            .set_u32("tiles_per_batch", tiles_m * tiles_n)
            .set_u32("workgroups", workgroups as usize);
        for (name, d) in CONV_FIELDS.iter().zip(conv_dims) {
            params = params.set_u32(name, d);
        }
        // A plain product bound whole (f32, or f16 rounded in the store)
        // waits in the fuser's run, which may merge its readers into its
        // store (`gpu/tails.rs`): its store keeps the block up to the
        // epilogue's members (`prefix`) and finishes it for the tail the
        // fuser finds.
        let plain = cell.is_none() && epi.residual.is_none() && epi.activation.is_none() && !epi.relu;
        let stores = epi.output == Operands::F32 || epi.stores_f16(n);
        let defer = plain && binds.out.is_none() && stores && g.fusion_enabled();
        let (prefix, params) = match defer {
            true => (Some(params), Params::new()),
            false => (None, cell_members(epi.params(params), cell.map_or([0; 6], |c| c.params))),
        };
        let flag = |f: bool| if f { 1.0 } else { 0.0 };
        // Inline: a product's launch sets up to ~30 constants.
        let mut constants: smallvec::SmallVec<[(&str, f64); 32]> = if self.family.subgroup() {
            let view =
                |offset: usize, strides: &[usize]| Layout { shape: part.dims.into(), strides: strides.into(), offset };
            // Texture operands take mode 3 whatever their strides: a texel
            // is fetched alone either way, and one pipeline per product form
            // instead of one per layout saves llvmpipe a JIT (matmul_subgroup.wgsl).
            let b_mode = match (bop.conv.is_some(), textures) {
                (true, _) => 0,
                (false, true) => 3,
                (false, false) => load_mode(k, n, b_rs, b_cs, &view(part.b_offset, strides(1))),
            };
            let a_mode = if textures { 3 } else { load_mode(m, k, a_rs, a_cs, &view(part.a_offset, strides(0))) };
            smallvec::smallvec![
                ("A_MODE", a_mode as f64),
                ("B_MODE", b_mode as f64),
                // Below 64 rows only the first m.div_ceil(8) row groups hold results.
                ("ROW_GROUPS", m.div_ceil(8).min(subgroup_row_groups(reads, m)) as f64),
            ]
        } else {
            // Tile loads walk the unit-stride index of each operand, so
            // plain and transposed operands both read contiguously. A
            // gathered B is contiguous along its columns for forms 1 and
            // 3 (neighbouring pixels), along its rows for form 2.
            let b_k_fast = match bop.conv {
                Some((form, _)) => form == ConvGather::ColumnsT,
                None => b_rs == 1 && b_cs != 1,
            };
            let a_k_fast = !(a_rs == 1 && a_cs != 1);
            let mut constants: smallvec::SmallVec<[_; 32]> =
                smallvec::smallvec![("A_K_FAST", flag(a_k_fast)), ("B_K_FAST", flag(b_k_fast))];
            if let (Some(units), Some(t)) = (self.family.units(), coop_tile) {
                // Whole aligned vec4 loads along the index the loaders walk
                // (load_mode 1: along rows, 2: along columns).
                let view = |offset: usize, strides: &[usize]| Layout {
                    shape: part.dims.into(),
                    strides: strides.into(),
                    offset,
                };
                let a_mode = load_mode(m, k, a_rs, a_cs, &view(part.a_offset, strides(0)));
                let b_mode = match bop.conv {
                    Some(_) => 0,
                    None => load_mode(k, n, b_rs, b_cs, &view(part.b_offset, strides(1))),
                };
                constants.extend([
                    ("A_VEC", flag(a_mode == if a_k_fast { 1 } else { 2 })),
                    ("B_VEC", flag(b_mode == if b_k_fast { 2 } else { 1 })),
                    ("SG_M", t.subgroups().0 as f64),
                    ("SG_N", t.subgroups().1 as f64),
                    ("FN", t.frags_n as f64),
                    ("SG_SIZE", units.subgroup_size as f64),
                    ("PREFETCH", flag(coop_prefetch())),
                ]);
            }
            constants
        };
        constants.extend([("TILE_M", tile_m as f64), ("TILE_N", tile_n as f64)]);
        constants.extend(epi.constants(n));
        if let Some((form, g)) = bop.conv {
            constants.push(("B_CONV", form.code()));
            constants.extend(g.gather_constants(form == ConvGather::Adjoint));
        }
        let (mut shader, entry) = self.cfg.shader(g, self.family)?;
        if textures {
            shader = "matmul_subgroup_tex";
        }
        let act_shader = crate::kernels::matmul::act_variant(shader);
        if let Some(act) = epi.activation_constants() {
            shader = act_shader;
            constants.push(act);
        }
        if let Some(c) = cell {
            shader = match (self.family.subgroup(), textures) {
                (true, true) => "matmul_subgroup_cell_tex",
                (true, false) => "matmul_subgroup_cell",
                (false, _) => "matmul_cell",
            };
            if !c.next && !textures {
                return Err(Error::invalid(
                    "recurrent_step",
                    "a cell store that does not write the next A needs A read through a texture",
                ));
            }
            constants.extend([
                ("CELL", if c.backward { 2.0 } else { 1.0 }),
                ("NEXT", flag(c.next)),
                ("CELL_BIAS", flag(c.bias)),
            ]);
        }
        let launch = |inputs: &[&wgpu::Buffer], outputs: &[&wgpu::Buffer], windows: &[Option<Window>]| {
            let l =
                Launch { shader, entry, constants: &constants, params: params.finish(), inputs, outputs, workgroups };
            crate::ops::launch::dispatch_launch(g, &l, windows)
        };
        if let Some(c) = cell {
            let [i3, i4, i5] = c.inputs.map(Buffer::wgpu);
            let [o6, o7, o8] = c.outputs.map(Buffer::wgpu);
            return launch(&[self.a.wgpu(), self.b.wgpu(), i3, i4, i5], &[o6, o7, o8], &[binds.a, binds.b]);
        }
        // Without a bias the kernel never reads binding 3, nor binding 4
        // without a residual: A (its window) fills them.
        let (bias, bias_window) = match (binds.bias, epi.bias) {
            (Some(b), _) => b,
            (None, Some(b)) => (b.values, None),
            (None, None) => (self.a, binds.a),
        };
        // A residual is indexed like the whole output (product() keeps it
        // away from split launches, which store windows).
        debug_assert!(epi.residual.is_none() || binds.out.is_none());
        let (residual, residual_window) = epi.residual.map_or((self.a, binds.a), |r| (r, None));
        let (out, out_window) = binds.out.unwrap_or((self.out, None));
        let inputs = [self.a.wgpu(), self.b.wgpu(), bias.wgpu(), residual.wgpu()];
        if epi.activation.is_some() {
            // The `_act` variants also write the values before the op
            // (binding 6); without `pre` they never do, and C fills it.
            // Activations run only where one launch binds C whole.
            debug_assert!(binds.out.is_none());
            let pre = epi.pre.unwrap_or(out);
            let windows = [binds.a, binds.b, bias_window, residual_window, None, None];
            return launch(&inputs, &[out.wgpu(), pre.wgpu()], &windows);
        }
        if let Some(prefix) = prefix {
            let store = MatmulStore {
                shader,
                act_shader,
                entry,
                constants,
                prefix,
                members: epi.members(),
                windows: [binds.a, binds.b, bias_window, residual_window],
                workgroups,
                conv: bop.conv.is_some(),
                f16_out: epi.stores_f16(n),
            };
            let elements = batches * m * n;
            return crate::ops::launch::dispatch_product(g, &[self.a, self.b, bias], out, elements, Box::new(store));
        }
        let windows = [binds.a, binds.b, bias_window, residual_window, out_window];
        launch(&inputs, &[out.wgpu()], &windows)
    }

    /// Records the product as several launches, each binding at most the
    /// binding limit (see `binding_split.rs`).
    pub(super) fn split(&self, epi: &Epilogue, bshape: &[usize], shape: &[usize]) -> Result<()> {
        let (g, n) = (self.g, self.n);
        let too_large = |why: &str| Error::LimitExceeded {
            what: format!("matmul of shape {shape:?}: {why}"),
            needed: self.a.len_bytes().max(self.b.len_bytes()).max(self.out.len_bytes()),
            limit: "max_storage_buffer_binding_size",
            allowed: g.binding_limit(),
        };
        if self.bop.conv.is_some() {
            return Err(Error::LimitExceeded {
                what: format!("conv2d (its implicit-GEMM product of shape {shape:?}; convolutions are not split: lower the batch size)"),
                needed: self.b.len_bytes().max(self.out.len_bytes()),
                limit: "max_storage_buffer_binding_size",
                allowed: g.binding_limit(),
            });
        }
        if epi.bias.is_some_and(|b| b.groups > 1) {
            return Err(too_large("a product with a grouped bias is not split"));
        }
        let ra = self.la.rank() - 2;
        let esize = self.cfg.operands.size();
        let align = g.window_align();
        let planner = Planner {
            dims: bshape.to_vec(),
            a_strides: self.bstrides[0].to_vec(),
            b_strides: self.bstrides[1].to_vec(),
            a_offset: self.la.offset,
            b_offset: self.bop.offset,
            a_rs: self.la.strides[ra],
            a_cs: self.la.strides[ra + 1],
            b_rs: self.bop.rs,
            b_cs: self.bop.cs,
            m: self.m,
            k: self.k,
            n,
            operand_bytes: esize,
            out_bytes: epi.output.size(),
            bias_columns: match epi.bias {
                Some(b) if b.axis == BiasAxis::Columns => 4,
                _ => 0,
            },
            bias_rows: match epi.bias {
                Some(b) if b.axis == BiasAxis::Rows => 4,
                _ => 0,
            },
            limit: g.binding_limit(),
            align,
        };
        for piece in planner.plan(&format!("matmul of shape {shape:?}"))? {
            self.piece(epi, &planner, &piece)?;
        }
        Ok(())
    }

    /// Records one piece of a split product: its launch (one per K range,
    /// their partial sums added), into the output directly when its rows
    /// are whole and start at an aligned byte, else into a scratch buffer
    /// copied there (row by row for a range of columns).
    fn piece(&self, epi: &Epilogue, p: &Planner, q: &Piece) -> Result<()> {
        let (g, n) = (self.g, self.n);
        let dev = self.a.device();
        let entries: usize = q.dims.iter().product::<usize>().max(1);
        let (rows, cols) = (q.rows.len(), q.cols.len());
        let count = entries * rows * cols;
        let first = q.entry * self.m * n + q.rows.start * n + q.cols.start;
        let (obytes, esize) = (epi.output.size(), self.cfg.operands.size());
        let batch_parts = |s: &[usize]| q.dims.iter().zip(&s[q.level..]).map(|(&d, &s)| (d, s)).collect::<Vec<_>>();
        // The bias of this piece's rows or columns: the kernel reads it from
        // the start of its binding, so a piece starting at an unaligned
        // byte gets a copy.
        let bias_part;
        let bias: Option<(&Buffer, Option<Window>)> = match epi.bias {
            Some(b) => {
                let (start, len) = match b.axis {
                    BiasAxis::Rows => (q.rows.start, rows),
                    BiasAxis::Columns => (q.cols.start, cols),
                };
                if (start as u64 * 4).is_multiple_of(p.align) {
                    Some((b.values, Some(window(start, len, 4, p.align).0)))
                } else {
                    bias_part = Buffer::alloc(dev, len as u64 * 4)?;
                    g.copy_range(b.values.wgpu(), start as u64 * 4, bias_part.wgpu(), 0, len as u64 * 4)?;
                    Some((&bias_part, None))
                }
            }
            None => None,
        };
        let split_k = q.ks.len() > 1;
        let whole_rows = cols == n;
        let mut partials = Vec::with_capacity(q.ks.len());
        for (i, ks) in q.ks.iter().enumerate() {
            let a0 = q.a + q.rows.start * p.a_rs + ks.start * p.a_cs;
            let b0 = q.b + ks.start * p.b_rs + q.cols.start * p.b_cs;
            let mut a_parts = batch_parts(&p.a_strides);
            a_parts.extend([(rows, p.a_rs), (ks.len(), p.a_cs)]);
            let mut b_parts = batch_parts(&p.b_strides);
            b_parts.extend([(ks.len(), p.b_rs), (cols, p.b_cs)]);
            let span = |parts: &[(usize, usize)]| parts.iter().map(|&(d, s)| (d - 1) * s).sum::<usize>() + 1;
            let (aw, a_shift) = window(a0, span(&a_parts), esize, p.align);
            let (bw, b_shift) = window(b0, span(&b_parts), esize, p.align);
            // Split-K partials are f32 sums, each scaled (the scale is
            // linear); the bias goes in once, with the first. The ReLU, like
            // the rounding, waits for the whole sum.
            let step_epi = if split_k {
                let bias = if i == 0 { epi.bias } else { None };
                Epilogue { bias, relu: false, output: Operands::F32, ..*epi }
            } else {
                *epi
            };
            let step_bytes = count as u64 * step_epi.output.size();
            let direct = !split_k && whole_rows && (first as u64 * obytes).is_multiple_of(p.align);
            let scratch;
            let out = if direct {
                (self.out, Some(Window { offset: first as u64 * obytes, size: step_bytes.next_multiple_of(16) }))
            } else {
                scratch = Buffer::alloc(dev, step_bytes)?;
                (&scratch, None)
            };
            let binds = Binds {
                a: Some(aw),
                b: Some(bw),
                bias: if step_epi.bias.is_some() { bias } else { None },
                out: Some(out),
                cell: None,
            };
            let part = Part {
                dims: &q.dims,
                level: q.level,
                a_offset: a0 - a_shift,
                b_offset: b0 - b_shift,
                m: rows,
                k: ks.len(),
                n: cols,
            };
            self.launch(&step_epi, &part, binds)?;
            if !direct {
                partials.push(out.0.clone());
            }
        }
        let Some(mut sum) = partials.first().cloned() else { return Ok(()) };
        let flat = Layout::contiguous(&[count]);
        for part in &partials[1..] {
            sum = crate::ops::binary::binary(crate::ops::binary::BinaryOp::Add, &sum, &flat, part, &flat)?.0;
        }
        if split_k && epi.relu {
            sum = crate::ops::unary::unary(crate::ops::unary::UnaryOp::Relu, &sum, count)?;
        }
        if split_k && epi.output == Operands::F16 {
            sum = crate::ops::cast::f32_to_f16(&sum, count)?;
        }
        if whole_rows {
            return g.copy_range(sum.wgpu(), 0, self.out.wgpu(), first as u64 * obytes, count as u64 * obytes);
        }
        for r in 0..rows {
            let src = (r * cols) as u64 * obytes;
            let dst = (first + r * n) as u64 * obytes;
            g.copy_range(sum.wgpu(), src, self.out.wgpu(), dst, cols as u64 * obytes)?;
        }
        Ok(())
    }
}

/// A deferred product's launch, rebuilt for the tail the fuser finds
/// (`gpu/tails.rs`): everything [`Job::launch`] chose but the epilogue's
/// tail. Holds no buffer (the deferred launch's handles are its inputs),
/// so the product's result is never held by it.
pub(super) struct MatmulStore {
    shader: &'static str,
    /// The `_act` variant of `shader`.
    act_shader: &'static str,
    entry: &'static str,
    constants: smallvec::SmallVec<[(&'static str, f64); 32]>,
    /// The parameter block up to the epilogue's members.
    prefix: Params,
    members: Members,
    /// A, B, the bias and the residual (A's window when there is none).
    windows: [Option<Window>; 4],
    workgroups: u32,
    /// A convolution's store: no activation but the ReLU (no `_act`
    /// variant gathers).
    conv: bool,
    /// The store writes f16 (`F16_OUT`).
    f16_out: bool,
}

impl ProductStore for MatmulStore {
    fn recorded(&self) -> (&'static str, &'static str, u32) {
        (self.shader, self.entry, self.workgroups)
    }

    fn takes(&self) -> Takes {
        // A ReLU gradient's y is bound where the bias is: a gradient's
        // product has none.
        let relu_grad = !self.members.has_bias();
        if self.f16_out {
            // Rounding where the casts between the unfused steps do: an f16
            // residual, then the ReLU's gradient at an f16 y. No
            // activation: the `_act` variants store f32.
            return Takes { rounds: true, residual: true, relu_grad, ..Takes::default() };
        }
        Takes { relu: true, activation: !self.conv, residual: true, relu_grad, ..Takes::default() }
    }

    fn constants(&self) -> &[(&'static str, f64)] {
        &self.constants
    }

    fn launch(&self, tail: &Tail) -> ProductLaunch {
        let mut constants = self.constants.clone();
        switch_on(&mut constants, &[("RESIDUAL", tail.residual), ("RELU_GRAD", tail.relu_grad)]);
        let members = self.members.with_tail(tail);
        let act = members.activation();
        if let Some(op) = act {
            constants.push(("OP", op.code() as f64));
        }
        let params = cell_members(members.write(self.prefix.clone()), [0; 6]);
        let mut windows: smallvec::SmallVec<[Option<Window>; 8]> = self.windows.into_iter().collect();
        for (slot, on) in [(2, tail.relu_grad), (3, tail.residual)] {
            if on {
                windows[slot] = None;
            }
        }
        ProductLaunch {
            shader: if act.is_some() { self.act_shader } else { self.shader },
            entry: self.entry,
            constants,
            params: params.finish().into(),
            windows,
            workgroups: self.workgroups,
            inputs: 4,
            residual_slot: Some(3),
            relu_grad_slot: Some(2),
            binds_pre: act.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Dims;

    #[test]
    fn load_modes_follow_strides_and_alignment() {
        let batch = |offset, strides: &[usize]| Layout {
            shape: Dims::filled(2, strides.len()),
            strides: strides.into(),
            offset,
        };
        let plain = batch(0, &[]);
        assert_eq!(load_mode(5, 8, 8, 1, &plain), 1); // row-major, rows 32 bytes apart
        assert_eq!(load_mode(8, 5, 1, 8, &plain), 2); // transposed
        assert_eq!(load_mode(5, 7, 7, 1, &plain), 0); // rows 28 bytes apart
        assert_eq!(load_mode(1, 7, 7, 1, &plain), 1); // one row: its stride is irrelevant
        assert_eq!(load_mode(5, 8, 8, 1, &batch(2, &[])), 0); // misaligned offset
        assert_eq!(load_mode(5, 8, 8, 1, &batch(0, &[40, 0])), 1);
        assert_eq!(load_mode(5, 8, 8, 1, &batch(0, &[42])), 0); // misaligned batch stride
                                                                // One batch entry: its stride is irrelevant (a plain 2-D product).
        let single = Layout { shape: Dims::from([1]), strides: Dims::from([1]), offset: 0 };
        assert_eq!(load_mode(5, 8, 8, 1, &single), 1);
        assert_eq!(load_mode(8, 5, 1, 8, &single), 2);
        assert_eq!(load_mode(5, 8, 16, 2, &plain), 0); // no unit stride
    }
}
