// Optimizer updates, in place and fused: one thread reads four gradient
// elements once and updates those parameters and every state buffer of the
// rule in a single pass (PyTorch's formulas, op for op; see
// gpu-core/src/ops/optim.rs, whose CPU twin mirrors `update` line by line).
//
// ALGO picks the rule, the other overrides its variant. Step-dependent
// scalars (bias corrections, decayed learning rates) arrive in a storage
// buffer (one row per parameter), computed on the host in f64, so nothing
// is read back.
//
// Buffers are viewed as vec4 so each thread moves 16 bytes per access: on
// lavapipe, whose per-lane storage accesses dominate such kernels, that about
// halved an AdamW step over 10M parameters (70-85 ms to 35-45 ms). The last
// quad may straddle n: it writes only its live components (buffers are
// allocated in multiples of 256 bytes, so reading the whole quad stays inside
// them; the extra lanes compute on padding and are dropped).
//
// The entry points differ only in how many state buffers they bind (a WGSL
// binding that an entry point mentions must be bound, so each arity is its
// own entry point); the math is the shared `update`.
//#include common.wgsl

// 0 SGD, 1 AdaGrad, 2 RMSProp, 3 Adam / AdamW, 4 Lion
override ALGO: u32 = 0u;
// SGD, RMSProp: a momentum buffer is kept
override MOMENTUM: bool = false;
// SGD: Nesterov momentum
override NESTEROV: bool = false;
// RMSProp: subtract the squared running mean of the gradient
override CENTERED: bool = false;
// Adam: AMSGrad (normalise by the running maximum of exp_avg_sq)
override AMSGRAD: bool = false;
// Adam: AdamW's decoupled weight decay (Lion always decouples)
override DECOUPLED: bool = false;
// AdaGrad: the textbook sqrt(sum + eps) instead of PyTorch's sqrt(sum) + eps
override EPS_INSIDE: bool = false;

struct Params {
    n: u32,
    // ceil(n / 4): threads with work
    quads: u32,
    // this parameter's row of `scalars`
    row: u32,
}

// The step's scalars, one row per parameter, written by the host before
// the update is recorded (so a recorded step graph replays with the
// scalars of each new step; see gpu-core/src/ops/optim.rs).
struct Scalars {
    // SGD: 1 on the step that creates the momentum buffer (it becomes the gradient)
    first: u32,
    // the step size: SGD, RMSProp, Lion: lr; AdaGrad: lr / (1 + (t-1)·lr_decay); Adam: lr / (1 - beta1^t)
    lr: f32,
    // coupled (L2) weight decay added to the gradient
    weight_decay: f32,
    // decoupled weight decay: the parameter is first scaled by 1 - lr·wd
    decay: f32,
    eps: f32,
    // rule constants:
    // SGD      c0 momentum, c1 1 - dampening
    // RMSProp  c0 alpha,    c1 1 - alpha,   c2 momentum
    // Adam     c0 1 - beta1 (lerp weight),  c1 beta2, c2 1 - beta2, c3 sqrt(1 - beta2^t)
    // Lion     c0 beta1,    c1 1 - beta1,   c2 beta2, c3 1 - beta2
    c0: f32,
    c1: f32,
    c2: f32,
    c3: f32,
    // 1: leave everything as it is (a loss scaler found inf/NaN gradients;
    // written on the device by amp.wgsl's `gate`)
    skip: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> scalars: array<Scalars>;
@group(0) @binding(2) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> s0: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> s1: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> s2: array<vec4<f32>>;

alias V = vec4<f32>;

// torch.lerp's CPU formula (exact at both ends of the weight range).
fn lerp(a: V, b: V, w: f32) -> V {
    if abs(w) < 0.5 {
        return a + w * (b - a);
    }
    return b - (b - a) * (1.0 - w);
}

// Four elements: returns the new parameters, updates the state slots in `s`.
fn update(x: V, g_in: V, s: ptr<function, array<V, 3>>) -> V {
    let sc = scalars[p.row];
    var w = x;
    var g = g_in;
    if ALGO == 4u || (ALGO == 3u && DECOUPLED) {
        w = w * sc.decay;
    } else if sc.weight_decay != 0.0 {
        g = g + sc.weight_decay * w;
    }
    if ALGO == 0u {
        // SGD: s = [momentum_buffer]
        if MOMENTUM {
            var v = g;
            if sc.first == 0u {
                v = (*s)[0] * sc.c0 + sc.c1 * g;
            }
            (*s)[0] = v;
            if NESTEROV {
                g = g + sc.c0 * v;
            } else {
                g = v;
            }
        }
        return w + (-sc.lr) * g;
    } else if ALGO == 1u {
        // AdaGrad: s = [sum]
        let sum = (*s)[0] + g * g;
        (*s)[0] = sum;
        var den: V;
        if EPS_INSIDE {
            den = sqrt(sum + sc.eps);
        } else {
            den = sqrt(sum) + sc.eps;
        }
        return w + (-sc.lr) * g / den;
    } else if ALGO == 2u {
        // RMSProp: s = [square_avg, momentum_buffer?, grad_avg?]
        let sq = (*s)[0] * sc.c0 + sc.c1 * g * g;
        (*s)[0] = sq;
        var avg: V;
        if CENTERED {
            let k = select(1, 2, MOMENTUM);
            let ga = lerp((*s)[k], g, sc.c1);
            (*s)[k] = ga;
            avg = sqrt(sq - ga * ga);
        } else {
            avg = sqrt(sq);
        }
        avg = avg + sc.eps;
        if MOMENTUM {
            let buf = (*s)[1] * sc.c2 + g / avg;
            (*s)[1] = buf;
            return w + (-sc.lr) * buf;
        }
        return w + (-sc.lr) * g / avg;
    } else if ALGO == 3u {
        // Adam / AdamW: s = [exp_avg, exp_avg_sq, max_exp_avg_sq?]
        let m = lerp((*s)[0], g, sc.c0);
        let v = (*s)[1] * sc.c1 + sc.c2 * g * g;
        (*s)[0] = m;
        (*s)[1] = v;
        var vhat = v;
        if AMSGRAD {
            vhat = max((*s)[2], v);
            (*s)[2] = vhat;
        }
        let denom = sqrt(vhat) / sc.c3 + sc.eps;
        return w + (-sc.lr) * m / denom;
    }
    // Lion: s = [exp_avg]
    let m = (*s)[0];
    let c = m * sc.c0 + sc.c1 * g;
    (*s)[0] = m * sc.c2 + sc.c3 * g;
    return w + (-sc.lr) * sign(c);
}

// The quad this thread updates.
fn quad(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return linear_workgroup(wid, nwg) * 256u + lid;
}

// Elements of quad q that exist (4 except in the last quad).
fn live(q: u32) -> u32 {
    return min(4u, p.n - 4u * q);
}

// The entry points: load, `update`, store. A quad that straddles n writes
// only its live components, so nothing past element n changes.

@compute @workgroup_size(256)
fn state0(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let q = quad(wid, nwg, lid);
    if q >= p.quads || scalars[p.row].skip != 0u {
        return;
    }
    var s: array<V, 3>;
    let w = update(param[q], grad[q], &s);
    let k = live(q);
    if k == 4u {
        param[q] = w;
    } else {
        for (var j = 0u; j < k; j++) {
            param[q][j] = w[j];
        }
    }
}

@compute @workgroup_size(256)
fn state1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let q = quad(wid, nwg, lid);
    if q >= p.quads || scalars[p.row].skip != 0u {
        return;
    }
    var s = array<V, 3>(s0[q], V(), V());
    let w = update(param[q], grad[q], &s);
    let k = live(q);
    if k == 4u {
        param[q] = w;
        s0[q] = s[0];
    } else {
        for (var j = 0u; j < k; j++) {
            param[q][j] = w[j];
            s0[q][j] = s[0][j];
        }
    }
}

@compute @workgroup_size(256)
fn state2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let q = quad(wid, nwg, lid);
    if q >= p.quads || scalars[p.row].skip != 0u {
        return;
    }
    var s = array<V, 3>(s0[q], s1[q], V());
    let w = update(param[q], grad[q], &s);
    let k = live(q);
    if k == 4u {
        param[q] = w;
        s0[q] = s[0];
        s1[q] = s[1];
    } else {
        for (var j = 0u; j < k; j++) {
            param[q][j] = w[j];
            s0[q][j] = s[0][j];
            s1[q][j] = s[1][j];
        }
    }
}

@compute @workgroup_size(256)
fn state3(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let q = quad(wid, nwg, lid);
    if q >= p.quads || scalars[p.row].skip != 0u {
        return;
    }
    var s = array<V, 3>(s0[q], s1[q], s2[q]);
    let w = update(param[q], grad[q], &s);
    let k = live(q);
    if k == 4u {
        param[q] = w;
        s0[q] = s[0];
        s1[q] = s[1];
        s2[q] = s[2];
    } else {
        for (var j = 0u; j < k; j++) {
            param[q][j] = w[j];
            s0[q][j] = s[0][j];
            s1[q][j] = s[1][j];
            s2[q][j] = s[2][j];
        }
    }
}
