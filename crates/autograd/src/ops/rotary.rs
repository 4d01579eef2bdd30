//! Rotary position embeddings (RoPE; Su et al., 2021), as LLaMA and
//! GPT-NeoX apply them to queries and keys: a composition of views,
//! elementwise ops and a concatenation, so gradients come from their rules.

use crate::trace::TraceOp;
use crate::Tensor;

impl Tensor {
    /// Rotates feature pairs `(i, i + d/2)` of the last dim `d` by the
    /// angles in `cos`/`sin` (`[seq, d]`, broadcast over the leading dims
    /// of `self`, whose second-last dim is `seq`):
    /// `x·cos + rotate_half(x)·sin` with `rotate_half(x) = [-x₂, x₁]`, the
    /// layout of Hugging Face's `apply_rotary_pos_emb`. The tables come
    /// from [`rotary_tables`](Tensor::rotary_tables).
    ///
    /// # Panics
    /// When the last dim is odd or the tables do not match `[seq, d]`.
    pub fn apply_rotary(&self, cos: &Tensor, sin: &Tensor) -> Tensor {
        const OP: &str = "apply_rotary";
        let scope = crate::trace::scope();
        let shape = self.shape();
        assert!(shape.len() >= 2, "{OP}: input must be [.., seq, dim], got {shape:?}");
        let (seq, d) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        assert!(d.is_multiple_of(2), "{OP}: the feature dim {d} must be even");
        for t in [cos, sin] {
            assert_eq!(t.shape(), [seq, d], "{OP}: tables must be [seq, dim] = [{seq}, {d}]");
        }
        let half = d / 2;
        let (x1, x2) = (self.narrow(-1, 0, half), self.narrow(-1, half, half));
        let rotated = Tensor::cat(&[&x2.neg(), &x1], -1);
        let y = &(self * cos) + &(&rotated * sin);
        scope.output(|| TraceOp::Rotary, &[self, cos, sin], y)
    }

    /// The `(cos, sin)` tables of [`apply_rotary`](Tensor::apply_rotary)
    /// for positions `offset..offset + seq` and feature dim `d` (even):
    /// angle `p·base^(-2j/d)` for feature `j` and `j + d/2`. `base` is
    /// 10,000 in the paper and LLaMA. Computed in f64 on the host.
    pub fn rotary_tables(seq: usize, d: usize, offset: usize, base: f64, device: &crate::Device) -> (Tensor, Tensor) {
        let scope = crate::trace::scope();
        assert!(d.is_multiple_of(2), "rotary_tables: the feature dim {d} must be even");
        let half = d / 2;
        let angle = |p: usize, i: usize| (offset + p) as f64 * base.powf(-2.0 * (i % half) as f64 / d as f64);
        let table = |f: fn(f64) -> f64| -> Vec<f32> {
            (0..seq).flat_map(|p| (0..d).map(move |i| f(angle(p, i)) as f32)).collect()
        };
        let (cos, sin) = (
            Tensor::from_vec(&table(f64::cos), &[seq, d], device),
            Tensor::from_vec(&table(f64::sin), &[seq, d], device),
        );
        scope.record(|| TraceOp::Constant { fill: None }, &[], &[&cos]);
        scope.record(|| TraceOp::Constant { fill: None }, &[], &[&sin]);
        (cos, sin)
    }
}
