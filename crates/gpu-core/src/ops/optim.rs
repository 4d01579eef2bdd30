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
use crate::kernels::optim::{self as twin, Scalars};
pub use crate::kernels::optim::{Rule, SCALAR_WORDS, SKIP_WORD};
use crate::{Buffer, Error, Result};

/// `optim.wgsl`'s uniform block.
pub(crate) const PARAMS: ParamsDecl =
    ParamsDecl { shader: "optim", fields: &[("n", Kind::U32), ("quads", Kind::U32), ("row", Kind::U32)] };

/// The row of scalars (bias corrections, decayed learning rate, decay
/// factor) of step `step` (1-based) of `rule` with a group's `lr` and
/// `weight_decay`, as [`update_row`] reads it from its scalar buffer.
pub fn scalars(rule: &Rule, lr: f32, weight_decay: f32, step: u64) -> [u32; SCALAR_WORDS] {
    rule.scalars(lr, weight_decay, step.max(1)).words()
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
            let ss: Vec<&mut [f32]> = hs.iter_mut().map(|h| f32s_mut(h)).collect();
            if dev.runs_fast_cpu() {
                return crate::cpu::optim::update_rule(rule, flags, &k, &mut ws[..n], &gs[..n], ss);
            }
            twin::update(rule, flags, &k, (&mut ws[..n], &gs[..n]), ss);
        },
    )
}
