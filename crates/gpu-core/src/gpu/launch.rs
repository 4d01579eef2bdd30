//! What one kernel launch is, as the ops hand it to the recorder.

/// Size of one kernel's parameter block (the largest WGSL `Params` struct).
pub(crate) const PARAMS_BYTES: u64 = 256;
/// [`PARAMS_BYTES`] in 32-bit words.
pub(crate) const PARAMS_WORDS: usize = PARAMS_BYTES as usize / 4;

/// One kernel launch. Bindings: params, then `inputs` (read), then `outputs` (read-write).
pub(crate) struct Launch<'a> {
    pub shader: &'static str,
    pub entry: &'static str,
    pub constants: &'a [(&'static str, f64)],
    pub params: &'a [u32],
    pub inputs: &'a [&'a wgpu::Buffer],
    pub outputs: &'a [&'a wgpu::Buffer],
    /// Total workgroups; folded into a 2-D grid when above 65,535 (kernels
    /// rebuild the linear id with `linear_workgroup` from `common.wgsl`).
    pub workgroups: u32,
}
