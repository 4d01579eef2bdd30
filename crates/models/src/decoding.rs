//! Greedy and beam-search decoding for any step-wise decoder (an RNN
//! seq2seq decoder, a language model): the search runs on the host over the
//! log-probabilities the model gives for each live hypothesis, and asks the
//! model to reorder its batched state when hypotheses are kept or dropped.

/// A decoder that extends `n` hypotheses by one token at a time.
pub trait StepDecoder {
    /// The decoder's state for a batch of hypotheses (hidden states, ...).
    type State;

    /// Log-probabilities `[n · vocab]` (row-major) of the next token for `n`
    /// hypotheses whose last tokens are `tokens`, and their new state.
    fn step(&self, tokens: &[u32], state: &Self::State) -> (Vec<f32>, Self::State);

    /// The state of the hypotheses `rows` (indices into the current batch;
    /// repeats allowed), in that order.
    fn select(&self, state: &Self::State, rows: &[u32]) -> Self::State;
}

/// A finished (or cut-off) output sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    /// Generated tokens after `bos`, including the final `eos` if reached.
    pub tokens: Vec<u32>,
    /// Sum of the tokens' log-probabilities.
    pub log_prob: f32,
}

impl Hypothesis {
    /// `log_prob / len^alpha` (Wu et al. 2016 use ((5 + len)/6)^alpha; plain
    /// length normalisation keeps one knob): alpha 0 ranks by total
    /// log-probability, which favours short outputs; 1 ranks by per-token.
    pub fn score(&self, alpha: f32) -> f32 {
        self.log_prob / (self.tokens.len().max(1) as f32).powf(alpha)
    }
}

/// The most likely token at every step, from a one-row `state`, until `eos`
/// or `max_len` tokens.
pub fn greedy_search<D: StepDecoder>(d: &D, state: D::State, bos: u32, eos: u32, max_len: usize) -> Hypothesis {
    let mut h = Hypothesis { tokens: Vec::new(), log_prob: 0.0 };
    let (mut state, mut last) = (state, bos);
    while h.tokens.len() < max_len {
        let (lp, next) = d.step(&[last], &state);
        let t = crate::sampling::argmax(&lp);
        h.log_prob += lp[t as usize];
        h.tokens.push(t);
        if t == eos {
            break;
        }
        (state, last) = (next, t);
    }
    h
}

/// Beam search with `beam` hypotheses from a one-row `state`: at each step
/// every live hypothesis is extended by every token, the `beam` best
/// extensions survive, and those ending in `eos` move to the finished list.
/// Stops when `beam` hypotheses have finished or after `max_len` tokens;
/// returns finished (then unfinished) hypotheses, best first by
/// [`Hypothesis::score`] with `length_alpha`.
///
/// # Panics
/// When `beam` is 0.
pub fn beam_search<D: StepDecoder>(
    d: &D,
    state: D::State,
    bos: u32,
    eos: u32,
    beam: usize,
    max_len: usize,
    length_alpha: f32,
) -> Vec<Hypothesis> {
    assert!(beam > 0, "beam_search: beam width must be at least 1");
    let mut live = vec![Hypothesis { tokens: Vec::new(), log_prob: 0.0 }];
    let mut state = state;
    let mut finished: Vec<Hypothesis> = Vec::new();
    for _ in 0..max_len {
        let last: Vec<u32> = live.iter().map(|h| h.tokens.last().copied().unwrap_or(bos)).collect();
        let (lp, next) = d.step(&last, &state);
        let vocab = lp.len() / live.len();
        // Every (hypothesis, token) extension, best first; ties by index so results are deterministic.
        let mut cand: Vec<(f32, usize, usize)> = Vec::with_capacity(lp.len());
        for (r, h) in live.iter().enumerate() {
            for t in 0..vocab {
                cand.push((h.log_prob + lp[r * vocab + t], r, t));
            }
        }
        cand.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        let (mut keep_rows, mut kept) = (Vec::new(), Vec::new());
        for (score, r, t) in cand {
            if kept.len() == beam {
                break;
            }
            let mut tokens = live[r].tokens.clone();
            tokens.push(t as u32);
            let h = Hypothesis { tokens, log_prob: score };
            if t as u32 == eos {
                finished.push(h);
            } else {
                keep_rows.push(r as u32);
                kept.push(h);
            }
        }
        if finished.len() >= beam || kept.is_empty() {
            live.clear();
            break;
        }
        state = d.select(&next, &keep_rows);
        live = kept;
    }
    let rank = |v: &mut Vec<Hypothesis>| v.sort_by(|a, b| b.score(length_alpha).total_cmp(&a.score(length_alpha)));
    rank(&mut finished);
    rank(&mut live);
    finished.extend(live);
    finished
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bigram "model" over tokens 0 (eos), 1, 2, 3 given by a fixed table of
    /// probabilities; its state is just the number of live rows.
    struct Table(Vec<[f32; 4]>);

    impl StepDecoder for Table {
        type State = usize;
        fn step(&self, tokens: &[u32], _: &usize) -> (Vec<f32>, usize) {
            (tokens.iter().flat_map(|&t| self.0[t as usize].map(f32::ln)).collect(), tokens.len())
        }
        fn select(&self, _: &usize, rows: &[u32]) -> usize {
            rows.len()
        }
    }

    /// From bos (3): greedy takes 1 (0.5) then must pay 1 → eos at 0.3;
    /// the path 2 (0.4) → eos (0.9) is better overall: 0.36 vs 0.15.
    fn table() -> Table {
        Table(vec![
            [1.0, 0.0, 0.0, 0.0], // after eos (unused)
            [0.3, 0.35, 0.35, 0.0],
            [0.9, 0.05, 0.05, 0.0],
            [0.1, 0.5, 0.4, 0.0], // bos
        ])
    }

    #[test]
    fn greedy_takes_the_locally_best_token() {
        let h = greedy_search(&table(), 1, 3, 0, 10);
        assert_eq!(h.tokens[0], 1);
        assert!(h.tokens.len() > 2, "greedy should wander: {h:?}");
    }

    #[test]
    fn beam_search_finds_the_better_sequence() {
        let hyps = beam_search(&table(), 1, 3, 0, 3, 10, 0.0);
        assert_eq!(hyps[0].tokens, vec![2, 0]);
        assert!((hyps[0].log_prob - (0.4f32 * 0.9).ln()).abs() < 1e-6);
        // Results are sorted best first.
        for w in hyps.windows(2) {
            assert!(w[0].score(0.0) >= w[1].score(0.0));
        }
    }

    #[test]
    fn beam_of_one_is_greedy() {
        let g = greedy_search(&table(), 1, 3, 0, 6);
        let b = beam_search(&table(), 1, 3, 0, 1, 6, 0.0);
        assert_eq!(b[0].tokens, g.tokens);
        assert!((b[0].log_prob - g.log_prob).abs() < 1e-6);
    }
}
