//! 8-bit PNG encoding of pixel rows, for the training curves
//! ([`History::save_png`](super::History::save_png)) and TensorBoard images.

use std::io::{self, Write};

/// Writes `pixels` (rows of `channels` = 1 grey or 3 RGB bytes per pixel)
/// as a PNG of `width` x `height` to `out`.
pub(crate) fn write_png(
    out: impl Write,
    pixels: &[u8],
    (width, height): (u32, u32),
    channels: usize,
) -> io::Result<()> {
    let mut encoder = png::Encoder::new(out, width, height);
    encoder.set_color(if channels == 1 { png::ColorType::Grayscale } else { png::ColorType::Rgb });
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(io::Error::other)?;
    writer.write_image_data(pixels).map_err(io::Error::other)?;
    writer.finish().map_err(io::Error::other)
}
