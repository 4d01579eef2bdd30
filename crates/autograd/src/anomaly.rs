//! Anomaly detection: `torch.autograd.detect_anomaly` for wgrad. Inside
//! [`detect_anomaly`] (or with `WGRAD_DETECT_ANOMALY=1` in the environment),
//! every op's output is read back as soon as it is recorded, and the first op
//! that turns finite inputs into NaN or ±Inf, or any inputs into a NaN,
//! stops the program with a panic naming it: the op, and for a kernel run by
//! a backward rule, the forward op whose gradient it was computing.
//!
//! Why "from finite inputs": an infinity that enters as data (the `-inf` of
//! an attention mask) is not an anomaly, and an op fed a NaN did not create
//! it; the op to blame is the one where the non-finite value was born.
//!
//! It costs one submission and readback per op (the batching that makes a
//! step one submission is bypassed), so it is off by default and meant for
//! debugging: docs/performance.md gives the measured cost.

use std::cell::Cell;

use crate::{DType, Tensor};

thread_local! {
    /// `None` until first asked: then the environment decides the default.
    static ENABLED: Cell<Option<bool>> = const { Cell::new(None) };
    /// The forward op whose backward rule is running, if any.
    static BACKWARD_OF: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// The environment variable that turns detection on for a whole program.
pub const ENV_VAR: &str = "WGRAD_DETECT_ANOMALY";

/// Whether ops on this thread are checked (the environment's default,
/// `WGRAD_DETECT_ANOMALY=1`, unless a scope set it).
pub fn is_anomaly_enabled() -> bool {
    ENABLED.with(|e| match e.get() {
        Some(on) => on,
        None => {
            let on = wgrad_gpu_core::env::switch(ENV_VAR, false);
            e.set(Some(on));
            on
        }
    })
}

/// Sets this thread's anomaly detection until dropped, then restores the
/// previous state (guards nest).
#[must_use = "detection ends when the guard drops"]
pub struct AnomalyGuard {
    previous: bool,
}

impl AnomalyGuard {
    /// Detection on (`true`) or off (`false`) until the guard drops.
    pub fn new(enabled: bool) -> Self {
        let previous = is_anomaly_enabled();
        ENABLED.with(|e| e.set(Some(enabled)));
        AnomalyGuard { previous }
    }
}

impl Drop for AnomalyGuard {
    fn drop(&mut self) {
        ENABLED.with(|e| e.set(Some(self.previous)));
    }
}

/// Runs `f` with every op checked for NaN/Inf, forward and backward:
/// `with torch.autograd.detect_anomaly():`.
///
/// # Panics
/// At the first op whose output is anomalous (see the module docs), with
/// a message naming it.
///
/// ```should_panic
/// use wgrad_autograd::{detect_anomaly, Device, Tensor};
/// let dev = Device::cpu();
/// let x = Tensor::from_vec(&[1.0, -1.0], &[2], &dev).requires_grad_();
/// // panics: "detect_anomaly: `sqrt` (forward) produced NaN ..."
/// detect_anomaly(|| x.sqrt().sum_all().backward());
/// ```
pub fn detect_anomaly<R>(f: impl FnOnce() -> R) -> R {
    let _guard = AnomalyGuard::new(true);
    f()
}

/// Marks the kernels recorded until the returned guard drops as computing
/// the backward of `op` (graph.rs wraps each backward rule in one).
pub(crate) fn backward_of(op: &'static str) -> impl Drop {
    struct Restore(Option<&'static str>);
    impl Drop for Restore {
        fn drop(&mut self) {
            BACKWARD_OF.with(|b| b.set(self.0));
        }
    }
    Restore(BACKWARD_OF.with(|b| b.replace(Some(op))))
}

/// What a tensor holds that is not finite.
#[derive(Default)]
struct NonFinite {
    nan: usize,
    inf: usize,
    /// The first non-finite element: (index, value).
    first: Option<(usize, f32)>,
}

fn scan(t: &Tensor) -> NonFinite {
    let mut s = NonFinite::default();
    if t.dtype() == DType::U32 {
        return s;
    }
    // A device error here surfaces again, with its own message, at the
    // program's next readback; detection must not replace it.
    let Ok(values) = t.try_to_vec() else { return s };
    for (i, v) in values.into_iter().enumerate() {
        if v.is_finite() {
            continue;
        }
        if v.is_nan() {
            s.nan += 1;
        } else {
            s.inf += 1;
        }
        s.first.get_or_insert((i, v));
    }
    s
}

/// Checks the output of `op` (called for every op recorded through
/// `Tensor::from_op` when detection is on).
pub(crate) fn check(op: &'static str, inputs: &[&Tensor], output: &Tensor) {
    let place = match BACKWARD_OF.with(|b| b.get()) {
        Some(forward) => format!("`{op}` (in the backward of `{forward}`)"),
        None => format!("`{op}` (forward)"),
    };
    check_value(|| place, inputs, output);
}

/// Checks the gradients a backward rule returned (graph.rs, for every node
/// when detection is on): rules that build their results straight from
/// gpu-core kernels are seen here. `from` are the rule's operands: the
/// incoming gradient, the forward inputs and the forward output.
pub(crate) fn check_gradients(op: &'static str, from: &[&Tensor], grads: &[Option<Tensor>]) {
    for (k, g) in grads.iter().enumerate() {
        if let Some(g) = g {
            check_value(|| format!("the backward of `{op}` (the gradient of its input {k})"), from, g);
        }
    }
}

/// Panics, naming `place`, when `output` is the birthplace of a NaN or an
/// infinity given `inputs`.
fn check_value(place: impl FnOnce() -> String, inputs: &[&Tensor], output: &Tensor) {
    let out = scan(output);
    let Some((index, value)) = out.first else { return };
    let ins: Vec<NonFinite> = inputs.iter().map(|t| scan(t)).collect();
    let inputs_nan = ins.iter().any(|s| s.nan > 0);
    let inputs_finite = ins.iter().all(|s| s.first.is_none());
    if !(inputs_finite || (out.nan > 0 && !inputs_nan)) {
        return; // it passed on a value an earlier op (or the data) made
    }
    let what = if out.nan > 0 { "NaN" } else { "Inf" };
    panic!(
        "detect_anomaly: {} produced {what}: {} NaN and {} ±Inf of {} elements, the first {value} \
         at flat index {index} of shape {:?}, from {} inputs",
        place(),
        out.nan,
        out.inf,
        output.numel(),
        output.shape(),
        if inputs_finite { "finite" } else { "NaN-free" }
    );
}
