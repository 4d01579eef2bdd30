// The per-channel inputs of the batch-norm entries that read activations,
// in f32 storage buffers: [mean; rstd] statistics, weight and bias (forward),
// statistics, weight and the gradient sums Σdy', Σdy'·xhat (grad_partial,
// backward). Every storage library but the texture one includes this file
// (batch_norm_channels_tex.wgsl reads the same through textures).
@group(0) @binding(2) var<storage, read> stats_in: array<f32>;
@group(0) @binding(3) var<storage, read> weight_in: array<f32>;
@group(0) @binding(4) var<storage, read> bias_in: array<f32>;
@group(0) @binding(4) var<storage, read> stats_in4: array<f32>;
@group(0) @binding(5) var<storage, read> weight_in5: array<f32>;
@group(0) @binding(6) var<storage, read> dbias_in: array<f32>;
@group(0) @binding(7) var<storage, read> dweight_in: array<f32>;

// Element i of the forward's statistics (mean at c, rstd at C + c).
fn fwd_stat(i: u32) -> f32 {
    return stats_in[i];
}

fn fwd_weight(c: u32) -> f32 {
    return weight_in[c];
}

fn fwd_bias(c: u32) -> f32 {
    return bias_in[c];
}

// Element i of the gradient entries' statistics.
fn bwd_stat(i: u32) -> f32 {
    return stats_in4[i];
}

fn bwd_weight(c: u32) -> f32 {
    return weight_in5[c];
}

fn bwd_dbias(c: u32) -> f32 {
    return dbias_in[c];
}

fn bwd_dweight(c: u32) -> f32 {
    return dweight_in[c];
}
