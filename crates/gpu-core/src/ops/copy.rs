//! Strided copies (`shaders/copy.wgsl`): materialising views, writing into
//! views of existing buffers, and concatenation.
//!
//! One kernel does all three: element `i` (row-major) of a source view goes
//! to element `i` of a destination view of the same shape. Elements move as
//! 32-bit words, so f32 and u32 buffers copy alike and bit-exactly; f16 views
//! (two halves per word) are made dense by [`contiguous_f16`], as exactly.

use super::{dispatch_fusable, groups, launch_elementwise, run, Kind, Params, ParamsDecl};
use crate::gpu::fusion::{Access, Fusable, Node};
use crate::gpu::split::{self, LeafRead};
use crate::gpu::{GpuContext, Launch};
use crate::kernels::copy::copy_view;
use crate::layout::Dims;
use crate::layout::{coalesce, numel, Layout};
use crate::{Buffer, Error, Result};

/// `copy.wgsl`'s uniform block.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "copy",
    fields: &[
        ("shape", Kind::Dims),
        ("src_strides", Kind::Dims),
        ("dst_strides", Kind::Dims),
        ("n", Kind::U32),
        ("src_offset", Kind::U32),
        ("dst_offset", Kind::U32),
        ("base", Kind::U32),
    ],
};

/// `copy.wgsl`'s block: `n` elements of the view (`shape`, strides of
/// source and destination) from `(src_offset, dst_offset)`, the launch's
/// first element `base`.
fn copy_params(shape: &[usize], [src, dst]: [&[usize]; 2], n: usize, (so, d): (usize, usize), base: usize) -> Params {
    Params::of(&PARAMS)
        .set_dims("shape", shape)
        .set_dims("src_strides", src)
        .set_dims("dst_strides", dst)
        .set_u32("n", n)
        .set_u32("src_offset", so)
        .set_u32("dst_offset", d)
        .set_u32("base", base)
}

/// Errors unless `layout` is a rank the kernels accept and lies inside `buf`.
fn check_view(op: &'static str, what: &str, buf: &Buffer, layout: &Layout) -> Result<()> {
    layout.check_rank(op)?;
    buf.check_len(op, what, layout.span(), 4)
}

/// True when no two elements of the view share a buffer index. Sorted by
/// stride, each dim must step past everything the finer dims reach; this is
/// sufficient (not necessary) and holds for every permute/narrow of a dense
/// buffer, while broadcast (stride 0) views fail it.
fn is_non_overlapping(l: &Layout) -> bool {
    if l.numel() == 0 {
        return true;
    }
    let mut dims: Vec<(usize, usize)> =
        l.shape.iter().zip(&l.strides).filter(|(&d, _)| d > 1).map(|(&d, &s)| (s, d)).collect();
    dims.sort_unstable();
    let mut reach = 0;
    for (stride, size) in dims {
        if stride <= reach {
            return false;
        }
        reach += (size - 1) * stride;
    }
    true
}

/// `dst[dst_view[i]] = src[src_view[i]]` for every element. Callers have
/// checked shapes, spans, devices and that `src` and `dst` are different
/// buffers (wgpu forbids binding one buffer as both read and read-write, and
/// the CPU twin would lock it twice).
fn copy_raw(src: &Buffer, sl: &Layout, dst: &Buffer, dl: &Layout) -> Result<()> {
    copy_words(src, sl, (dst, dl), false)
}

/// [`copy_raw`]; with `gather` (`dst` is a fresh dense buffer only this copy
/// writes: [`contiguous`]) the launch is deferred as the fuser's
/// [`Node::Gather`], so an elementwise consumer reads the view in place and
/// the copy is never made (when it fuses with nothing, this same launch runs).
fn copy_words(src: &Buffer, sl: &Layout, (dst, dl): (&Buffer, &Layout), gather: bool) -> Result<()> {
    let n = sl.numel();
    if n == 0 {
        return Ok(());
    }
    run(
        src.device(),
        |g| {
            let (shape, st) = coalesce(&sl.shape, &[&sl.strides, &dl.strides]);
            let dense_dst = shape.len() == 1 && st[1][0] == 1;
            let constants =
                [("DENSE_DST", if dense_dst { 1.0 } else { 0.0 }), ("RANK", shape.len() as f64), ("RUN", RUN as f64)];
            let params = |n, [src_shift, dst_shift]: [usize; 2], base| {
                let offsets = (rel(sl.offset, src_shift), rel(dl.offset, dst_shift));
                copy_params(&shape, [&st[0], &st[1]], n, offsets, base)
            };
            let limit = g.binding_limit();
            if gather && src.len_bytes() <= limit && dst.len_bytes() <= limit {
                let shader = g.texture_variant("copy", [src.len_bytes()]);
                let what = Fusable {
                    node: Node::Gather,
                    n,
                    access: smallvec::smallvec![Access::of(&shape, &st[0], sl.offset)],
                };
                let p = params(n, [0, 0], 0);
                let workgroups = groups(n.div_ceil(RUN), 256);
                return dispatch_fusable(g, shader, "main", &constants, &p, &[src], dst, workgroups, what);
            }
            let read =
                |strides: &[usize], offset| LeafRead { maps: vec![Access::of(&shape, strides, offset)], half: false };
            let reads = [read(&st[0], sl.offset), read(&st[1], dl.offset)];
            launch_copy(g, (src, dst), &constants, (n, false), &reads, params)
        },
        || {
            let (s, mut d) = (src.host(), dst.host_mut());
            if src.device().runs_fast_cpu() {
                return crate::cpu::copy::copy(&s, sl, &mut d, dl);
            }
            copy_view(&s, sl, &mut d, dl);
        },
    )
}

/// Elements each thread of a 32-bit copy moves (the `RUN` constant of
/// `copy.wgsl`): its first element's place costs a division per dim, the
/// next ones a compare per dim.
const RUN: usize = 4;

/// `offset` relative to a window starting `shift` elements in, wrapping in
/// u32 as the kernel's index arithmetic does.
fn rel(offset: usize, shift: usize) -> usize {
    (offset as u32).wrapping_sub(shift as u32) as usize
}

/// Records `copy.wgsl` over `n` elements (f32 words, or with `half` f16
/// halves, one thread per output word): one launch, or, when `src` or `dst`
/// is past the binding limit, one per range of elements, each binding the
/// windows that `reads` (source, destination) reach. `params(len, shifts,
/// base)` is the uniform block of a launch over `len` elements from `base`
/// whose windows start `shifts` elements in (zeros for a whole launch).
fn launch_copy(
    g: &GpuContext,
    (src, dst): (&Buffer, &Buffer),
    constants: &[(&'static str, f64)],
    (n, half): (usize, bool),
    reads: &[LeafRead; 2],
    params: impl Fn(usize, [usize; 2], usize) -> Params,
) -> Result<()> {
    // A 32-bit copy's threads move RUN consecutive elements each (its
    // caller sets the constant), an f16 copy's one word of two.
    let threads = |len: usize| if half { len.div_ceil(2) } else { len.div_ceil(RUN) };
    let limit = g.binding_limit();
    let shader = g.texture_variant("copy", [src.len_bytes().min(limit)]);
    if src.len_bytes() <= limit && dst.len_bytes() <= limit {
        return launch_elementwise(g, shader, constants, params(n, [0, 0], 0), &[src], &[dst], threads(n));
    }
    // Halves are stored a word at a time, so ranges start on whole,
    // aligned output words.
    let align = g.window_align();
    let unit = if half { (align / 2) as usize } else { 1 };
    let ranges = split::ranges_reading(n, reads, limit, align, unit).ok_or_else(|| Error::LimitExceeded {
        what: "kernel `copy` with views whose every element range reaches across more than the binding limit".into(),
        needed: src.len_bytes().max(dst.len_bytes()),
        limit: "max_storage_buffer_binding_size",
        allowed: limit,
    })?;
    // Window starts in elements: halves are two a word.
    let per_word = if half { 2 } else { 1 };
    for split::Cut { start, len, windows: w } in ranges {
        let p = params(len, [w[0].1 * per_word, w[1].1 * per_word], start);
        let launch = Launch {
            shader,
            entry: "main",
            constants,
            params: p.finish(),
            inputs: &[src.wgpu()],
            outputs: &[dst.wgpu()],
            workgroups: groups(threads(len), 256),
        };
        super::launch::dispatch_launch(g, &launch, &[Some(w[0].0), Some(w[1].0)])?;
    }
    Ok(())
}

/// Materialises any view (permuted, narrowed with an offset, broadcast) as a
/// new dense row-major buffer of `layout.numel()` 32-bit elements.
///
/// Always copies, even when `layout` is already contiguous, so the result
/// never aliases `x`; callers that can use `x` as is check
/// [`Layout::is_contiguous`] first.
pub fn contiguous(x: &Buffer, layout: &Layout) -> Result<Buffer> {
    check_view("contiguous", "input", x, layout)?;
    let n = layout.numel();
    super::check_u32("contiguous", n)?;
    let out = Buffer::alloc_overwritten(x.device(), n as u64 * 4)?;
    copy_words(x, layout, (&out, &Layout::contiguous(&layout.shape)), true)?;
    Ok(out)
}

/// [`contiguous`] for f16 data: `layout` counts 16-bit elements, two per
/// word (element `2w` in the low half of word `w`), and the result is a dense
/// f16 buffer of `ceil(n / 2)` words (an odd count leaves the last high half
/// zero). One launch (ranges of words past the binding limit); halves are
/// moved, not converted, so every bit pattern (NaN payloads, subnormals, -0)
/// survives.
pub fn contiguous_f16(x: &Buffer, layout: &Layout) -> Result<Buffer> {
    const OP: &str = "contiguous (f16)";
    layout.check_rank(OP)?;
    x.check_len(OP, "input", layout.span(), 2)?;
    let n = layout.numel();
    super::check_u32(OP, n)?;
    let out = Buffer::alloc(x.device(), n.div_ceil(2) as u64 * 4)?;
    if n == 0 {
        return Ok(out);
    }
    run(
        x.device(),
        |g| {
            let (shape, st) = coalesce(&layout.shape, &[&layout.strides]);
            // dst_strides are unused with a dense destination.
            let params = |n, [src_shift, _]: [usize; 2], base| {
                copy_params(&shape, [&st[0], &st[0]], n, (rel(layout.offset, src_shift), 0), base)
            };
            let constants = [("DENSE_DST", 1.0), ("HALF", 1.0), ("RANK", shape.len() as f64)];
            let reads = [
                LeafRead { maps: vec![Access::of(&shape, &st[0], layout.offset)], half: true },
                LeafRead { maps: vec![Access::Dense], half: true },
            ];
            launch_copy(g, (x, &out), &constants, (n, true), &reads, params)
        },
        || {
            let (s, mut d) = (x.host(), out.host_mut());
            let (s, d): (&[u16], &mut [u16]) = (bytemuck::cast_slice(&s), bytemuck::cast_slice_mut(&mut d));
            let dense = Layout::contiguous(&layout.shape);
            if x.device().runs_fast_cpu() {
                return crate::cpu::copy::copy(s, layout, d, &dense);
            }
            copy_view(s, layout, d, &dense);
        },
    )?;
    Ok(out)
}

/// Writes the view `src_layout` of `src` into the view `dst_layout` of an
/// existing buffer `dst` (e.g. a slice of a bigger tensor), element by
/// element in row-major order; `dst` outside the view is left untouched.
///
/// The shapes must be equal (no implicit broadcasting: broadcast the source
/// view instead), both views must fit their buffers, and the destination view
/// must not map two elements to one place (a broadcast destination would make
/// the result depend on write order). `src` and `dst` may be the same buffer,
/// even with overlapping views: the source is then copied out first.
pub fn copy_into(src: &Buffer, src_layout: &Layout, dst: &Buffer, dst_layout: &Layout) -> Result<()> {
    const OP: &str = "copy_into";
    check_view(OP, "source", src, src_layout)?;
    check_view(OP, "destination", dst, dst_layout)?;
    if src_layout.shape != dst_layout.shape {
        return Err(Error::invalid(
            OP,
            format!("source shape {:?} differs from destination shape {:?}", src_layout.shape, dst_layout.shape),
        ));
    }
    Buffer::check_same_device(OP, src.device(), &[dst])?;
    super::check_u32(OP, src_layout.numel())?;
    if !is_non_overlapping(dst_layout) {
        return Err(Error::invalid(
            OP,
            format!(
                "destination view {:?} with strides {:?} writes some elements twice",
                dst_layout.shape, dst_layout.strides
            ),
        ));
    }
    if src.same_as(dst) {
        let staged = contiguous(src, src_layout)?;
        return copy_raw(&staged, &Layout::contiguous(&src_layout.shape), dst, dst_layout);
    }
    copy_raw(src, src_layout, dst, dst_layout)
}

/// Zeros of `shape` with the view `(src, layout)` written at `start` along
/// `dim`: narrow's backward (`layout`'s shape is `shape` but for `dim`,
/// where the view's `len` elements land at `start..start + len`).
///
/// On a GPU one launch, deferred as the fuser's pad node (`gpu/fusion.rs`) so that an
/// elementwise consumer (the sum of a tensor's narrowed parts' gradients)
/// reads it in place; the CPU backend and views past the binding limit
/// fill zeros and copy the view in.
pub fn pad(src: &Buffer, layout: &Layout, shape: &[usize], dim: usize, start: usize) -> Result<Buffer> {
    const OP: &str = "pad";
    check_view(OP, "source", src, layout)?;
    let fits = layout.shape.len() == shape.len()
        && dim < shape.len()
        && (0..shape.len()).all(|d| d == dim || layout.shape[d] == shape[d])
        && start + layout.shape[dim] <= shape[dim];
    if !fits {
        return Err(Error::invalid(
            OP,
            format!("a view of shape {:?} does not fit into {shape:?} at {start} along dim {dim}", layout.shape),
        ));
    }
    let (n, dev) = (numel(shape), src.device());
    super::check_u32(OP, n)?;
    // The view as [outer, len, inner]: the dims before and after `dim`
    // each coalesced into one (a gradient is usually dense), or `None`.
    let one = |dims: std::ops::Range<usize>| -> Option<(usize, usize)> {
        let (cs, st) = coalesce(&layout.shape[dims.clone()], &[&layout.strides[dims]]);
        match cs.len() {
            0 => Some((1, 0)),
            1 => Some((cs[0], st[0][0])),
            _ => None,
        }
    };
    if let Some(g) = dev.gpu_ctx() {
        let limit = g.binding_limit();
        if n > 0 && src.len_bytes() <= limit && n as u64 * 4 <= limit {
            let out = Buffer::alloc(dev, n as u64 * 4)?;
            // Element (o, q, r) of the output reads the view at (o, q -
            // start, r): the view's strides from an offset that wraps below
            // zero in u32, as the kernel's arithmetic does.
            let sd = layout.strides[dim];
            let offset = rel(layout.offset, start * sd);
            let inner = numel(&shape[dim + 1..]);
            let access = match one(0..dim).zip(one(dim + 1..shape.len())) {
                Some(((outer, so), (_, si))) => {
                    Access::Strided { shape: [outer, shape[dim], inner].into(), strides: [so, sd, si].into(), offset }
                }
                // Any other view: its map over the whole output.
                None => {
                    let (cs, st) = coalesce(shape, &[&layout.strides]);
                    Access::Strided { shape: cs, strides: st[0].clone(), offset }
                }
            };
            let covers =
                layout.offset == 0 && numel(&layout.shape) as u64 * 4 == src.len_bytes() && is_non_overlapping(layout);
            let node = Node::Pad { inner, dim: shape[dim], lo: start, hi: start + layout.shape[dim], covers };
            let what = Fusable { node, n, access: smallvec::smallvec![access] };
            // No kernel of its own: it always runs generated (`gpu/batch.rs`),
            // so it has no uniform block.
            dispatch_fusable(g, "copy", "main", &[], &Params::new(), &[src], &out, groups(n, 256), what)?;
            return Ok(out);
        }
    }
    let out = super::fill::fill(dev, n, 0.0)?;
    let full = Layout::contiguous(shape);
    copy_into(src, layout, &out, &full.narrow(dim, start, layout.shape[dim])?)?;
    Ok(out)
}

/// Concatenates views along `dim` (torch.cat) into a new dense buffer;
/// returns it and its shape.
///
/// Every part must have the rank and shape of the first except along `dim`;
/// parts of size zero along `dim` are allowed and contribute nothing. Each
/// part is one copy launch into its slice of the output.
pub fn concat(parts: &[(&Buffer, &Layout)], dim: usize) -> Result<(Buffer, Dims)> {
    const OP: &str = "concat";
    let Some(&(first_buf, first)) = parts.first() else {
        return Err(Error::invalid(OP, "no parts to concatenate"));
    };
    if dim >= first.rank() {
        return Err(Error::invalid(
            OP,
            format!("dim {dim} is out of range for shape {:?} of rank {}", first.shape, first.rank()),
        ));
    }
    for (k, &(buf, l)) in parts.iter().enumerate() {
        check_view(OP, "part", buf, l)?;
        let agree = l.rank() == first.rank()
            && l.shape.iter().zip(&first.shape).enumerate().all(|(d, (a, b))| d == dim || a == b);
        if !agree {
            return Err(Error::invalid(
                OP,
                format!(
                    "part {k} has shape {:?} but part 0 has {:?}; shapes must agree except along dim {dim}",
                    l.shape, first.shape
                ),
            ));
        }
    }
    let dev = first_buf.device();
    Buffer::check_same_device(OP, dev, &parts.iter().map(|p| p.0).collect::<Vec<_>>())?;
    let mut shape = first.shape.clone();
    shape[dim] = parts.iter().map(|(_, l)| l.shape[dim]).sum();
    let n = numel(&shape);
    super::check_u32(OP, n)?;
    let out = Buffer::alloc_overwritten(dev, n as u64 * 4)?;
    let whole = Layout::contiguous(&shape);
    let mut start = 0;
    for &(buf, l) in parts {
        let len = l.shape[dim];
        copy_raw(buf, l, &out, &whole.narrow(dim, start, len)?)?;
        start += len;
    }
    Ok((out, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_check_accepts_views_and_rejects_broadcasts() {
        let l = Layout::contiguous(&[4, 5, 6]);
        assert!(is_non_overlapping(&l));
        assert!(is_non_overlapping(&l.permute(&[2, 0, 1]).unwrap()));
        assert!(is_non_overlapping(&l.narrow(1, 1, 3).unwrap().permute(&[1, 0, 2]).unwrap()));
        assert!(!is_non_overlapping(&Layout::contiguous(&[5]).broadcast_to(&[4, 5]).unwrap()));
        // Rows of 3 placed 2 apart overlap in their last element.
        assert!(!is_non_overlapping(&Layout { shape: Dims::from([4, 3]), strides: Dims::from([2, 1]), offset: 0 }));
        assert!(is_non_overlapping(&Layout { shape: Dims::from([0, 3]), strides: Dims::from([0, 0]), offset: 0 }));
    }
}
