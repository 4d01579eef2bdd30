// Image augmentation of an [N, C, H, W] f32 batch (gpu-core/src/ops/augment.rs,
// which also holds the CPU twins). The random kernels draw one Philox block
// per image, for counter `offset + image` under key `seed`, so every thread
// of an image recomputes the same four words and no draw has to be stored;
// the twins use the same words and integer arithmetic, so GPU and CPU agree
// bit for bit.
//
// Entry points, one thread per output element:
//   crop_flip  random shift in [-pad, pad]^2 with zero fill (RandomCrop with
//              padding), then a horizontal flip with probability flip_p;
//   cutout     zero one size x size square at a random centre, clipped at
//              the borders (DeVries & Taylor 2017);
//   normalize  (x - mean[c]) * inv_std[c].
//#include common.wgsl
//#include philox.wgsl

struct Params {
    // elements of the batch
    n: u32,
    channels: u32,
    h: u32,
    w: u32,
    // seed, low word first
    key0: u32,
    key1: u32,
    // first counter (offset), low word first
    ctr0: u32,
    ctr1: u32,
    // crop_flip: the largest shift; cutout: the square's side
    size: u32,
    flip_p: f32,
    // normalize: up to 16 channels, four per vec4
    mean: array<vec4<f32>, 4>,
    inv_std: array<vec4<f32>, 4>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn image_block(img: u32) -> vec4<u32> {
    return philox_block(vec2<u32>(p.ctr0, p.ctr1), img, vec2<u32>(p.key0, p.key1));
}

@compute @workgroup_size(256)
fn crop_flip(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    let plane = p.h * p.w;
    let img = i / (p.channels * plane);
    let row = i / p.w;
    let r = (i / p.w) % p.h;
    let c = i % p.w;
    let draw = image_block(img);
    let span = 2u * p.size + 1u;
    let dy = i32(draw.x % span) - i32(p.size);
    let dx = i32(draw.y % span) - i32(p.size);
    let flip = unit(draw.z) < p.flip_p;
    // Crop first, then flip the crop (torchvision's order): output column c
    // reads crop column w-1-c.
    let cc = select(c, p.w - 1u - c, flip);
    let sy = i32(r) + dy;
    let sx = i32(cc) + dx;
    var v = 0.0;
    if sy >= 0 && sy < i32(p.h) && sx >= 0 && sx < i32(p.w) {
        // `row - r` is the first row of this (image, channel) plane.
        v = x[(row - r + u32(sy)) * p.w + u32(sx)];
    }
    y[i] = v;
}

@compute @workgroup_size(256)
fn cutout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    let img = i / (p.channels * p.h * p.w);
    let r = i32((i / p.w) % p.h);
    let c = i32(i % p.w);
    let draw = image_block(img);
    let half = i32(p.size / 2u);
    let cy = i32(draw.x % p.h);
    let cx = i32(draw.y % p.w);
    let inside = r >= max(cy - half, 0) && r < min(cy + half, i32(p.h)) && c >= max(cx - half, 0) && c < min(cx + half, i32(p.w));
    y[i] = select(x[i], 0.0, inside);
}

@compute @workgroup_size(256)
fn normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    let ch = (i / (p.h * p.w)) % p.channels;
    y[i] = (x[i] - p.mean[ch / 4u][ch % 4u]) * p.inv_std[ch / 4u][ch % 4u];
}
