// recurrent.wgsl's read-only inputs read through textures (see texels.wgsl
// and recurrent_inputs_f32.wgsl). Bindings 1-3 hold the same kind of
// resource in both entry points, so one texture each serves both:
//   binding  cell_forward  cell_backward
//   1        xw            dy
//   2        hw            dh_rec
//   3        bias          states_in
//   4        (states, rw)  saved_in
//#include texels.wgsl
@group(0) @binding(1) var in1: texture_storage_2d<r32float, read>;
@group(0) @binding(2) var in2: texture_storage_2d<r32float, read>;
@group(0) @binding(3) var in3: texture_storage_2d<r32float, read>;
@group(0) @binding(4) var in4: texture_storage_2d<r32float, read>;

fn load_xw(i: u32) -> f32 {
    return texel(in1, i);
}

fn load_hw(i: u32) -> f32 {
    return texel(in2, i);
}

fn load_bias(i: u32) -> f32 {
    return texel(in3, i);
}

fn load_dy(i: u32) -> f32 {
    return texel(in1, i);
}

fn load_dh_rec(i: u32) -> f32 {
    return texel(in2, i);
}

fn load_states(i: u32) -> f32 {
    return texel(in3, i);
}

fn load_saved(i: u32) -> f32 {
    return texel(in4, i);
}
