//! Parameter initialisation, PyTorch's `torch.nn.init`: every function fills
//! an existing tensor in place from a seeded [`Generator`], so one seed
//! reproduces a whole model.

use wgrad_autograd::{no_grad, Generator, Tensor};

/// Which fan Kaiming initialisation preserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanMode {
    /// Preserve the variance of activations in the forward pass (default).
    FanIn,
    /// Preserve the variance of gradients in the backward pass.
    FanOut,
}

/// The nonlinearity that follows a layer, for [`calculate_gain`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nonlinearity {
    /// Identity, convolutions, sigmoid: gain 1.
    Linear,
    /// Sigmoid: gain 1.
    Sigmoid,
    /// tanh: gain 5/3.
    Tanh,
    /// ReLU: gain √2.
    Relu,
    /// Leaky ReLU with this negative slope: gain √(2 / (1 + slope²)).
    LeakyRelu(f32),
    /// SELU: gain 3/4.
    Selu,
}

/// The recommended gain for a nonlinearity (`torch.nn.init.calculate_gain`).
pub fn calculate_gain(nl: Nonlinearity) -> f32 {
    match nl {
        Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
        Nonlinearity::Tanh => 5.0 / 3.0,
        Nonlinearity::Relu => 2f32.sqrt(),
        Nonlinearity::LeakyRelu(s) => (2.0 / (1.0 + s * s)).sqrt(),
        Nonlinearity::Selu => 0.75,
    }
}

/// (fan_in, fan_out) of a weight shape: dim 1 and dim 0 times the receptive field.
///
/// # Panics
/// For tensors with fewer than 2 dims, as PyTorch.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    assert!(shape.len() >= 2, "init: fan in and fan out need at least 2 dims, got shape {shape:?}");
    let receptive: usize = shape[2..].iter().product();
    (shape[1] * receptive, shape[0] * receptive)
}

fn set(t: &Tensor, value: Tensor) {
    no_grad(|| t.assign(&value));
}

/// Uniform in `[lo, hi)`.
pub fn uniform_(t: &Tensor, lo: f32, hi: f32, gen: &mut Generator) {
    set(t, gen.uniform(&t.shape(), lo, hi, &t.device()));
}

/// Normal with `mean` and `std`.
pub fn normal_(t: &Tensor, mean: f32, std: f32, gen: &mut Generator) {
    set(t, gen.normal(&t.shape(), mean, std, &t.device()));
}

/// Every element `value`.
pub fn constant_(t: &Tensor, value: f32) {
    set(t, Tensor::full(&t.shape(), value, &t.device()));
}

/// Zeros.
pub fn zeros_(t: &Tensor) {
    constant_(t, 0.0)
}

/// Ones.
pub fn ones_(t: &Tensor) {
    constant_(t, 1.0)
}

/// Glorot uniform: bound `gain * sqrt(6 / (fan_in + fan_out))`.
pub fn xavier_uniform_(t: &Tensor, gain: f32, gen: &mut Generator) {
    let (fi, fo) = fans(&t.shape());
    let bound = gain * (6.0 / (fi + fo) as f32).sqrt();
    uniform_(t, -bound, bound, gen)
}

/// Glorot normal: std `gain * sqrt(2 / (fan_in + fan_out))`.
pub fn xavier_normal_(t: &Tensor, gain: f32, gen: &mut Generator) {
    let (fi, fo) = fans(&t.shape());
    normal_(t, 0.0, gain * (2.0 / (fi + fo) as f32).sqrt(), gen)
}

fn kaiming_std(t: &Tensor, mode: FanMode, nl: Nonlinearity) -> f32 {
    let (fi, fo) = fans(&t.shape());
    let fan = if mode == FanMode::FanIn { fi } else { fo };
    calculate_gain(nl) / (fan as f32).sqrt()
}

/// He uniform: bound `sqrt(3) * gain / sqrt(fan)`.
pub fn kaiming_uniform_(t: &Tensor, mode: FanMode, nl: Nonlinearity, gen: &mut Generator) {
    let bound = 3f32.sqrt() * kaiming_std(t, mode, nl);
    uniform_(t, -bound, bound, gen)
}

/// He normal: std `gain / sqrt(fan)`.
pub fn kaiming_normal_(t: &Tensor, mode: FanMode, nl: Nonlinearity, gen: &mut Generator) {
    normal_(t, 0.0, kaiming_std(t, mode, nl), gen)
}

/// A (semi-)orthogonal matrix times `gain`, from the QR decomposition of a
/// normal matrix with the sign fix of `torch.nn.init.orthogonal_`. Dims after
/// the first are flattened. Computed on the host (Gram–Schmidt in f64).
pub fn orthogonal_(t: &Tensor, gain: f32, gen: &mut Generator) {
    let shape = t.shape();
    assert!(shape.len() >= 2, "orthogonal_: needs at least 2 dims, got shape {shape:?}");
    let rows = shape[0];
    let cols = t.numel() / rows;
    let flat = gen.normal(&[rows, cols], 0.0, 1.0, &t.device()).to_vec();
    // Work on the tall orientation: orthonormalise the columns of an m x n (m >= n) matrix.
    let (m, n) = if rows >= cols { (rows, cols) } else { (cols, rows) };
    let at = |i: usize, j: usize| if rows >= cols { flat[i * cols + j] } else { flat[j * cols + i] } as f64;
    let mut q = vec![vec![0f64; m]; n]; // q[j] = column j
    for j in 0..n {
        let mut v: Vec<f64> = (0..m).map(|i| at(i, j)).collect();
        // Modified Gram-Schmidt; r_jj's sign decides the column's sign (QR with positive-diagonal fix).
        for qk in q.iter().take(j) {
            let dot: f64 = qk.iter().zip(&v).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(qk).for_each(|(x, y)| *x -= dot * y);
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-30);
        q[j] = v.iter().map(|x| x / norm).collect();
    }
    let mut out = vec![0f32; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            let v = if rows >= cols { q[j][i] } else { q[i][j] };
            out[i * cols + j] = gain * v as f32;
        }
    }
    set(t, Tensor::from_vec(&out, &shape, &t.device()));
}

/// PyTorch's default for Linear and Conv weights: kaiming_uniform with
/// a = √5, i.e. bound 1/√fan_in.
pub fn default_weight_(t: &Tensor, gen: &mut Generator) {
    kaiming_uniform_(t, FanMode::FanIn, Nonlinearity::LeakyRelu(5f32.sqrt()), gen)
}

/// PyTorch's default for Linear and Conv biases: uniform ±1/√fan_in.
pub fn default_bias_(bias: &Tensor, fan_in: usize, gen: &mut Generator) {
    let bound = if fan_in > 0 { 1.0 / (fan_in as f32).sqrt() } else { 0.0 };
    uniform_(bias, -bound, bound, gen)
}
