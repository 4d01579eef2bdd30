// Helpers shared by the kernels. A kernel pulls them in with the line
// `//#include common.wgsl` (resolved by gpu-core's shader registry).

// Kernels launch a linear number of workgroups that the host folds into an
// (x, y) grid when it exceeds 65,535; this rebuilds the linear id.
fn linear_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// Entry `d` of eight sizes packed as two vec4 (uniform arrays need 16-byte strides).
fn dim_of(packed: array<vec4<u32>, 2>, d: u32) -> u32 {
    var v = packed;
    return v[d / 4u][d % 4u];
}

// Buffer index of the i-th element (row-major order) of a strided view.
fn strided_offset(i: u32, rank: u32, shape: array<vec4<u32>, 2>, strides: array<vec4<u32>, 2>) -> u32 {
    var sh = shape;
    var st = strides;
    var rem = i;
    var off = 0u;
    for (var k = 0u; k < rank; k++) {
        let d = rank - 1u - k;
        let n = sh[d / 4u][d % 4u];
        off += (rem % n) * st[d / 4u][d % 4u];
        rem = rem / n;
    }
    return off;
}

// IEEE pow for every sign of the base (WGSL's pow is undefined for x <= 0).
fn pow_ieee(x: f32, y: f32) -> f32 {
    if y == 0.0 {
        return 1.0;
    }
    let inf = bitcast<f32>(0x7f800000u);
    if x == 0.0 {
        return select(0.0, inf, y < 0.0);
    }
    let m = pow(abs(x), y);
    if x > 0.0 {
        return m;
    }
    if floor(y) != y {
        return bitcast<f32>(0x7fc00000u);
    }
    let odd = abs(y) < 16777216.0 && (i32(y) & 1) == 1;
    return select(m, -m, odd);
}
