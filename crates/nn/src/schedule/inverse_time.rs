//! [`InverseTimeDecay`].

use wgrad_autograd::Result;

use super::reflect::{self, Field, Reflect};
use super::{LrScheduler, Lrs};
use crate::optim::Optimizer;
use crate::state::StateDict;

/// Inverse-time decay, `lr = base / (1 + decay_rate * t / decay_steps)`, with
/// `t / decay_steps` floored when `staircase` is set (Keras'
/// `InverseTimeDecay`, applied per step).
///
/// PyTorch has no such class; it equals
/// `LambdaLR(opt, lambda t: 1 / (1 + decay_rate * t / decay_steps))` (or
/// `t // decay_steps` for the staircase) value for value. Like `LambdaLR` it
/// is a closed form of the base lrs and the step count, so an lr set from
/// outside is overwritten at the next step.
#[derive(Clone, Debug)]
pub struct InverseTimeDecay {
    decay_rate: f64,
    decay_steps: usize,
    staircase: bool,
    last_epoch: usize,
    base_lrs: Vec<f64>,
    lrs: Lrs,
}

impl InverseTimeDecay {
    /// Decays the optimizer's current lrs by `1 / (1 + decay_rate * t / decay_steps)`.
    ///
    /// # Panics
    /// If `decay_steps` is 0 or `decay_rate` is negative or not finite (the
    /// denominator could reach zero).
    pub fn new(opt: &mut dyn Optimizer, decay_rate: f64, decay_steps: usize, staircase: bool) -> Self {
        assert!(decay_steps > 0, "InverseTimeDecay::new: decay_steps must be positive");
        assert!(
            decay_rate >= 0.0 && decay_rate.is_finite(),
            "InverseTimeDecay::new: decay_rate must be finite and >= 0, got {decay_rate}"
        );
        let lrs = Lrs::from_opt(opt);
        let base_lrs = lrs.current("InverseTimeDecay::new", opt);
        InverseTimeDecay { decay_rate, decay_steps, staircase, last_epoch: 0, base_lrs, lrs }
    }

    /// Steps taken since construction.
    pub fn last_epoch(&self) -> usize {
        self.last_epoch
    }

    fn factor(&self, t: usize) -> f64 {
        // `rate * t / steps` multiplies first, as the reference lambda does,
        // so the f64 results agree to the last bit.
        let d = if self.staircase {
            self.decay_rate * (t / self.decay_steps) as f64
        } else {
            self.decay_rate * t as f64 / self.decay_steps as f64
        };
        1.0 / (1.0 + d)
    }
}

impl LrScheduler for InverseTimeDecay {
    fn step(&mut self, opt: &mut dyn Optimizer) {
        self.last_epoch += 1;
        let f = self.factor(self.last_epoch);
        let lrs = self.base_lrs.iter().map(|b| b * f).collect();
        self.lrs.write("InverseTimeDecay::step", opt, lrs);
    }

    fn last_lr(&self) -> Vec<f32> {
        self.lrs.last()
    }

    fn base_lrs(&self) -> Vec<f64> {
        self.base_lrs.clone()
    }

    fn state_dict(&self) -> StateDict {
        reflect::save(self)
    }

    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        reflect::load(self, sd)
    }
}

impl Reflect for InverseTimeDecay {
    const KIND: &'static str = "InverseTimeDecay";
    const WHO: &'static str = "InverseTimeDecay::load_state_dict";

    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("decay_rate", Field::F64(&mut self.decay_rate)),
            ("decay_steps", Field::Count(&mut self.decay_steps)),
            ("staircase", Field::Bool(&mut self.staircase)),
            ("last_epoch", Field::Count(&mut self.last_epoch)),
            ("base_lrs", Field::PerGroup(&mut self.base_lrs)),
            ("last_lr", Field::Lrs(&mut self.lrs)),
        ]
    }

    /// The denominator `1 + rate * t / steps` must stay positive and finite.
    fn check(&mut self) -> std::result::Result<(), String> {
        let (steps, rate) = (self.decay_steps, self.decay_rate);
        if steps == 0 || !(rate >= 0.0 && rate.is_finite()) {
            return Err(format!("bad decay_steps {steps} or decay_rate {rate}"));
        }
        Ok(())
    }
}
