//! Operands read through textures: before a launch of a kernel whose entry
//! point reads storage textures (a family's `_tex` variant; which inputs,
//! [`texture_inputs`] reads from the kernel itself), each of
//! its texture inputs is copied from the launch's buffer (or bound window)
//! into an r32float texture [`TEX_WIDTH`] texels wide, element `i` at texel
//! `(i % TEX_WIDTH, i / TEX_WIDTH)`; the kernel binds it as a read-only
//! storage texture and loads texels instead of buffer elements
//! (`shaders/texels.wgsl`).
//!
//! Only CPU adapters take this path (the subgroup matmul, batch norm, the
//! row kernels and their backward passes, reductions, elementwise kernels,
//! pooling and copies; see [`wanted`]). Textures hold bits: u32 data (an
//! argmax, a copy's words) travels through the r32float texels unchanged
//! and is bitcast back. On llvmpipe
//! (Mesa 22.3) a storage-buffer load whose address differs per lane is a
//! stalling loop over the lanes, a storage-texture load one inlined AVX2
//! gather (docs/history/performance-issue-11.md, "Where llvmpipe's matmul time goes" and
//! "Storage textures instead of sampled ones").
//! GPUs keep their buffers: the copies would be pure overhead there.
//!
//! The textures are kept per device (at most [`MAX_TEXTURES`], grown on
//! demand) and remember which buffer they hold: a launch reading a buffer
//! that no launch, upload or copy has written since its last copy binds
//! that texture again (`Stats::texture_reuses`). Replacing a texture's
//! contents is safe while earlier launches of the batch still read it:
//! wgpu orders the copy after them.

use wgpu::naga::valid::ModuleInfo;
use wgpu::naga::{ImageClass, ImageDimension, Module, StorageAccess, StorageFormat, TypeInner};

use super::window::Window;

/// The inputs that compute entry point `entry` of `module` reads through
/// textures, as a bit mask over input indices (bit `i`: binding `1 + i`):
/// the storage textures the entry uses, as naga reflects them, so no
/// family lists them by hand and the layout the host builds always matches
/// the kernel. 0 for an entry `module` lacks.
///
/// # Panics
/// When such a texture is not the read-only 2D r32float kind the host
/// fills (a bug in a shader, caught by the shader tests).
pub(crate) fn texture_inputs(module: &Module, info: &ModuleInfo, entry: &str) -> u32 {
    let Some(k) = module.entry_points.iter().position(|ep| ep.name == entry) else { return 0 };
    let uses = info.get_entry_point(k);
    let mut mask = 0;
    for (h, var) in module.global_variables.iter() {
        let (TypeInner::Image { dim, arrayed, class }, Some(b)) = (&module.types[var.ty].inner, &var.binding) else {
            continue;
        };
        if uses[h].is_empty() {
            continue;
        }
        let r32float = matches!(class, ImageClass::Storage { format: StorageFormat::R32Float, access } if *access == StorageAccess::LOAD);
        assert!(
            *dim == ImageDimension::D2 && !arrayed && r32float,
            "wgrad internal: {entry}: operand textures are read-only 2D r32float storage textures"
        );
        mask |= 1 << (b.binding - 1);
    }
    mask
}

/// Texels per texture row: a row is 16 KiB, a multiple of the 256 bytes
/// per row buffer-to-texture copies need. `shaders/texels.wgsl` has the
/// same constant (a test checks).
pub(crate) const TEX_WIDTH: u32 = 4096;

/// Most operand textures kept per device: enough for the inputs of one
/// launch (batch norm's backward reads seven) plus the recent operands a
/// step reads again (x, dy, a convolution's weight).
const MAX_TEXTURES: usize = 12;

/// One operand texture and what it holds.
struct Entry {
    texture: wgpu::Texture,
    view: wgpu::TextureView,
    /// The buffer (and window) whose contents it holds, unchanged since the
    /// copy; `None` once that buffer may have been written. The handle
    /// keeps the buffer's identity from being reused while it is cached.
    holds: Option<(wgpu::Buffer, Window)>,
    /// The launch that last read it (least recently used is replaced first).
    used: u64,
}

/// The operand textures, kept across launches and batches. A texture that
/// holds a buffer nothing has written since its copy is bound again
/// without a new copy (a layer's activations are read by several kernels in
/// a row); [`Staging::written`] forgets the textures of a buffer that a
/// launch, upload or copy writes.
#[derive(Default)]
pub(crate) struct Staging {
    entries: Vec<Entry>,
    /// The launch being encoded (its own inputs are never replaced).
    launch: u64,
}

/// The texture format operands are copied into.
pub(crate) const FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::R32Float;

/// A new operand texture `height` rows of [`TEX_WIDTH`] texels (a power of
/// two), and its view.
pub(crate) fn operand_texture(device: &wgpu::Device, height: u32) -> (wgpu::Texture, wgpu::TextureView) {
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("wgrad operand texture"),
        size: wgpu::Extent3d { width: TEX_WIDTH, height, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: FORMAT,
        usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
    (texture, view)
}

/// Whether a device with `features` can bind [`FORMAT`] as a read-only
/// storage texture (WebGPU guarantees it; checked so that an adapter
/// without it reads buffers instead of failing validation).
pub(crate) fn supported(features: wgpu::Features) -> bool {
    let f = FORMAT.guaranteed_format_features(features);
    f.allowed_usages.contains(wgpu::TextureUsages::STORAGE_BINDING)
        && f.flags.contains(wgpu::TextureFormatFeatureFlags::STORAGE_READ_ONLY)
}

/// Whether `bytes` of f32 operand fit a texture of the adapter's largest
/// height (4096 x 16384 texels, 256 MiB, on lavapipe).
pub(crate) fn fits(bytes: u64, limits: &wgpu::Limits) -> bool {
    bytes.div_ceil(4) <= TEX_WIDTH as u64 * limits.max_texture_dimension_2d as u64
}

impl Staging {
    /// Starts the inputs of a new launch.
    pub fn next_launch(&mut self) {
        self.launch += 1;
    }

    /// Forgets what `buffer` held in any texture: it is about to be written.
    /// (No work on GPUs, which never stage a texture.)
    pub fn written(&mut self, buffer: &wgpu::Buffer) {
        for e in &mut self.entries {
            if e.holds.as_ref().is_some_and(|(b, _)| b == buffer) {
                e.holds = None;
            }
        }
    }

    /// The view of a texture that holds window `w` of `buffer` unchanged
    /// since its copy, if one does.
    pub fn holding(&mut self, buffer: &wgpu::Buffer, w: Window) -> Option<wgpu::TextureView> {
        let e = self.entries.iter_mut().find(|e| e.holds.as_ref().is_some_and(|(b, h)| b == buffer && *h == w))?;
        e.used = self.launch;
        Some(e.view.clone())
    }

    /// Records the copy of window `w` of `buffer` into a texture
    /// ([`slot_for`](Self::slot_for)) and returns its view and the texture.
    /// The window's offset and size are multiples of 16 bytes (buffers are
    /// backed in multiples of 16, windows start on the offset alignment).
    pub fn copy_in(
        &mut self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        buffer: &wgpu::Buffer,
        w: Window,
    ) -> (wgpu::TextureView, wgpu::Texture) {
        let launch = self.launch;
        let texels = (w.size / 4).max(1) as u32;
        let rows = texels.div_ceil(TEX_WIDTH);
        let i = self.slot_for(device, rows);
        let e = &mut self.entries[i];
        (e.holds, e.used) = (Some((buffer.clone(), w)), launch);
        copy_window(encoder, buffer, w, &e.texture);
        (e.view.clone(), e.texture.clone())
    }

    /// Forgets what every texture holds (a step graph replayed has copied
    /// other contents into them).
    /// Its recency order is reset too, so that a step recorded twice picks
    /// the same textures both times.
    pub fn forget(&mut self) {
        for e in &mut self.entries {
            (e.holds, e.used) = (None, 0);
        }
        self.launch = 0;
    }

    /// The texture to copy `rows` rows into: one this launch does not read
    /// ([`lru`](Self::lru)) that is tall enough, a new one while there are
    /// fewer than [`MAX_TEXTURES`] (rather than replacing what a texture
    /// holds), else a new one in place of the least recently used.
    /// (Replacing a texture an earlier launch of the batch reads is safe:
    /// wgpu orders the copy after that launch.)
    fn slot_for(&mut self, device: &wgpu::Device, rows: u32) -> usize {
        let full = self.entries.len() >= MAX_TEXTURES;
        if let Some(i) = self.lru(rows).filter(|&i| full || self.entries[i].holds.is_none()) {
            return i;
        }
        // Grown to a power of two of rows, so a program settles on a few sizes.
        let height = rows.next_power_of_two().min(device.limits().max_texture_dimension_2d);
        let (texture, view) = operand_texture(device, height);
        let entry = Entry { texture, view, holds: None, used: self.launch };
        if !full {
            self.entries.push(entry);
            return self.entries.len() - 1;
        }
        let i = self.lru(0).expect("wgrad internal: a launch reads fewer than MAX_TEXTURES textures");
        self.entries[i] = entry;
        i
    }

    /// Of the textures at least `rows` tall that this launch does not read,
    /// an empty one, else the least recently used.
    fn lru(&self, rows: u32) -> Option<usize> {
        let candidates = self.entries.iter().enumerate();
        let free = candidates.filter(|(_, e)| e.used != self.launch && e.texture.height() >= rows);
        free.min_by_key(|(_, e)| (e.holds.is_some(), e.used)).map(|(i, _)| i)
    }
}

/// Encodes the copy of window `w` of `buffer` into `texture`, rows of
/// `TEX_WIDTH` texels (the last one partial).
pub(crate) fn copy_window(
    encoder: &mut wgpu::CommandEncoder,
    buffer: &wgpu::Buffer,
    w: Window,
    texture: &wgpu::Texture,
) {
    let texels = (w.size / 4).max(1) as u32;
    let row_bytes = TEX_WIDTH as u64 * 4;
    let (full, rest) = (texels / TEX_WIDTH, texels % TEX_WIDTH);
    let mut copy = |offset: u64, origin_y: u32, width: u32, height: u32| {
        encoder.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset,
                    bytes_per_row: Some(row_bytes as u32),
                    rows_per_image: None,
                },
            },
            wgpu::TexelCopyTextureInfo {
                texture,
                mip_level: 0,
                origin: wgpu::Origin3d { x: 0, y: origin_y, z: 0 },
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::Extent3d { width, height, depth_or_array_layers: 1 },
        );
    };
    if full > 0 {
        copy(w.offset, 0, TEX_WIDTH, full);
    }
    if rest > 0 {
        copy(w.offset + full as u64 * row_bytes, full, rest, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shader_library_uses_the_same_row_width() {
        let src = crate::shaders::raw("texels");
        assert!(src.contains(&format!("const TEX_WIDTH: u32 = {TEX_WIDTH}u;")), "{src}");
        assert!((TEX_WIDTH * 4).is_multiple_of(256), "rows must be whole 256-byte copy rows");
    }

    #[test]
    fn webgpu_guarantees_read_only_storage_textures_of_the_format() {
        assert!(supported(wgpu::Features::empty()));
    }

    #[test]
    fn operands_fit_up_to_the_texture_height() {
        let limits = wgpu::Limits { max_texture_dimension_2d: 16384, ..wgpu::Limits::default() };
        assert!(fits(4 * 4096 * 16384, &limits));
        assert!(!fits(4 * 4096 * 16384 + 4, &limits));
    }
}
