// A sliding window's geometry per spatial dim: kernel taps (KH, KW), stride
// (SH, SW) and dilation (DH, DW). Shared by the convolution kernels (im2col,
// the implicit-GEMM gather in matmul.wgsl) and pooling. Constants per
// pipeline, not uniforms: a model has few distinct windows, and constant
// divisors and trip counts let the index arithmetic divide by constants and
// the window loops unroll (on CPU drivers every per-lane division and loop
// is scalarised: 2x on max pooling's backward, docs/performance.md).
override KH: u32 = 1u;
override KW: u32 = 1u;
override SH: u32 = 1u;
override SW: u32 = 1u;
override DH: u32 = 1u;
override DW: u32 = 1u;
