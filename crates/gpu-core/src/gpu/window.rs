//! Binding part of a buffer: the [`Window`] a launch binds in place of a
//! whole buffer past the binding limit, and what a binding slot binds.

/// A sub-range of a buffer bound in place of the whole: `offset` bytes in
/// (a multiple of the adapter's `min_storage_buffer_offset_alignment`),
/// `size` bytes long (a multiple of 4, at most the binding limit). Ops that
/// split work too large for one binding bind windows (see `ops/matmul/binding_split.rs`, `ops/reduce_split.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Window {
    pub offset: u64,
    pub size: u64,
}

/// The window binding elements `[start, start + len)` of `elem_bytes` each:
/// the byte offset rounded down to `align` and the size up to 16 bytes
/// (kernels that read vec4s need whole ones; buffers are backed in
/// multiples of 16, so the window stays inside), and the element shift to
/// subtract from offsets into it.
pub(crate) fn window(start: usize, len: usize, elem_bytes: u64, align: u64) -> (Window, usize) {
    let first = start as u64 * elem_bytes;
    let offset = first / align * align;
    let end = (start + len) as u64 * elem_bytes;
    let size = (end - offset).next_multiple_of(16).max(16);
    (Window { offset, size }, (offset / elem_bytes) as usize)
}

/// What binding `i` of a launch binds: the operand texture's `view` when
/// it reads one, else `window` of `buffer`, else the whole buffer.
pub(crate) fn binding<'a>(
    buffer: &'a wgpu::Buffer,
    window: Option<Window>,
    view: Option<&'a wgpu::TextureView>,
) -> wgpu::BindingResource<'a> {
    match (view, window) {
        (Some(view), _) => wgpu::BindingResource::TextureView(view),
        (None, Some(w)) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset: w.offset,
            size: wgpu::BufferSize::new(w.size),
        }),
        (None, None) => buffer.as_entire_binding(),
    }
}
