//! The fused optimizer updates' rules and reference twin: the uniforms
//! of a step, computed on the host in f64, and the element update that
//! `shaders/optim.wgsl` mirrors. `ops/optim.rs` has the launches and, in
//! its module docs, each rule's formula as PyTorch writes it.

use super::unary::sign;

/// An update rule and its hyper-parameters (PyTorch's names and defaults
/// live in `wgrad-nn`'s option structs). The learning rate and weight decay
/// are per parameter group and passed to
/// [`update`](crate::ops::optim::update) separately.
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
    /// The state buffers this rule keeps per parameter, in the order
    /// [`update`](crate::ops::optim::update) takes them, named as PyTorch's optimizer state keys.
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
    pub(crate) fn algo(&self) -> u32 {
        match self {
            Rule::Sgd { .. } => 0,
            Rule::AdaGrad { .. } => 1,
            Rule::RmsProp { .. } => 2,
            Rule::Adam { .. } => 3,
            Rule::Lion { .. } => 4,
        }
    }

    /// The variant overrides (MOMENTUM, NESTEROV, CENTERED, AMSGRAD, DECOUPLED, EPS_INSIDE).
    pub(crate) fn flags(&self) -> Flags {
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
    pub(crate) fn scalars(&self, lr: f32, weight_decay: f32, t: u64) -> Scalars {
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

/// A rule's variant overrides of `optim.wgsl`, which the twin branches on as the kernel does.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) struct Flags {
    pub(crate) momentum: bool,
    pub(crate) nesterov: bool,
    pub(crate) centered: bool,
    pub(crate) amsgrad: bool,
    pub(crate) decoupled: bool,
    pub(crate) eps_inside: bool,
}

/// One step's scalars of a rule: a row of the kernel's scalar buffer,
/// shared by the GPU launch and the CPU twin.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Scalars {
    first: bool,
    lr: f32,
    weight_decay: f32,
    decay: f32,
    eps: f32,
    c: [f32; 4],
    /// The step is skipped (`ops::amp::gate` sets it on the device).
    pub(crate) skip: bool,
}

/// Words in one row of scalars (`Scalars` in `optim.wgsl`).
pub const SCALAR_WORDS: usize = 10;

/// The word of a row of scalars that says to skip the step
/// (`ops::amp::gate` writes it from a loss scaler's overflow flag).
pub const SKIP_WORD: usize = 9;

impl Scalars {
    pub(crate) fn words(&self) -> [u32; SCALAR_WORDS] {
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

    pub(crate) fn from_words(w: &[u32]) -> Scalars {
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

/// torch.lerp's CPU formula, as `lerp` in the kernel.
fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if w.abs() < 0.5 {
        a + w * (b - a)
    } else {
        b - (b - a) * (1.0 - w)
    }
}

/// The reference twin of the kernel's `update` (`ops/optim.rs`'s
/// formulas, operation for operation): one element; returns the new
/// parameter and updates the state slots `s`. Always inlined: the CPU
/// backend's loops (`cpu/optim.rs`) vectorize only with it in their body.
#[inline(always)]
pub(crate) fn update_one(rule: &Rule, f: Flags, k: &Scalars, x: f32, g: f32, s: &mut [f32; 3]) -> f32 {
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

/// The reference update of `params` from `grads` and the rule's state
/// buffers `state` (as many as it keeps), element by element in order.
pub(crate) fn update(
    rule: &Rule,
    f: Flags,
    k: &Scalars,
    (params, grads): (&mut [f32], &[f32]),
    mut state: Vec<&mut [f32]>,
) {
    for (i, (w, &g)) in params.iter_mut().zip(grads).enumerate() {
        let mut s = [0.0f32; 3];
        for (j, h) in state.iter().enumerate() {
            s[j] = h[i];
        }
        *w = update_one(rule, f, k, *w, g, &mut s);
        for (j, h) in state.iter_mut().enumerate() {
            h[i] = s[j];
        }
    }
}
