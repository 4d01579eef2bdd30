//! Choosing the next token from a language model's logits: greedy, or random
//! with a temperature and a top-k cut.
//!
//! This runs on the host over one row of logits (a vocabulary's worth of
//! numbers read back once per generated token), with its own seeded
//! generator so a sample is reproducible.

use wgrad_autograd::HostRng;

/// How to pick a token from logits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Divides the logits before the softmax: below 1 sharpens, above 1
    /// flattens; 0 means greedy (always the most likely token).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (`None`: all).
    pub top_k: Option<usize>,
}

impl Sampling {
    /// Always the most likely token.
    pub fn greedy() -> Self {
        Sampling { temperature: 0.0, top_k: None }
    }
}

impl Default for Sampling {
    /// Temperature 1, no cut: the model's own distribution.
    fn default() -> Self {
        Sampling { temperature: 1.0, top_k: None }
    }
}

/// A seeded token sampler.
pub struct Sampler {
    /// The rule.
    pub sampling: Sampling,
    rng: HostRng,
}

impl Sampler {
    /// A sampler whose choices are fixed by `seed`.
    pub fn new(sampling: Sampling, seed: u64) -> Self {
        Sampler { sampling, rng: HostRng::new(seed) }
    }

    /// The chosen token id for one row of `logits`.
    ///
    /// # Panics
    /// For empty logits, or a top-k of 0.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        assert!(!logits.is_empty(), "Sampler::sample: no logits");
        let s = self.sampling;
        assert!(s.top_k != Some(0), "Sampler::sample: top_k must be at least 1");
        if s.temperature <= 0.0 || s.top_k == Some(1) {
            return argmax(logits);
        }
        let mut order: Vec<usize> = (0..logits.len()).collect();
        // Descending logits; ties keep index order, so the cut is deterministic.
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        order.truncate(s.top_k.unwrap_or(logits.len()).min(logits.len()));
        let max = logits[order[0]] as f64;
        let p: Vec<f64> = order.iter().map(|&i| ((logits[i] as f64 - max) / s.temperature as f64).exp()).collect();
        let mut u = self.rng.next_f64() * p.iter().sum::<f64>();
        for (&i, &pi) in order.iter().zip(&p) {
            if u < pi {
                return i as u32;
            }
            u -= pi;
        }
        *order.last().unwrap() as u32
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_top1_take_the_argmax() {
        let logits = [0.1, 2.0, -1.0, 2.0];
        assert_eq!(Sampler::new(Sampling::greedy(), 1).sample(&logits), 1);
        assert_eq!(Sampler::new(Sampling { temperature: 5.0, top_k: Some(1) }, 1).sample(&logits), 1);
    }

    #[test]
    fn top_k_never_leaves_the_k_best_and_frequencies_follow_softmax() {
        let logits = [0.0, 1.0, 2.0, -5.0, 0.5];
        let mut s = Sampler::new(Sampling { temperature: 1.0, top_k: Some(2) }, 42);
        let mut counts = [0usize; 5];
        for _ in 0..20_000 {
            counts[s.sample(&logits) as usize] += 1;
        }
        assert_eq!(counts[0] + counts[3] + counts[4], 0, "{counts:?}");
        // p(2) = e²/(e² + e¹) = 0.731.
        let p2 = counts[2] as f64 / 20_000.0;
        assert!((p2 - 0.731).abs() < 0.015, "p(2) = {p2}");
    }

    #[test]
    fn low_temperature_concentrates_and_seed_reproduces() {
        let logits = [1.0, 1.2, 0.8];
        let run = |t: f32, seed| {
            let mut s = Sampler::new(Sampling { temperature: t, top_k: None }, seed);
            (0..2000).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        let cold = run(0.05, 3).iter().filter(|&&t| t == 1).count();
        let warm = run(1.0, 3).iter().filter(|&&t| t == 1).count();
        assert!(cold > 1900 && warm < 1000, "cold {cold}, warm {warm}");
        assert_eq!(run(1.0, 9), run(1.0, 9));
    }
}
