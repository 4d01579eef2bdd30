// Mixed-precision support, the device half of dynamic loss scaling
// (wgrad-nn's GradScaler; the CPU twins are in gpu-core/src/ops/amp.rs).
// Everything reads and writes one small `state` buffer, so the scale, its
// inverse, the overflow flag and the growth count never have to visit the
// host:
//   word 0 scale, 1 inverse scale (f32 bits), 2 found_inf (f32 0.0 or 1.0),
//   3 growth tracker (u32), 4 the last update's verdict (found_inf's value).
// - unscale_and_check: a gradient times the inverse scale in place, setting
//   found_inf on any inf/NaN (torch._amp_foreach_non_finite_check_and_unscale_,
//   one tensor per launch; amp_unscale.wgsl takes seven). found_inf is only
//   ever set, so one flag collects the verdict of every gradient of a step.
// - gate: fills each row of an optimizer's scalar table from one of two
//   candidates the host wrote (`choices`: the rows for "the last gated step
//   was applied", then those for "it was skipped"), picked by the skip word
//   the table still holds from that step, then copies found_inf into the
//   skip word: the update kernels leave everything untouched on an overflow
//   (the step is skipped on the device, nothing read back), and the host
//   need not know the last step's verdict to write this step's scalars.
// - update_scale: torch._amp_update_scale_ (backoff after an overflow, growth
//   after `interval` clean steps), then found_inf is cleared for the next step
//   and its value kept as the verdict. The factors are powers of two, so f32
//   products equal PyTorch's double ones rounded to f32, and the inverse scale
//   follows by the reciprocal factor exactly.
//#include common.wgsl
//#include amp_state.wgsl

struct Params {
    // unscale_and_check: elements; gate: rows
    n: u32,
    // update_scale: clean steps before growth (0: never)
    interval: u32,
    // gate: words per row, and which word is the skip flag
    row_words: u32,
    skip_word: u32,
    growth: f32,
    backoff: f32,
    inv_growth: f32,
    inv_backoff: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
// unscale_and_check: the gradient (f32 bits); gate: the scalar rows
@group(0) @binding(2) var<storage, read_write> data: array<u32>;
// gate: the two candidate tables, one after the other (only read)
@group(0) @binding(3) var<storage, read_write> choices: array<u32>;


@compute @workgroup_size(256)
fn unscale_and_check(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    data[i] = unscaled(data[i]);
}

@compute @workgroup_size(256)
fn gate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = linear_workgroup(wid, nwg) * 256u + lid;
    if r < p.n {
        let at = r * p.row_words;
        let src = at + select(0u, p.n * p.row_words, data[at + p.skip_word] != 0u);
        for (var w = 0u; w < p.row_words; w++) {
            data[at + w] = choices[src + w];
        }
        data[at + p.skip_word] = select(0u, 1u, atomicLoad(&state[FOUND_INF]) != 0u);
    }
}

@compute @workgroup_size(1)
fn update_scale() {
    let found = atomicLoad(&state[FOUND_INF]);
    atomicStore(&state[VERDICT], found);
    atomicStore(&state[FOUND_INF], 0u);
    var scale = load_f32(SCALE);
    var inv = load_f32(INV_SCALE);
    var tracker = atomicLoad(&state[TRACKER]);
    if found != 0u {
        scale = scale * p.backoff;
        inv = inv * p.inv_backoff;
        tracker = 0u;
    } else {
        let successful = select(tracker + 1u, tracker, tracker == 0xffffffffu);
        if successful == p.interval {
            let grown = scale * p.growth;
            if !non_finite(grown) {
                scale = grown;
                inv = inv * p.inv_growth;
            }
            tracker = 0u;
        } else {
            tracker = successful;
        }
    }
    atomicStore(&state[SCALE], bitcast<u32>(scale));
    atomicStore(&state[INV_SCALE], bitcast<u32>(inv));
    atomicStore(&state[TRACKER], tracker);
}
