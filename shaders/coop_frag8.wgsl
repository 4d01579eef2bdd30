// The cooperative-matrix fragments of `matmul_coop8`: 8 x 8 x 8, f16 A and
// B, f32 accumulators, for adapters that offer only that shape (lavapipe
// in Mesa 26, with 8-lane subgroups); otherwise as `coop_frag16.wgsl`.
alias FragA = coop_mat8x8<f16, A>;
alias FragB = coop_mat8x8<f16, B>;
alias FragC = coop_mat8x8<f32, C>;
// A fragment's edge.
const FR: u32 = 8u;
