//! Multi-layer perceptrons.

use wgrad_nn::{Flatten, Init, Linear, ReLU, Sequential};

/// Flatten, then `Linear → ReLU` for each hidden width, then a final Linear:
/// `mlp(&[784, 256, 10], ..)` is a one-hidden-layer MNIST classifier.
pub fn mlp(widths: &[usize], init: &mut Init) -> Sequential {
    assert!(widths.len() >= 2, "mlp: needs at least input and output widths, got {widths:?}");
    let mut m = Sequential::new().add(Flatten::default());
    for (i, w) in widths.windows(2).enumerate() {
        m = m.add(Linear::builder(w[0], w[1]).build(init));
        if i + 2 < widths.len() {
            m = m.add(ReLU);
        }
    }
    m
}
