//! [`GradScaler`]: dynamic loss scaling (`torch.amp.GradScaler`).

use std::sync::Mutex;

use wgrad_autograd::{DType, Device, Error, Result, Tensor};
use wgrad_gpu_core::ops::amp;
use wgrad_gpu_core::{Buffer, Layout};

use crate::optim::{exclusive_buffer, Optimizer};
use crate::state::StateDict;

/// The hyper-parameters of a [`GradScaler`], with PyTorch's names and
/// defaults (`GradScalerOptions::default()` is what `GradScaler::new()` uses).
///
/// The two factors are `f64` because PyTorch multiplies the f32 scale by
/// them in double precision before rounding back to f32; keeping them wide
/// makes a non-power-of-two factor give PyTorch's scale bit for bit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradScalerOptions {
    /// The scale before the first step: large, since backing off costs only
    /// a skipped step while a scale that is too small loses gradients.
    pub init_scale: f32,
    /// Multiplies the scale after `growth_interval` overflow-free steps in a
    /// row (must be > 1), probing for the largest scale that does not overflow.
    pub growth_factor: f64,
    /// Multiplies the scale after a step with inf/NaN gradients (must be < 1).
    pub backoff_factor: f64,
    /// Overflow-free steps in a row before the scale grows (0: never grows).
    pub growth_interval: u32,
    /// `false` turns every method into a pass-through, so one training loop
    /// serves both full- and mixed-precision runs.
    pub enabled: bool,
}

impl Default for GradScalerOptions {
    fn default() -> Self {
        GradScalerOptions {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            enabled: true,
        }
    }
}

impl GradScalerOptions {
    /// Sets [`init_scale`](Self::init_scale).
    pub fn init_scale(mut self, v: f32) -> Self {
        self.init_scale = v;
        self
    }
    /// Sets [`growth_factor`](Self::growth_factor).
    pub fn growth_factor(mut self, v: f64) -> Self {
        self.growth_factor = v;
        self
    }
    /// Sets [`backoff_factor`](Self::backoff_factor).
    pub fn backoff_factor(mut self, v: f64) -> Self {
        self.backoff_factor = v;
        self
    }
    /// Sets [`growth_interval`](Self::growth_interval).
    pub fn growth_interval(mut self, v: u32) -> Self {
        self.growth_interval = v;
        self
    }
    /// Sets [`enabled`](Self::enabled).
    pub fn enabled(mut self, v: bool) -> Self {
        self.enabled = v;
        self
    }
}

/// Where one optimizer is in the current iteration (PyTorch's `OptState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Ready,
    Unscaled,
    Stepped,
}

/// One optimizer's progress since the last [`GradScaler::update`].
struct OptimizerState {
    /// The optimizer's parameter ids in group order: its identity (a
    /// `&mut dyn Optimizer` has no stable address to key on).
    key: Vec<u64>,
    stage: Stage,
    /// The scaler state (`ops::amp`) of each device its gradients live on,
    /// whose overflow flag the unscale kernels set.
    checked: Vec<(Device, Buffer)>,
    /// The flags, once read back.
    found: Option<bool>,
}

impl OptimizerState {
    /// Whether any gradient overflowed, read back at most once.
    fn found(&mut self) -> bool {
        if let Some(f) = self.found {
            return f;
        }
        let mut found = false;
        for (_, b) in &self.checked {
            let w = b.to_u32().unwrap_or_else(|e| panic!("GradScaler: reading found_inf back: {e}"));
            found |= w[amp::FOUND_INF] != 0;
        }
        self.found = Some(found);
        found
    }
}

/// How [`GradScaler`] steps an optimizer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// Read the verdict back, then `step` or not.
    Sync,
    /// `step_unless_overflow`: the device skips; nothing read back.
    Async,
    /// `apply_step_unless_overflow` (after `prepare_step`, in a compiled step).
    AsyncPrepared,
}

/// Dynamic loss scaling for mixed-precision training, with the semantics
/// of PyTorch's `torch.amp.GradScaler`.
///
/// Every iteration: [`scale`](Self::scale) the loss and backpropagate it,
/// then [`step`](Self::step) (which unscales the gradients and steps the
/// optimizer only when none of them is inf/NaN), then
/// [`update`](Self::update) (which halves the scale after an overflow and
/// doubles it after `growth_interval` clean steps). Call
/// [`unscale_`](Self::unscale_) yourself between backward and `step` when
/// something must see the true gradients first, e.g. gradient clipping.
///
/// **Where the scale lives.** With factors that are powers of two (the
/// defaults), the scale, its inverse, the overflow flag and the growth
/// count live on the device of the first scaled loss, in one small buffer
/// (`wgrad_gpu_core::ops::amp`): the loss is multiplied by it there, the
/// unscale kernels read the inverse and set the flag, and `update` is one
/// kernel launch, PyTorch's rule bit for bit (a product with a power of two
/// is exact in f32). [`step`](Self::step) still reads the flag back to
/// decide on the host; [`step_async`](Self::step_async) does not: the
/// optimizer's update kernels skip the step on the device, so the host can
/// record the next step while the device finishes this one (the
/// [`Trainer`](crate::train::Trainer) steps this way). [`get_scale`](Self::get_scale),
/// [`growth_tracker`](Self::growth_tracker) and [`state_dict`](Self::state_dict)
/// read the state back (as PyTorch's `get_scale` does). With other factors
/// the scale lives on the host and every step reads the flag back.
///
/// Differences from PyTorch: a second `unscale_` before `update` is a no-op
/// instead of an error; optimizers are told apart by their parameters (two
/// optimizers over the same parameters count as one), not by object
/// identity; [`update_to`](Self::update_to) is PyTorch's `update(new_scale)`.
/// With the scale on the device, the losses and gradients must be on that
/// one device, and several optimizers share one overflow flag (an overflow
/// in any gradient skips every optimizer's step).
///
/// ```
/// use wgrad_autograd::{Device, Tensor};
/// use wgrad_nn::amp::GradScaler;
/// use wgrad_nn::optim::{Optimizer, Sgd};
///
/// let dev = Device::cpu();
/// let w = Tensor::from_vec(&[1.0, -2.0], &[2], &dev).requires_grad_();
/// let mut opt = Sgd::new(vec![w.clone()], 0.1);
/// let mut scaler = GradScaler::new();
/// for _ in 0..3 {
///     opt.zero_grad();
///     let loss = (&w * &w).sum_all();
///     scaler.scale(&loss).backward();
///     scaler.step(&mut opt); // unscales, skips the step on inf/NaN
///     scaler.update();
/// }
/// assert_eq!(scaler.get_scale(), 65536.0);
/// // Three clean SGD steps on the true gradient: w ← 0.8·w each time.
/// let w = w.to_vec();
/// assert!((w[0] - 0.512).abs() < 1e-6 && (w[1] + 1.024).abs() < 1e-6);
/// ```
pub struct GradScaler {
    opts: GradScalerOptions,
    /// The current scale (PyTorch's `_scale`) while it lives on the host:
    /// always with other factors, and until the device state is made.
    scale: f32,
    /// Overflow-free steps in a row since the scale last changed (as `scale`).
    growth_tracker: u32,
    /// With power-of-two factors: the state buffer (`ops::amp`) on the
    /// device of the scaled losses, which then holds the scale and count.
    device: Mutex<Option<Buffer>>,
    /// Progress of each optimizer since the last update.
    per_optimizer: Vec<OptimizerState>,
}

impl Default for GradScaler {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for GradScaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GradScaler")
            .field("options", &self.opts)
            .field("scale_on_device", &self.scale_on_device())
            .finish_non_exhaustive()
    }
}

impl GradScaler {
    /// A scaler with PyTorch's defaults: scale 65536, ×2 after 2000 clean
    /// steps, ×0.5 after an overflow.
    pub fn new() -> Self {
        Self::with_options(GradScalerOptions::default())
    }

    /// A scaler with the given hyper-parameters.
    ///
    /// # Panics
    /// When enabled with `growth_factor <= 1` or `backoff_factor >= 1`
    /// (PyTorch's checks).
    pub fn with_options(opts: GradScalerOptions) -> Self {
        if opts.enabled {
            check_factors(opts.growth_factor, opts.backoff_factor).unwrap_or_else(|e| panic!("GradScaler: {e}"));
        }
        GradScaler {
            opts,
            scale: opts.init_scale,
            growth_tracker: 0,
            device: Mutex::new(None),
            per_optimizer: Vec::new(),
        }
    }

    /// Whether scaling is on; when it is not, every method passes through.
    pub fn is_enabled(&self) -> bool {
        self.opts.enabled
    }

    /// Whether the scale lives on the device (enabled, with power-of-two
    /// factors; see the type's documentation), so that
    /// [`step_async`](Self::step_async) reads nothing back.
    pub fn scale_on_device(&self) -> bool {
        self.opts.enabled
            && amp::is_exact_factor(self.opts.growth_factor)
            && amp::is_exact_factor(self.opts.backoff_factor)
    }

    /// What a recorded step (`CompiledStep`) that scales its loss depends
    /// on: the scale's bits when the scale lives on the host (it is in the
    /// launches' parameters), else 0 (the launches read it on the device).
    pub fn replay_key(&self) -> u64 {
        if self.opts.enabled && !self.scale_on_device() {
            u64::from(self.scale.to_bits())
        } else {
            0
        }
    }

    /// The device state's words, when the scale lives on the device.
    fn device_words(&self) -> Option<Vec<u32>> {
        let state = self.device.lock().unwrap().clone()?;
        Some(expect(state.to_u32()))
    }

    /// The current scale (1.0 when disabled, as in PyTorch). Reads it back
    /// when it lives on the device (as PyTorch's `get_scale` does).
    pub fn get_scale(&self) -> f32 {
        if !self.opts.enabled {
            return 1.0;
        }
        self.device_words().map_or(self.scale, |w| f32::from_bits(w[amp::SCALE]))
    }

    /// The hyper-parameters in force (`init_scale` as constructed; the
    /// others as last loaded by [`load_state_dict`](Self::load_state_dict)).
    pub fn options(&self) -> &GradScalerOptions {
        &self.opts
    }

    /// Overflow-free steps in a row since the scale last changed (read back
    /// when the scale lives on the device).
    pub fn growth_tracker(&self) -> u32 {
        self.device_words().map_or(self.growth_tracker, |w| w[amp::TRACKER])
    }

    /// The state buffer on `dev`, made from the host's scale and count on
    /// first use (scale on the device only).
    ///
    /// # Panics
    /// When the state lives on another device.
    fn state_on(&self, dev: &Device) -> Buffer {
        let mut state = self.device.lock().unwrap();
        let b = state
            .get_or_insert_with(|| expect(Buffer::from_u32(dev, &amp::state_words(self.scale, self.growth_tracker))));
        assert!(
            b.device() == dev,
            "GradScaler: the scale lives on {}, but this loss or gradient is on {} (a scaler with its scale on \
             the device serves one device)",
            b.device().name(),
            dev.name()
        );
        b.clone()
    }

    /// `loss · scale`, recorded in the graph, so that backpropagating it
    /// yields gradients `scale` times larger, out of reach of underflow.
    /// Returns `loss` itself when disabled.
    pub fn scale(&self, loss: &Tensor) -> Tensor {
        if !self.opts.enabled {
            return loss.clone();
        }
        if self.scale_on_device() && loss.dtype() == DType::F32 {
            // The state's first word, as a scalar tensor.
            let state = self.state_on(&loss.device());
            let scale = Tensor::from_parts(state, Layout::contiguous(&[]), DType::F32);
            return loss * &scale;
        }
        loss.mul_scalar(self.get_scale())
    }

    /// Divides the gradients of every group of `optimizer` by the scale, in
    /// place on the device, and records on the device whether any of them
    /// holds inf or NaN. Call it before anything that must see the true
    /// gradients (clipping); [`step`](Self::step) calls it otherwise.
    ///
    /// At most once per optimizer per iteration takes effect: a second call
    /// before [`update`](Self::update) does nothing (PyTorch raises). No
    /// readback; parameters without a gradient are skipped.
    ///
    /// # Panics
    /// After [`step`](Self::step) of the same iteration, or for a non-F32 gradient.
    pub fn unscale_(&mut self, optimizer: &mut dyn Optimizer) {
        if !self.opts.enabled {
            return;
        }
        let i = self.state_index(&*optimizer);
        match self.per_optimizer[i].stage {
            Stage::Unscaled => return,
            Stage::Stepped => panic!("GradScaler: unscale_() is being called after step()"),
            Stage::Ready => {}
        }
        let _scope = wgrad_gpu_core::profile::scope(|| "GradScaler unscale_".to_string());
        let mut checked: Vec<(Device, Buffer)> = Vec::new();
        // (index in `checked`, gradient buffer, elements) of every gradient.
        let mut pending: Vec<(usize, Buffer, usize)> = Vec::new();
        for group in optimizer.groups() {
            for p in &group.params {
                let Some(grad) = p.grad() else { continue };
                assert!(
                    grad.dtype() == DType::F32,
                    "GradScaler: gradients must be F32 to unscale, got {:?}",
                    grad.dtype()
                );
                let n = grad.numel();
                if n == 0 {
                    continue;
                }
                let dev = grad.device();
                let d = match checked.iter().position(|(d, _)| *d == dev) {
                    Some(d) => d,
                    None => {
                        // On the host: this iteration's scale and a clear flag.
                        let b = if self.scale_on_device() {
                            self.state_on(&dev)
                        } else {
                            expect(Buffer::from_u32(&dev, &amp::state_words(self.scale, 0)))
                        };
                        checked.push((dev.clone(), b));
                        checked.len() - 1
                    }
                };
                // In place, on a buffer no other gradient shares.
                pending.push((d, exclusive_buffer(&grad), n));
            }
        }
        // Each device's gradients in as few launches as the kernels take.
        for (d, (_, state)) in checked.iter().enumerate() {
            let grads: Vec<(&Buffer, usize)> = pending.iter().filter(|p| p.0 == d).map(|(_, b, n)| (b, *n)).collect();
            expect(amp::unscale_and_check_all(&grads, state));
        }
        let st = &mut self.per_optimizer[i];
        st.checked = checked;
        st.found = None;
        st.stage = Stage::Unscaled;
    }

    /// Unscales `optimizer`'s gradients (unless [`unscale_`](Self::unscale_)
    /// already did), reads the overflow flag back (the one readback of the
    /// iteration) and calls `optimizer.step()` only when every gradient is
    /// finite. Returns whether the optimizer stepped. When disabled, just
    /// steps and returns `true`.
    ///
    /// # Panics
    /// When called twice for one optimizer before [`update`](Self::update),
    /// or when no parameter of `optimizer` has a gradient (PyTorch's "No inf
    /// checks were recorded for this optimizer": usually a missing backward).
    pub fn step(&mut self, optimizer: &mut dyn Optimizer) -> bool {
        self.step_how(optimizer, How::Sync)
    }

    /// [`step`](Self::step) without reading anything back when the scale
    /// lives on the device and the optimizer can skip there (the built-in
    /// ones can, `Optimizer::step_unless_overflow`): the optimizer's update
    /// kernels leave everything as it is when a gradient overflowed, and
    /// the optimizer takes the step's counts back when it next steps. The
    /// same trajectory as `step`, bit for bit, with no sync mid-step.
    /// Otherwise it is `step`.
    ///
    /// # Panics
    /// As [`step`](Self::step).
    pub fn step_async(&mut self, optimizer: &mut dyn Optimizer) {
        self.step_how(optimizer, How::Async);
    }

    /// [`step_async`](Self::step_async) for an optimizer whose host half
    /// (`Optimizer::prepare_step`) already ran: only its device half
    /// (`apply_step`), gated, so that a compiled step records it.
    ///
    /// # Panics
    /// As [`step`](Self::step).
    pub fn apply_step_async(&mut self, optimizer: &mut dyn Optimizer) {
        self.step_how(optimizer, How::AsyncPrepared);
    }

    fn step_how(&mut self, optimizer: &mut dyn Optimizer, how: How) -> bool {
        if !self.opts.enabled {
            match how {
                How::AsyncPrepared => optimizer.apply_step(),
                _ => optimizer.step(),
            }
            return true;
        }
        let i = self.state_index(&*optimizer);
        match self.per_optimizer[i].stage {
            Stage::Stepped => panic!("GradScaler: step() has already been called since the last update()"),
            Stage::Ready => self.unscale_(optimizer),
            Stage::Unscaled => {}
        }
        let on_device = self.scale_on_device();
        let st = &mut self.per_optimizer[i];
        assert!(!st.checked.is_empty(), "GradScaler: no inf checks were recorded for this optimizer");
        st.stage = Stage::Stepped;
        let state = st.checked[0].1.clone();
        let gated = on_device
            && match how {
                How::Sync => false,
                How::Async => optimizer.step_unless_overflow(&state),
                How::AsyncPrepared => optimizer.apply_step_unless_overflow(&state),
            };
        if gated {
            return true;
        }
        let stepped = !st.found();
        if stepped {
            match how {
                How::AsyncPrepared => optimizer.apply_step(),
                _ => optimizer.step(),
            }
        }
        stepped
    }

    /// Adjusts the scale for the next iteration from this one's overflow
    /// verdict (PyTorch's `_amp_update_scale_`): after an overflow the scale
    /// is multiplied by `backoff_factor` and the growth count restarts;
    /// otherwise the count grows, and on reaching `growth_interval` the
    /// scale is multiplied by `growth_factor` (unless that would make it
    /// infinite) and the count restarts. Then every optimizer is ready for
    /// the next iteration. With the scale on the device this is one kernel
    /// launch there (nothing read back); else it costs no device work.
    ///
    /// # Panics
    /// When no optimizer was unscaled since the last update ("No inf checks
    /// were recorded prior to update").
    pub fn update(&mut self) {
        if !self.opts.enabled {
            return;
        }
        assert!(
            self.per_optimizer.iter().any(|s| !s.checked.is_empty()),
            "GradScaler: no inf checks were recorded prior to update()"
        );
        let o = self.opts;
        if self.scale_on_device() {
            let state = self.device.lock().unwrap().clone().expect("unscaling made the device state");
            expect(amp::update_scale(&state, o.growth_factor, o.backoff_factor, o.growth_interval));
            self.per_optimizer.clear();
            return;
        }
        let found =
            self.per_optimizer.iter_mut().filter(|s| !s.checked.is_empty()).fold(false, |acc, s| s.found() | acc);
        if found {
            self.scale = (self.scale as f64 * o.backoff_factor) as f32;
            self.growth_tracker = 0;
        } else {
            let successful = self.growth_tracker.saturating_add(1);
            if successful == o.growth_interval {
                let grown = (self.scale as f64 * o.growth_factor) as f32;
                if grown.is_finite() {
                    self.scale = grown;
                }
                self.growth_tracker = 0;
            } else {
                self.growth_tracker = successful;
            }
        }
        self.per_optimizer.clear();
    }

    /// Sets the scale to `new_scale` instead of updating it from the
    /// overflow verdict (PyTorch's `update(new_scale)`; the growth count is
    /// left as it is), and readies every optimizer for the next iteration.
    pub fn update_to(&mut self, new_scale: f32) {
        if !self.opts.enabled {
            return;
        }
        self.set_scale(new_scale, None);
        self.per_optimizer.clear();
    }

    /// The state to resume with, under PyTorch's keys as metadata: `scale`,
    /// `growth_factor`, `backoff_factor`, `growth_interval`,
    /// `_growth_tracker`. Empty when disabled (as in PyTorch).
    pub fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        if !self.opts.enabled {
            return sd;
        }
        let (scale, tracker) = match self.device_words() {
            Some(w) => (f32::from_bits(w[amp::SCALE]), w[amp::TRACKER]),
            None => (self.scale, self.growth_tracker),
        };
        let m = &mut sd.meta;
        m.insert("scale".into(), format!("{scale:?}"));
        m.insert("growth_factor".into(), format!("{:?}", self.opts.growth_factor));
        m.insert("backoff_factor".into(), format!("{:?}", self.opts.backoff_factor));
        m.insert("growth_interval".into(), self.opts.growth_interval.to_string());
        m.insert("_growth_tracker".into(), tracker.to_string());
        sd
    }

    /// Restores a [`state_dict`](Self::state_dict); on any error nothing
    /// changes. Errors (like PyTorch) on a disabled scaler, an empty state
    /// (saved from a disabled scaler), and on missing or malformed entries.
    pub fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        const WHO: &str = "GradScaler::load_state_dict";
        if !self.opts.enabled {
            return Err(Error::invalid(WHO, "attempting to load the state of a disabled GradScaler"));
        }
        if state.meta.is_empty() && state.tensors.is_empty() {
            return Err(Error::invalid(WHO, "the state is empty, possibly saved from a disabled GradScaler"));
        }
        let scale: f32 = get(state, "scale")?;
        let growth_factor: f64 = get(state, "growth_factor")?;
        let backoff_factor: f64 = get(state, "backoff_factor")?;
        let growth_interval: u32 = get(state, "growth_interval")?;
        let growth_tracker: u32 = get(state, "_growth_tracker")?;
        check_factors(growth_factor, backoff_factor).map_err(|e| Error::invalid(WHO, e))?;
        self.opts.growth_factor = growth_factor;
        self.opts.backoff_factor = backoff_factor;
        self.opts.growth_interval = growth_interval;
        self.set_scale(scale, Some(growth_tracker));
        Ok(())
    }

    /// Sets the scale (and the growth count when given) wherever they live;
    /// a device state is dropped when the factors no longer allow it.
    fn set_scale(&mut self, scale: f32, tracker: Option<u32>) {
        let on_device = self.scale_on_device();
        let mut state = self.device.lock().unwrap();
        if let Some(b) = state.as_ref().filter(|_| on_device) {
            let mut words = amp::state_words(scale, tracker.unwrap_or(0)).to_vec();
            // The flag cleared; the count kept unless given.
            words.truncate(if tracker.is_some() { amp::TRACKER + 1 } else { amp::TRACKER });
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            expect(b.write_bytes(&bytes));
        } else if state.is_some() {
            // The factors changed: the host takes the scale back.
            let w = expect(state.take().expect("checked").to_u32());
            self.growth_tracker = w[amp::TRACKER];
        }
        drop(state);
        self.scale = scale;
        if let Some(t) = tracker {
            self.growth_tracker = t;
        }
    }

    /// The index of `optimizer`'s state, created ready when new.
    fn state_index(&mut self, optimizer: &dyn Optimizer) -> usize {
        let key: Vec<u64> = optimizer.groups().iter().flat_map(|g| g.params.iter().map(|p| p.id())).collect();
        if let Some(i) = self.per_optimizer.iter().position(|s| s.key == key) {
            return i;
        }
        self.per_optimizer.push(OptimizerState { key, stage: Stage::Ready, checked: Vec::new(), found: None });
        self.per_optimizer.len() - 1
    }
}

fn check_factors(growth: f64, backoff: f64) -> std::result::Result<(), String> {
    if growth.partial_cmp(&1.0) != Some(std::cmp::Ordering::Greater) {
        return Err(format!("the growth factor must be > 1.0, got {growth}"));
    }
    if backoff.partial_cmp(&1.0) != Some(std::cmp::Ordering::Less) {
        return Err(format!("the backoff factor must be < 1.0, got {backoff}"));
    }
    Ok(())
}

fn get<T: std::str::FromStr>(sd: &StateDict, key: &str) -> Result<T> {
    let s = sd
        .meta
        .get(key)
        .ok_or_else(|| Error::invalid("GradScaler::load_state_dict", format!("state lacks the entry {key:?}")))?;
    s.parse().map_err(|_| Error::invalid("GradScaler::load_state_dict", format!("entry {key:?} = {s:?} is malformed")))
}

#[track_caller]
fn expect<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("GradScaler: {e}"))
}
