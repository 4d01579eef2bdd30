// The loss scaler's state buffer and what every mixed-precision kernel does
// with it (included by amp.wgsl and amp_unscale.wgsl; the layout is
// described in amp.wgsl). Binding 1 in every kernel that includes it.

const SCALE: u32 = 0u;
const INV_SCALE: u32 = 1u;
const FOUND_INF: u32 = 2u;
const TRACKER: u32 = 3u;
const VERDICT: u32 = 4u;

// found_inf's 1.0 (0x3f800000) is stored atomically: many threads may find a
// non-finite value in one launch, and racing plain stores are a data race in
// WGSL's memory model even when they write the same value.
@group(0) @binding(1) var<storage, read_write> state: array<atomic<u32>>;

// Infinity or NaN: all exponent bits set. Tested on the bits because WGSL
// lets compilers assume float arithmetic never produces either, so
// `v != v` style tests may be folded away.
fn non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

fn load_f32(i: u32) -> f32 {
    return bitcast<f32>(atomicLoad(&state[i]));
}

// One gradient value (f32 bits) times the inverse scale, setting found_inf
// when it is inf or NaN; PyTorch leaves values untouched when the inverse
// scale is exactly 1.
fn unscaled(bits: u32) -> u32 {
    let v = bitcast<f32>(bits);
    if non_finite(v) {
        atomicStore(&state[FOUND_INF], 0x3f800000u);
    }
    let s = load_f32(INV_SCALE);
    if s != 1.0 {
        return bitcast<u32>(v * s);
    }
    return bits;
}
