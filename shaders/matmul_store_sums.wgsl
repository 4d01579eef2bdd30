// Hand-written, not generated (kernels/io.rs): the epilogue's last step, which the `_act` variants swap for an op.
// The plain end of matmul_store.wgsl: the sums through the epilogue, then
// stored. The `_act` variants include matmul_store_sums_act.wgsl instead.

// Writes the sums `s` of columns col.. of row `row`, with `b` their bias
// (`column_bias` + `row_bias`), through the epilogue.
fn store_sums(tl: Tile, row: u32, col: u32, s: vec4<f32>, b: vec4<f32>) {
    store_c(tl, row, col, epilogue(s, b));
}
