//! Operands read through textures: before a launch of a kernel listed in
//! [`shaders::TEXTURE_OPERANDS`](crate::shaders::TEXTURE_OPERANDS), each of
//! its texture inputs is copied from the launch's buffer (or bound window)
//! into an r32float texture [`TEX_WIDTH`] texels wide, element `i` at texel
//! `(i % TEX_WIDTH, i / TEX_WIDTH)`; the kernel binds it as a read-only
//! storage texture and loads texels instead of buffer elements
//! (`shaders/texels.wgsl`).
//!
//! Only CPU adapters take this path (the subgroup matmul, batch norm, the
//! row, reduction and elementwise kernels; see [`wanted`]): on llvmpipe
//! (Mesa 22.3) a storage-buffer load whose address differs per lane is a
//! stalling loop over the lanes, a storage-texture load one inlined AVX2
//! gather (docs/performance.md, "Where llvmpipe's matmul time goes" and
//! "Storage textures instead of sampled ones").
//! GPUs keep their buffers: the copies would be pure overhead there.
//!
//! The textures are kept per input slot and grown on demand; reusing one
//! for the next launch is safe because wgpu orders the next copy after the
//! kernels that read it.

use super::batch::Window;

/// Texels per texture row: a row is 16 KiB, a multiple of the 256 bytes
/// per row buffer-to-texture copies need. `shaders/texels.wgsl` has the
/// same constant (a test checks).
pub(crate) const TEX_WIDTH: u32 = 4096;

/// The textures of the input slots (by input index), kept between launches.
#[derive(Default)]
pub(crate) struct Staging {
    slots: Vec<Option<(wgpu::Texture, wgpu::TextureView)>>,
}

/// The texture format operands are copied into.
pub(crate) const FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::R32Float;

/// Whether a device with `features` can bind [`FORMAT`] as a read-only
/// storage texture (WebGPU guarantees it; checked so that an adapter
/// without it reads buffers instead of failing validation).
pub(crate) fn supported(features: wgpu::Features) -> bool {
    let f = FORMAT.guaranteed_format_features(features);
    f.allowed_usages.contains(wgpu::TextureUsages::STORAGE_BINDING)
        && f.flags.contains(wgpu::TextureFormatFeatureFlags::STORAGE_READ_ONLY)
}

/// Whether a launch on `g` reads its f32 inputs of `bytes` each through
/// textures: the device has the path on (CPU adapters, unless turned off)
/// and every input fits a texture.
pub(crate) fn wanted(g: &crate::gpu::GpuContext, bytes: impl IntoIterator<Item = u64>) -> bool {
    g.texture_operands.load(std::sync::atomic::Ordering::Relaxed) && bytes.into_iter().all(|b| fits(b, &g.limits))
}

/// Whether `bytes` of f32 operand fit a texture of the adapter's largest
/// height (4096 x 16384 texels, 256 MiB, on lavapipe).
pub(crate) fn fits(bytes: u64, limits: &wgpu::Limits) -> bool {
    bytes.div_ceil(4) <= TEX_WIDTH as u64 * limits.max_texture_dimension_2d as u64
}

/// `shader`, or its variant reading inputs through textures
/// ([`shaders::texture_variant`](crate::shaders::texture_variant)) when
/// there is one and the device [`wanted`] it for inputs of `bytes` each.
pub(crate) fn variant_for(
    g: &crate::gpu::GpuContext,
    shader: &'static str,
    bytes: impl IntoIterator<Item = u64>,
) -> &'static str {
    // The device's flag first: GPUs (off) skip the table lookup per op.
    wanted(g, bytes).then(|| crate::shaders::texture_variant(shader)).flatten().unwrap_or(shader)
}

impl Staging {
    /// Records the copy of `window` of `buffer` (whole when `None`) into the
    /// texture of `slot` (grown when too small) and returns its view. The
    /// window's offset and size are multiples of 16 bytes (buffers are
    /// backed in multiples of 16, windows start on the offset alignment).
    pub fn stage(
        &mut self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        slot: usize,
        buffer: &wgpu::Buffer,
        window: Option<Window>,
    ) -> wgpu::TextureView {
        let w = window.unwrap_or(Window { offset: 0, size: buffer.size() });
        let texels = (w.size / 4).max(1) as u32;
        let rows = texels.div_ceil(TEX_WIDTH);
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, || None);
        }
        let big_enough = self.slots[slot].as_ref().is_some_and(|(t, _)| t.height() >= rows);
        if !big_enough {
            // Grown to a power of two of rows, so a program settles on a few sizes.
            let height = rows.next_power_of_two().min(device.limits().max_texture_dimension_2d);
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
            self.slots[slot] = Some((texture, view));
        }
        let (texture, view) = self.slots[slot].as_ref().unwrap();
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
        view.clone()
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
