//! Activation modules: thin wrappers over the Tensor methods.

use wgrad_autograd::{Tensor, UnaryOp};

use crate::construction::{setters, Init};

use crate::Module;

/// Defines a parameterless activation module applying one op of the unary table.
macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, $op:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, Module)]
        pub struct $name;

        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Tensor {
                x.unary(UnaryOp::$op)
            }
            fn describe(&self) -> String {
                concat!(stringify!($name), "()").to_string()
            }
        }
    };
}

activation!(/// max(x, 0)
    ReLU, Relu);
activation!(/// Scaled ELU with the self-normalising constants.
    SELU, Selu);
activation!(/// x·sigmoid(x), also known as swish.
    SiLU, Silu);
activation!(/// x·tanh(softplus(x)).
    Mish, Mish);
activation!(/// Logistic sigmoid.
    Sigmoid, Sigmoid);
activation!(/// Hyperbolic tangent.
    Tanh, Tanh);

/// Swish is SiLU.
pub type Swish = SiLU;

/// x if x > 0 else slope·x (PyTorch default slope 0.01).
#[derive(Clone, Copy, Debug, Module)]
pub struct LeakyReLU(pub f32);

impl Default for LeakyReLU {
    fn default() -> Self {
        LeakyReLU(0.01)
    }
}

impl Module for LeakyReLU {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.unary(UnaryOp::LeakyRelu(self.0))
    }
    fn describe(&self) -> String {
        format!("LeakyReLU(negative_slope={})", self.0)
    }
}

/// x if x > 0 else alpha·(eˣ − 1) (PyTorch default alpha 1).
#[derive(Clone, Copy, Debug, Module)]
pub struct ELU(pub f32);

impl Default for ELU {
    fn default() -> Self {
        ELU(1.0)
    }
}

impl Module for ELU {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.unary(UnaryOp::Elu(self.0))
    }
    fn describe(&self) -> String {
        format!("ELU(alpha={})", self.0)
    }
}

/// GELU, exact (erf) by default or the tanh approximation.
#[derive(Clone, Copy, Debug, Default, Module)]
pub struct GELU {
    /// Use the tanh approximation (`approximate='tanh'`).
    pub tanh: bool,
}

impl GELU {
    fn op(&self) -> UnaryOp {
        if self.tanh {
            UnaryOp::GeluTanh
        } else {
            UnaryOp::Gelu
        }
    }
}

impl Module for GELU {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.unary(self.op())
    }
    fn describe(&self) -> String {
        format!("GELU(approximate='{}')", if self.tanh { "tanh" } else { "none" })
    }
}

/// ln(1 + e^(beta·x))/beta, linear above `threshold` (PyTorch defaults 1, 20).
#[derive(Clone, Copy, Debug, Module)]
pub struct Softplus {
    /// Sharpness.
    pub beta: f32,
    /// Above beta·x > threshold the output is x.
    pub threshold: f32,
}

impl Default for Softplus {
    fn default() -> Self {
        Softplus { beta: 1.0, threshold: 20.0 }
    }
}

impl Module for Softplus {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.unary(UnaryOp::Softplus { beta: self.beta, threshold: self.threshold })
    }
    fn describe(&self) -> String {
        format!("Softplus(beta={}, threshold={})", self.beta, self.threshold)
    }
}

/// Leaky ReLU with a learned slope: one per channel (dim 1) or a single one.
#[derive(Module)]
pub struct PReLU {
    /// `[num_parameters]`, initialised to 0.25 like PyTorch.
    #[param]
    pub weight: Tensor,
}

impl PReLU {
    /// `nn.PReLU(num_parameters)`: 1 or the channel count, slopes 0.25.
    pub fn builder(num_parameters: usize) -> PReLUBuilder {
        PReLUBuilder { num_parameters, init: 0.25 }
    }
}

/// Options of a [`PReLU`]; [`build`](Self::build) makes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PReLUBuilder {
    num_parameters: usize,
    init: f32,
}

impl PReLUBuilder {
    setters! {
        /// The slopes' initial value (default 0.25).
        init: f32,
    }

    /// The layer.
    pub fn build(self, init: &mut Init) -> PReLU {
        PReLU { weight: Tensor::full(&[self.num_parameters], self.init, init.device()).requires_grad_() }
    }
}

impl Module for PReLU {
    fn forward(&self, x: &Tensor) -> Tensor {
        // x where x > 0, else a·x, with a broadcast along the channel dim:
        // `where` masks each side's gradient as PyTorch's rule does (x's is
        // exactly g or a·g; a's sums x·g where x <= 0), even for an
        // infinite g, which relu(x) + a·(x − relu(x)) turned into NaN.
        let n = self.weight.numel();
        let a = if n == 1 || x.dims() < 2 {
            self.weight.clone()
        } else {
            let mut shape = vec![1; x.dims()];
            shape[1] = n;
            self.weight.reshape(&shape)
        };
        let positive = x.gt(&Tensor::zeros(&[], &x.device()));
        Tensor::where_cond(&positive, x, &(&a * x))
    }
    fn describe(&self) -> String {
        format!("PReLU(num_parameters={})", self.weight.numel())
    }
}

/// Softmax along `dim` (`nn.Softmax(dim)`).
#[derive(Clone, Copy, Debug, Module)]
pub struct Softmax(pub isize);

impl Module for Softmax {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.softmax(self.0)
    }
    fn describe(&self) -> String {
        format!("Softmax(dim={})", self.0)
    }
}

/// Log-softmax along `dim` (`nn.LogSoftmax(dim)`).
#[derive(Clone, Copy, Debug, Module)]
pub struct LogSoftmax(pub isize);

impl Module for LogSoftmax {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.log_softmax(self.0)
    }
    fn describe(&self) -> String {
        format!("LogSoftmax(dim={})", self.0)
    }
}
