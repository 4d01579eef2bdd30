//! Finite-difference gradient checking, for this crate's tests and for every
//! later op and layer.
//!
//! The analytic gradient of `sum(f(x) * w)` (fixed random `w`, so every output
//! element matters) is compared with central differences
//! `(F(x + h) - F(x - h)) / 2h`, evaluated in f64 on the host from f32 outputs.

use crate::{no_grad, Tensor};

/// Step and tolerances for [`check_gradients`].
#[derive(Clone, Copy, Debug)]
pub struct GradCheck {
    /// Finite-difference step (f32 data needs a coarse one: 1e-2 to 1e-3).
    pub eps: f32,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck { eps: 1e-2, atol: 1e-2, rtol: 1e-2 }
    }
}

/// Checks the gradients of `f` at `inputs` (each becomes a leaf requiring a
/// gradient). Returns a description of the first mismatch.
pub fn check_gradients(f: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor], opts: GradCheck) -> Result<(), String> {
    let leaves: Vec<Tensor> = inputs.iter().map(|t| t.detach().requires_grad_()).collect();
    let out = f(&leaves);
    let n_out = out.numel();
    // Deterministic weights in [0.5, 1.5): no cancellation between outputs.
    let w: Vec<f64> = (0..n_out).map(|i| 0.5 + ((i * 7919 + 13) % 101) as f64 / 101.0).collect();
    let wt = Tensor::from_vec(&w.iter().map(|&v| v as f32).collect::<Vec<_>>(), &out.shape(), &out.device());
    (&out * &wt).sum_all().backward();

    let project = |y: &Tensor| -> f64 { y.to_vec().iter().zip(&w).map(|(&a, &b)| a as f64 * b).sum() };
    for (k, leaf) in leaves.iter().enumerate() {
        let analytic = match leaf.grad() {
            Some(g) => g.to_vec(),
            None => vec![0.0; leaf.numel()],
        };
        let base = leaf.to_vec();
        for j in 0..base.len() {
            let eval = |delta: f32| {
                let mut v = base.clone();
                v[j] += delta;
                let mut args: Vec<Tensor> = leaves.iter().map(|t| t.detach()).collect();
                args[k] = Tensor::from_vec(&v, &leaf.shape(), &leaf.device());
                no_grad(|| project(&f(&args)))
            };
            let numeric = (eval(opts.eps) - eval(-opts.eps)) / (2.0 * opts.eps as f64);
            let a = analytic[j] as f64;
            if (a - numeric).abs() > opts.atol + opts.rtol * numeric.abs() {
                return Err(format!(
                    "input {k} element {j}: analytic gradient {a:.6} vs numeric {numeric:.6} (input value {})",
                    base[j]
                ));
            }
        }
    }
    Ok(())
}
