//! [`LinearWarmup`].

use wgrad_autograd::Result;

use super::reflect::{self, Field, Reflect};
use super::{LrScheduler, Lrs};
use crate::optim::Optimizer;
use crate::state::StateDict;

/// A linear warm-up in front of any other schedule: the lr is
/// `base * (start_factor + (1 - start_factor) * t / warmup_steps)` for steps
/// `t < warmup_steps`, then the wrapped schedule runs from its own step 0
/// (its construction-time lr at `t = warmup_steps`, its step `k` at
/// `t = warmup_steps + k`).
///
/// This is PyTorch's
/// `SequentialLR(opt, [LinearLR(opt, start_factor, 1.0, warmup_steps), inner], milestones=[warmup_steps])`,
/// value for value, with `base` the wrapped schedule's
/// [`base_lrs`](LrScheduler::base_lrs) (PyTorch's `initial_lr`, which is
/// `max_lr / div_factor` for [`OneCycleLR`](super::OneCycleLR)).
///
/// Differences: the warm-up lrs come from the closed form (PyTorch's
/// `LinearLR` recursion gives the same values up to rounding), so an lr set
/// from outside during warm-up is overwritten, and `start_factor = 0` is
/// allowed (PyTorch's `LinearLR` rejects it: its recursion would divide by
/// zero). A metric-driven inner schedule ([`ReduceLROnPlateau`](super::ReduceLROnPlateau),
/// which PyTorch's `SequentialLR` refuses) works too: metrics given during
/// warm-up, and the one at `t = warmup_steps` (measured with a warm-up lr),
/// are not passed on.
#[derive(Clone, Debug)]
pub struct LinearWarmup<S> {
    inner: S,
    own: Warmup,
}

/// [`LinearWarmup`]'s own state (the wrapped schedule aside), a value of
/// its own so it can be reflected (and cloned) whatever the inner schedule.
#[derive(Clone, Debug)]
struct Warmup {
    warmup_steps: usize,
    start_factor: f64,
    last_epoch: usize,
    base_lrs: Vec<f64>,
    lrs: Lrs,
}

impl<S: LrScheduler> LinearWarmup<S> {
    /// Warms up over `warmup_steps` steps from `start_factor` times the base
    /// lrs of `inner` (freshly built on the same optimizer) to them; writes
    /// the first warm-up lr (nothing when `warmup_steps` is 0: then it is
    /// `inner` alone).
    ///
    /// # Panics
    /// If `start_factor` is outside `[0, 1]` or `inner` drives another
    /// number of groups.
    pub fn new(opt: &mut dyn Optimizer, inner: S, warmup_steps: usize, start_factor: f64) -> Self {
        const WHO: &str = "LinearWarmup::new";
        assert!((0.0..=1.0).contains(&start_factor), "{WHO}: start_factor must lie in [0, 1], got {start_factor}");
        let lrs = Lrs::from_opt(opt);
        let base_lrs = inner.base_lrs();
        assert!(
            base_lrs.len() == lrs.len(),
            "{WHO}: the optimizer has {} parameter groups but the inner schedule drives {}",
            lrs.len(),
            base_lrs.len()
        );
        let mut w = LinearWarmup { inner, own: Warmup { warmup_steps, start_factor, last_epoch: 0, base_lrs, lrs } };
        if warmup_steps > 0 {
            let first = w.warmup_lrs(0);
            w.own.lrs.write(WHO, opt, first);
        }
        w
    }

    /// The wrapped schedule.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Steps taken since construction (`SequentialLR`'s `last_epoch`).
    pub fn last_epoch(&self) -> usize {
        self.own.last_epoch
    }

    fn warmup_lrs(&self, t: usize) -> Vec<f64> {
        let f = self.own.start_factor + (1.0 - self.own.start_factor) * t as f64 / self.own.warmup_steps as f64;
        self.own.base_lrs.iter().map(|b| b * f).collect()
    }

    /// Takes the next step; passes it on (with the metric, if any) once the
    /// warm-up is over.
    fn advance(&mut self, opt: &mut dyn Optimizer, metric: Option<f32>) {
        const WHO: &str = "LinearWarmup::step";
        self.own.last_epoch += 1;
        let t = self.own.last_epoch;
        if t < self.own.warmup_steps {
            let lrs = self.warmup_lrs(t);
            self.own.lrs.write(WHO, opt, lrs);
        } else if t == self.own.warmup_steps {
            // The inner schedule's step 0: the lrs it set when built, which
            // it still holds exactly, so it carries on from its own values.
            let inner = self.inner.last_lr();
            let groups = opt.groups_mut();
            assert!(
                groups.len() == inner.len(),
                "{WHO}: the optimizer has {} parameter groups but the scheduler was built for {}",
                groups.len(),
                inner.len()
            );
            for (g, l) in groups.iter_mut().zip(inner) {
                g.lr = l;
            }
        } else {
            match metric {
                Some(m) => self.inner.step_with(m, opt),
                None => self.inner.step(opt),
            }
        }
    }
}

impl<S: LrScheduler> LrScheduler for LinearWarmup<S> {
    fn step(&mut self, opt: &mut dyn Optimizer) {
        self.advance(opt, None);
    }

    fn step_with(&mut self, metric: f32, opt: &mut dyn Optimizer) {
        self.advance(opt, Some(metric));
    }

    fn uses_metric(&self) -> bool {
        self.inner.uses_metric()
    }

    fn last_lr(&self) -> Vec<f32> {
        if self.own.last_epoch >= self.own.warmup_steps {
            self.inner.last_lr()
        } else {
            self.own.lrs.last()
        }
    }

    fn base_lrs(&self) -> Vec<f64> {
        self.own.base_lrs.clone()
    }

    /// Its own counters and base lrs, with the wrapped schedule's state
    /// under `inner.`.
    fn state_dict(&self) -> StateDict {
        let mut sd = reflect::save(&self.own);
        sd.extend_prefixed("inner", self.inner.state_dict());
        sd
    }

    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        // Its own state is checked first and set last, so a failure leaves
        // this scheduler as it was (the inner one validates before it
        // changes anything too).
        let mut own = self.own.clone();
        reflect::load(&mut own, sd)?;
        self.inner.load_state_dict(&sd.sub("inner"))?;
        self.own = own;
        Ok(())
    }
}

impl Reflect for Warmup {
    const KIND: &'static str = "LinearWarmup";
    const WHO: &'static str = "LinearWarmup::load_state_dict";

    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("warmup_steps", Field::Count(&mut self.warmup_steps)),
            ("start_factor", Field::F64(&mut self.start_factor)),
            ("last_epoch", Field::Count(&mut self.last_epoch)),
            ("base_lrs", Field::PerGroup(&mut self.base_lrs)),
            ("last_lr", Field::Lrs(&mut self.lrs)),
        ]
    }

    fn check(&mut self) -> std::result::Result<(), String> {
        if !(0.0..=1.0).contains(&self.start_factor) {
            return Err(format!("start_factor must lie in [0, 1], got {}", self.start_factor));
        }
        Ok(())
    }
}
