//! The fills' reference twin (`ops/fill.rs` has the launches): a constant
//! fill needs none, arange's element is below.

/// Element `i` of `torch.arange(start, ·, step)`: `start + i · step`, a
/// product and a sum in f32 as the kernel rounds them (no running sum, so
/// no error accumulates along the buffer).
pub(crate) fn arange_at(start: f32, step: f32, i: usize) -> f32 {
    start + i as f32 * step
}
