//! [`InverseTimeDecay`].

use wgrad_autograd::{Error, Result};

use super::{check_kind, get, get_count, get_f64s, new_state, put, put_list, LrScheduler, Lrs};
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
        let mut sd = new_state("InverseTimeDecay");
        put(&mut sd, "decay_rate", self.decay_rate);
        put(&mut sd, "decay_steps", self.decay_steps);
        put(&mut sd, "staircase", self.staircase);
        put(&mut sd, "last_epoch", self.last_epoch);
        put_list(&mut sd, "base_lrs", &self.base_lrs);
        self.lrs.save(&mut sd);
        sd
    }

    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        const WHO: &str = "InverseTimeDecay::load_state_dict";
        check_kind(sd, WHO, "InverseTimeDecay")?;
        let decay_steps = get_count(sd, WHO, "decay_steps")?;
        let decay_rate: f64 = get(sd, WHO, "decay_rate")?;
        if decay_steps == 0 || !(decay_rate >= 0.0 && decay_rate.is_finite()) {
            return Err(Error::invalid(WHO, format!("bad decay_steps {decay_steps} or decay_rate {decay_rate}")));
        }
        let n = self.lrs.len();
        *self = InverseTimeDecay {
            decay_rate,
            decay_steps,
            staircase: get(sd, WHO, "staircase")?,
            last_epoch: get_count(sd, WHO, "last_epoch")?,
            base_lrs: get_f64s(sd, WHO, "base_lrs", n)?,
            lrs: Lrs::load(WHO, sd, n)?,
        };
        Ok(())
    }
}
