//! Fused optimizer updates (`shaders/optim.wgsl`): one kernel per parameter
//! tensor reads the gradient and rewrites the parameter and its state buffers
//! in place, in a single pass.
//!
//! The formulas are PyTorch's single-tensor (`foreach=False`) implementations,
//! operation for operation, so results agree with `torch.optim` to f32
//! rounding:
//!
//! | rule | update (g: gradient, w: parameter, t: step count from 1) |
//! |---|---|
//! | SGD | `g += wd·w`; momentum: `v = g` at t = 1, else `v = μ·v + (1−dampening)·g`; Nesterov `g += μ·v`, else `g = v`; `w −= lr·g` |
//! | AdaGrad | `g += wd·w`; `s += g²`; `w −= lr/(1+(t−1)·lr_decay) · g/(√s + eps)` (textbook variant: `√(s + eps)`) |
//! | RMSProp | `g += wd·w`; `a = α·a + (1−α)·g²`; centered: `ḡ = lerp(ḡ, g, 1−α)`, `d = √(a − ḡ²) + eps`, else `d = √a + eps`; momentum: `b = μ·b + g/d`, `w −= lr·b`, else `w −= lr·g/d` |
//! | Adam | `g += wd·w` (AdamW instead: `w ·= 1 − lr·wd`); `m = lerp(m, g, 1−β1)`; `v = β2·v + (1−β2)·g²`; AMSGrad `v̂ = max(v̂, v)`; `w −= lr/(1−β1ᵗ) · m / (√v̂/√(1−β2ᵗ) + eps)` |
//! | Lion | `w ·= 1 − lr·wd`; `w −= lr·sign(β1·m + (1−β1)·g)`; `m = β2·m + (1−β2)·g` |
//!
//! Every step-dependent scalar (bias corrections, decayed learning rate,
//! decay factor) is computed here on the host in f64 from the step count and
//! passed in the kernel's uniform block, so an update never reads anything
//! back. Hyper-parameters are widened to f64 through their shortest decimal
//! form, so `0.9f32` enters `1 − β1ᵗ` as Python's `0.9` does.

use super::{f32s, f32s_mut, groups, run, Kind, Params, ParamsDecl};
use crate::gpu::Launch;
use crate::kernels::unary::sign;
use crate::{Buffer, Error, Result};

/// `optim.wgsl`'s uniform block.
pub(crate) const PARAMS: ParamsDecl =
    ParamsDecl { shader: "optim", fields: &[("n", Kind::U32), ("quads", Kind::U32), ("row", Kind::U32)] };

/// An update rule and its hyper-parameters (PyTorch's names and defaults
/// live in `wgrad-nn`'s option structs). The learning rate and weight decay
/// are per parameter group and passed to [`update`] separately.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Stochastic gradient descent with optional (Nesterov) momentum and L2 decay.
    Sgd {
        /// Momentum factor μ (0: no momentum buffer).
        momentum: f32,
        /// Dampening of the gradient added to the momentum buffer.
        dampening: f32,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// AdaGrad with learning-rate decay and L2 decay.
    AdaGrad {
        /// Learning-rate decay: step t uses `lr / (1 + (t − 1)·lr_decay)`.
        lr_decay: f32,
        /// Added to the denominator.
        eps: f32,
        /// `√(sum + eps)` as textbooks write it, instead of PyTorch's `√sum + eps`.
        eps_inside_sqrt: bool,
    },
    /// RMSProp with optional momentum and centring, L2 decay.
    RmsProp {
        /// Smoothing constant of the squared-gradient average.
        alpha: f32,
        /// Added to the denominator (outside the root).
        eps: f32,
        /// Momentum factor (0: no momentum buffer).
        momentum: f32,
        /// Normalise by an estimate of the variance instead of the raw second moment.
        centered: bool,
    },
    /// Adam (L2 decay added to the gradient) or AdamW (decoupled decay).
    Adam {
        /// Decay of the first-moment average.
        beta1: f32,
        /// Decay of the second-moment average.
        beta2: f32,
        /// Added to the denominator (outside the root).
        eps: f32,
        /// Normalise by the running maximum of the second moment.
        amsgrad: bool,
        /// AdamW: scale the parameter by `1 − lr·wd` instead of adding `wd·w` to the gradient.
        decoupled: bool,
    },
    /// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), decoupled decay.
    Lion {
        /// Interpolation between momentum and gradient for the update's sign.
        beta1: f32,
        /// Decay of the momentum.
        beta2: f32,
    },
}

impl Rule {
    /// The state buffers this rule keeps per parameter, in the order [`update`]
    /// takes them, named as PyTorch's optimizer state keys.
    pub fn state_names(&self) -> &'static [&'static str] {
        match *self {
            Rule::Sgd { momentum, .. } => {
                if momentum != 0.0 {
                    &["momentum_buffer"]
                } else {
                    &[]
                }
            }
            Rule::AdaGrad { .. } => &["sum"],
            Rule::RmsProp { momentum, centered, .. } => match (momentum > 0.0, centered) {
                (false, false) => &["square_avg"],
                (true, false) => &["square_avg", "momentum_buffer"],
                (false, true) => &["square_avg", "grad_avg"],
                (true, true) => &["square_avg", "momentum_buffer", "grad_avg"],
            },
            Rule::Adam { amsgrad, .. } => {
                if amsgrad {
                    &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
                } else {
                    &["exp_avg", "exp_avg_sq"]
                }
            }
            Rule::Lion { .. } => &["exp_avg"],
        }
    }

    /// The `ALGO` override of `optim.wgsl`.
    fn algo(&self) -> u32 {
        match self {
            Rule::Sgd { .. } => 0,
            Rule::AdaGrad { .. } => 1,
            Rule::RmsProp { .. } => 2,
            Rule::Adam { .. } => 3,
            Rule::Lion { .. } => 4,
        }
    }

    /// The variant overrides (MOMENTUM, NESTEROV, CENTERED, AMSGRAD, DECOUPLED, EPS_INSIDE).
    fn flags(&self) -> Flags {
        let mut f = Flags::default();
        match *self {
            Rule::Sgd { momentum, nesterov, .. } => {
                f.momentum = momentum != 0.0;
                f.nesterov = nesterov;
            }
            Rule::AdaGrad { eps_inside_sqrt, .. } => f.eps_inside = eps_inside_sqrt,
            Rule::RmsProp { momentum, centered, .. } => {
                f.momentum = momentum > 0.0;
                f.centered = centered;
            }
            Rule::Adam { amsgrad, decoupled, .. } => {
                f.amsgrad = amsgrad;
                f.decoupled = decoupled;
            }
            Rule::Lion { .. } => f.decoupled = true,
        }
        f
    }

    /// The uniforms of step `t` (1-based) with this group's lr and weight decay.
    fn scalars(&self, lr: f32, weight_decay: f32, t: u64) -> Scalars {
        let (lr, wd) = (wide(lr), wide(weight_decay));
        let decay = if wd != 0.0 { (1.0 - lr * wd) as f32 } else { 1.0 };
        let mut s = Scalars { lr: lr as f32, weight_decay: wd as f32, decay: 1.0, ..Scalars::default() };
        match *self {
            Rule::Sgd { momentum, dampening, .. } => {
                s.first = t <= 1;
                s.c = [momentum, (1.0 - wide(dampening)) as f32, 0.0, 0.0];
            }
            Rule::AdaGrad { lr_decay, eps, .. } => {
                s.lr = (lr / (1.0 + (t as f64 - 1.0) * wide(lr_decay))) as f32;
                s.eps = eps;
            }
            Rule::RmsProp { alpha, eps, momentum, .. } => {
                s.eps = eps;
                s.c = [alpha, (1.0 - wide(alpha)) as f32, momentum, 0.0];
            }
            Rule::Adam { beta1, beta2, eps, decoupled, .. } => {
                let (b1, b2) = (wide(beta1), wide(beta2));
                let bc1 = 1.0 - b1.powi(t as i32);
                let bc2 = 1.0 - b2.powi(t as i32);
                s.lr = (lr / bc1) as f32;
                s.eps = eps;
                s.c = [(1.0 - b1) as f32, beta2, (1.0 - b2) as f32, bc2.sqrt() as f32];
                if decoupled {
                    s.weight_decay = 0.0;
                    s.decay = decay;
                }
            }
            Rule::Lion { beta1, beta2 } => {
                s.weight_decay = 0.0;
                s.decay = decay;
                s.c = [beta1, (1.0 - wide(beta1)) as f32, beta2, (1.0 - wide(beta2)) as f32];
            }
        }
        s
    }
}

/// An f32 hyper-parameter as the f64 its shortest decimal names (what a
/// Python float literal would be), e.g. 0.1f32 → 0.1, not 0.10000000149.
fn wide(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

#[derive(Clone, Copy, Default)]
struct Flags {
    momentum: bool,
    nesterov: bool,
    centered: bool,
    amsgrad: bool,
    decoupled: bool,
    eps_inside: bool,
}

/// One step's scalars of a rule: a row of the kernel's scalar buffer,
/// shared by the GPU launch and the CPU twin.
#[derive(Clone, Copy, Default, Debug)]
struct Scalars {
    first: bool,
    lr: f32,
    weight_decay: f32,
    decay: f32,
    eps: f32,
    c: [f32; 4],
    /// The step is skipped (`ops::amp::gate` sets it on the device).
    skip: bool,
}

/// Words in one row of scalars (`Scalars` in `optim.wgsl`).
pub const SCALAR_WORDS: usize = 10;

/// The word of a row of scalars that says to skip the step
/// (`ops::amp::gate` writes it from a loss scaler's overflow flag).
pub const SKIP_WORD: usize = 9;

impl Scalars {
    fn words(&self) -> [u32; SCALAR_WORDS] {
        let f = |v: f32| v.to_bits();
        let c = self.c;
        [
            self.first as u32,
            f(self.lr),
            f(self.weight_decay),
            f(self.decay),
            f(self.eps),
            f(c[0]),
            f(c[1]),
            f(c[2]),
            f(c[3]),
            self.skip as u32,
        ]
    }

    fn from_words(w: &[u32]) -> Scalars {
        let f = |i: usize| f32::from_bits(w[i]);
        Scalars {
            first: w[0] != 0,
            lr: f(1),
            weight_decay: f(2),
            decay: f(3),
            eps: f(4),
            c: [f(5), f(6), f(7), f(8)],
            skip: w[SKIP_WORD] != 0,
        }
    }
}

/// The row of scalars (bias corrections, decayed learning rate, decay
/// factor) of step `step` (1-based) of `rule` with a group's `lr` and
/// `weight_decay`, as [`update_row`] reads it from its scalar buffer.
pub fn scalars(rule: &Rule, lr: f32, weight_decay: f32, step: u64) -> [u32; SCALAR_WORDS] {
    rule.scalars(lr, weight_decay, step.max(1)).words()
}

/// torch.lerp's CPU formula, as `lerp` in the kernel.
fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if w.abs() < 0.5 {
        a + w * (b - a)
    } else {
        b - (b - a) * (1.0 - w)
    }
}

/// The CPU twin of the kernel's `update`: one element; returns the new
/// parameter and updates the state slots `s`.
fn update_one(rule: &Rule, f: Flags, k: &Scalars, x: f32, g: f32, s: &mut [f32; 3]) -> f32 {
    let mut w = x;
    let mut g = g;
    if f.decoupled {
        w *= k.decay;
    } else if k.weight_decay != 0.0 {
        g += k.weight_decay * w;
    }
    let c = k.c;
    match rule {
        Rule::Sgd { .. } => {
            if f.momentum {
                let v = if k.first { g } else { s[0] * c[0] + c[1] * g };
                s[0] = v;
                g = if f.nesterov { g + c[0] * v } else { v };
            }
            w + (-k.lr) * g
        }
        Rule::AdaGrad { .. } => {
            let sum = s[0] + g * g;
            s[0] = sum;
            let den = if f.eps_inside { (sum + k.eps).sqrt() } else { sum.sqrt() + k.eps };
            w + (-k.lr) * g / den
        }
        Rule::RmsProp { .. } => {
            let sq = s[0] * c[0] + c[1] * g * g;
            s[0] = sq;
            let mut avg = if f.centered {
                let j = if f.momentum { 2 } else { 1 };
                let ga = lerp(s[j], g, c[1]);
                s[j] = ga;
                (sq - ga * ga).sqrt()
            } else {
                sq.sqrt()
            };
            avg += k.eps;
            if f.momentum {
                let buf = s[1] * c[2] + g / avg;
                s[1] = buf;
                w + (-k.lr) * buf
            } else {
                w + (-k.lr) * g / avg
            }
        }
        Rule::Adam { .. } => {
            let m = lerp(s[0], g, c[0]);
            let v = s[1] * c[1] + c[2] * g * g;
            s[0] = m;
            s[1] = v;
            let mut vhat = v;
            if f.amsgrad {
                vhat = s[2].max(v);
                s[2] = vhat;
            }
            let denom = vhat.sqrt() / c[3] + k.eps;
            w + (-k.lr) * m / denom
        }
        Rule::Lion { .. } => {
            let m = s[0];
            let u = m * c[0] + c[1] * g;
            s[0] = m * c[2] + c[3] * g;
            w + (-k.lr) * sign(u)
        }
    }
}

/// Applies step `step` (1-based: the number of updates this parameter has
/// had, this one included) of `rule` to the first `n` elements of `param`
/// and of its `state` buffers (as many as [`Rule::state_names`], in that
/// order), in place, from `grad`. `lr` and `weight_decay` are the parameter
/// group's.
///
/// One kernel launch (on the CPU backend, one pass); nothing is read back.
/// Buffers past the device's binding limit are updated in ranges of
/// elements, one launch each.
/// State buffers start as PyTorch creates them (zeros; AdaGrad's `sum` at
/// its initial accumulator value); SGD's momentum buffer is overwritten with
/// the gradient at step 1, so it may start with any contents.
///
/// Errors: a state-buffer count that does not match the rule, buffers
/// shorter than `n` elements, on another device, or one buffer passed twice
/// (a buffer cannot be both the gradient and a written operand).
#[allow(clippy::too_many_arguments)]
pub fn update(
    rule: &Rule,
    lr: f32,
    weight_decay: f32,
    step: u64,
    param: &Buffer,
    grad: &Buffer,
    state: &[&Buffer],
    n: usize,
) -> Result<()> {
    let row = Buffer::from_u32(param.device(), &scalars(rule, lr, weight_decay, step))?;
    update_row(rule, (&row, 0), param, grad, state, n)
}

/// How [`update_row`]'s errors name its operand `.0` (the parameter, its
/// gradient, then the state buffers `.1`): formatted only in an error, as
/// the checks run for every parameter every step.
#[derive(Clone, Copy)]
struct OperandName<'a>(usize, &'a [&'static str]);

impl std::fmt::Display for OperandName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => f.write_str("parameter"),
            1 => f.write_str("gradient"),
            i => write!(f, "state `{}`", self.1[i - 2]),
        }
    }
}

/// [`update`] with the step's scalars read from row `row` of `scalars`
/// (rows of [`SCALAR_WORDS`] words, as [`scalars`] makes them), which the
/// caller writes before recording the update: an optimizer keeps one such
/// buffer per parameter group and rewrites it every step, so the launches
/// themselves are the same every step (and a recorded step graph replays
/// them with each new step's scalars).
pub fn update_row(
    rule: &Rule,
    (scalars, row): (&Buffer, usize),
    param: &Buffer,
    grad: &Buffer,
    state: &[&Buffer],
    n: usize,
) -> Result<()> {
    const OP: &str = "optimizer update";
    let names = rule.state_names();
    if state.len() != names.len() {
        return Err(Error::invalid(
            OP,
            format!("{rule:?} keeps {} state buffers ({names:?}), got {}", names.len(), state.len()),
        ));
    }
    super::check_u32(OP, n)?;
    let all: smallvec::SmallVec<[&Buffer; 6]> = [param, grad].into_iter().chain(state.iter().copied()).collect();
    for (i, b) in all.iter().enumerate() {
        let what = OperandName(i, names);
        b.check_len(OP, what, n, 4)?;
        if all[..i].iter().any(|o| o.same_as(b)) {
            return Err(Error::invalid(OP, format!("the {what} buffer is also passed as another operand")));
        }
    }
    let dev = param.device();
    Buffer::check_same_device(OP, dev, &all)?;
    Buffer::check_same_device(OP, dev, &[scalars])?;
    scalars.check_len(OP, "scalar row", (row + 1) * SCALAR_WORDS, 4)?;
    if n == 0 {
        return Ok(());
    }
    let flags = rule.flags();
    run(
        dev,
        |g| {
            let constants = [
                ("ALGO", rule.algo() as f64),
                ("MOMENTUM", flags.momentum as u32 as f64),
                ("NESTEROV", flags.nesterov as u32 as f64),
                ("CENTERED", flags.centered as u32 as f64),
                ("AMSGRAD", flags.amsgrad as u32 as f64),
                ("DECOUPLED", flags.decoupled as u32 as f64),
                ("EPS_INSIDE", flags.eps_inside as u32 as f64),
            ];
            let outputs: smallvec::SmallVec<[&wgpu::Buffer; 4]> =
                [param].iter().chain(state).map(|b| b.wgpu()).collect();
            // Every element's update reads and writes only its own index, so
            // buffers past the binding limit are updated a range of
            // elements at a time, each launch binding the same window of
            // every buffer (ranges start at aligned bytes and whole vec4s).
            let bytes = all.iter().map(|b| b.wgpu().size()).max().unwrap_or(0);
            for (_, len, window) in g.element_ranges(n, bytes) {
                let params =
                    Params::of(&PARAMS).set_u32("n", len).set_u32("quads", len.div_ceil(4)).set_u32("row", row);
                let windows: smallvec::SmallVec<[_; 6]> =
                    [None].into_iter().chain(std::iter::repeat_n(window, 1 + outputs.len())).collect();
                super::launch::dispatch_launch(
                    g,
                    &Launch {
                        shader: "optim",
                        entry: ["state0", "state1", "state2", "state3"][state.len()],
                        constants: &constants,
                        params: params.finish(),
                        inputs: &[scalars.wgpu(), grad.wgpu()],
                        outputs: &outputs,
                        workgroups: groups(len.div_ceil(4), 256),
                    },
                    &windows,
                )?;
            }
            Ok(())
        },
        || {
            let k = Scalars::from_words(&scalars.host()[row * SCALAR_WORDS..(row + 1) * SCALAR_WORDS]);
            if k.skip {
                return;
            }
            let hg = grad.host();
            let mut hp = param.host_mut();
            let mut hs: Vec<_> = state.iter().map(|b| b.host_mut()).collect();
            let gs = f32s(&hg);
            let ws = f32s_mut(&mut hp);
            let mut ss: Vec<&mut [f32]> = hs.iter_mut().map(|h| f32s_mut(h)).collect();
            if dev.runs_fast_cpu() {
                let one = |w, g, s: &mut [f32; 3]| update_one(rule, flags, &k, w, g, s);
                return crate::cpu::optim::update(&mut ws[..n], &gs[..n], ss, one);
            }
            for i in 0..n {
                let mut s = [0.0f32; 3];
                for (j, h) in ss.iter().enumerate() {
                    s[j] = h[i];
                }
                ws[i] = update_one(rule, flags, &k, ws[i], gs[i], &mut s);
                for (j, h) in ss.iter_mut().enumerate() {
                    h[i] = s[j];
                }
            }
        },
    )
}
