// The cooperative-matrix fragments `matmul_coop.wgsl` multiplies: 16 x 16
// x 16, f16 A and B, f32 accumulators (NVIDIA and AMD matrix units). The
// 8 x 8 x 8 variant (`coop_frag8.wgsl`, kernels/matmul.rs) is the same
// kernel on the adapters that offer only that shape.
alias FragA = coop_mat16x16<f16, A>;
alias FragB = coop_mat16x16<f16, B>;
alias FragC = coop_mat16x16<f32, C>;
// A fragment's edge.
const FR: u32 = 16u;
