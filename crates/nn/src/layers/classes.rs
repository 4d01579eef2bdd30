//! PyTorch's distinct classes as distinct types over one shared
//! implementation: `BatchNorm1d` / `BatchNorm2d` over [`BatchNorm`],
//! `RNN` / `LSTM` / `GRU` over [`Recurrent`], `RNNCell` / `LSTMCell` /
//! `GRUCell` over [`RecurrentCell`]. Each wraps its implementation, derefs
//! to it (so every method of the shared type is there), and delegates
//! [`Module`] and [`ModuleFields`] to it, so names, children and random
//! streams are exactly the shared type's. A `GRU` can then only be built as
//! a GRU, and a function that takes an `&LSTM` gets one.

use std::sync::Mutex;

use wgrad_autograd::{Device, Generator, RecurrentKind, Tensor};

use crate::layers::cell::RecurrentCell;
use crate::layers::norm::BatchNorm;
use crate::layers::recurrent::{Recurrent, RecurrentConfig};
use crate::{Module, ModuleFields};

/// A distinct type `$name` over the shared implementation `$inner`.
macro_rules! class_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        pub struct $name($inner);

        impl std::ops::Deref for $name {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.0
            }
        }

        impl std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $inner {
                &mut self.0
            }
        }

        impl From<$name> for $inner {
            fn from(layer: $name) -> $inner {
                layer.0
            }
        }

        impl ModuleFields for $name {
            fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
                self.0.visit_parameters(prefix, f)
            }
            fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
                self.0.visit_buffers(prefix, f)
            }
            fn set_training(&mut self, training: bool) {
                self.0.set_training(training)
            }
            fn children(&self) -> Vec<(String, &dyn Module)> {
                self.0.children()
            }
        }

        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Tensor {
                self.0.forward(x)
            }
            fn describe(&self) -> String {
                self.0.describe()
            }
            fn random_stream(&self) -> Option<&Mutex<Generator>> {
                self.0.random_stream()
            }
        }
    };
}

class_type!(
    /// `nn.BatchNorm1d`: input `[N, C]` or `[N, C, L]`.
    BatchNorm1d(BatchNorm)
);
class_type!(
    /// `nn.BatchNorm2d`: input `[N, C, H, W]`.
    BatchNorm2d(BatchNorm)
);
class_type!(
    /// `nn.RNN`: an Elman RNN (tanh cells, or ReLU ones from [`RNN::relu`]).
    RNN(Recurrent)
);
class_type!(
    /// `nn.LSTM` (gates i, f, g, o).
    LSTM(Recurrent)
);
class_type!(
    /// `nn.GRU` (gates r, z, n).
    GRU(Recurrent)
);
class_type!(
    /// `nn.RNNCell` (tanh).
    RNNCell(RecurrentCell)
);
class_type!(
    /// `nn.LSTMCell`.
    LSTMCell(RecurrentCell)
);
class_type!(
    /// `nn.GRUCell`.
    GRUCell(RecurrentCell)
);

impl BatchNorm1d {
    /// `BatchNorm1d(channels)` with PyTorch's defaults (affine, momentum
    /// 0.1, eps 1e-5).
    pub fn new(channels: usize, device: &Device) -> Self {
        BatchNorm1d(BatchNorm::new_1d(channels, device))
    }
}

impl BatchNorm2d {
    /// `BatchNorm2d(channels)` with PyTorch's defaults (affine, momentum
    /// 0.1, eps 1e-5).
    pub fn new(channels: usize, device: &Device) -> Self {
        BatchNorm2d(BatchNorm::new_2d(channels, device))
    }
}

impl RNN {
    /// `nn.RNN` with tanh cells (PyTorch's default `nonlinearity`).
    pub fn new(config: RecurrentConfig, gen: &mut Generator, device: &Device) -> Self {
        RNN(Recurrent::rnn(config, false, gen, device))
    }

    /// `nn.RNN(nonlinearity='relu')`.
    pub fn relu(config: RecurrentConfig, gen: &mut Generator, device: &Device) -> Self {
        RNN(Recurrent::rnn(config, true, gen, device))
    }
}

impl LSTM {
    /// `nn.LSTM` with `config`'s sizes and options.
    pub fn new(config: RecurrentConfig, gen: &mut Generator, device: &Device) -> Self {
        LSTM(Recurrent::lstm(config, gen, device))
    }
}

impl GRU {
    /// `nn.GRU` with `config`'s sizes and options.
    pub fn new(config: RecurrentConfig, gen: &mut Generator, device: &Device) -> Self {
        GRU(Recurrent::gru(config, gen, device))
    }
}

impl RNNCell {
    /// `nn.RNNCell(input_size, hidden_size)` with biases (tanh).
    pub fn new(input_size: usize, hidden_size: usize, gen: &mut Generator, device: &Device) -> Self {
        RNNCell(RecurrentCell::new(RecurrentKind::RnnTanh, input_size, hidden_size, true, gen, device))
    }
}

impl LSTMCell {
    /// `nn.LSTMCell(input_size, hidden_size)` with biases.
    pub fn new(input_size: usize, hidden_size: usize, gen: &mut Generator, device: &Device) -> Self {
        LSTMCell(RecurrentCell::new(RecurrentKind::Lstm, input_size, hidden_size, true, gen, device))
    }
}

impl GRUCell {
    /// `nn.GRUCell(input_size, hidden_size)` with biases.
    pub fn new(input_size: usize, hidden_size: usize, gen: &mut Generator, device: &Device) -> Self {
        GRUCell(RecurrentCell::new(RecurrentKind::Gru, input_size, hidden_size, true, gen, device))
    }
}
