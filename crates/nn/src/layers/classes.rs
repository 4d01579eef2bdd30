//! PyTorch's distinct classes as distinct types over one shared
//! implementation: `BatchNorm1d` / `BatchNorm2d` over [`BatchNorm`],
//! `RNN` / `LSTM` / `GRU` over [`Recurrent`], `RNNCell` / `LSTMCell` /
//! `GRUCell` over [`RecurrentCell`]. Each wraps its implementation, derefs
//! to it (so every method of the shared type is there), and delegates
//! [`Module`] and [`ModuleFields`] to it, so names, children and random
//! streams are exactly the shared type's. A `GRU` can then only be built as
//! a GRU, and a function that takes an `&LSTM` gets one.

use std::sync::Mutex;

use wgrad_autograd::{Generator, RecurrentKind, Tensor};

use crate::construction::{Built, Init};
use crate::layers::cell::{CellBuilder, CellOptions, RecurrentCell};
use crate::layers::norm::{BatchNorm, BatchNormBuilder, BatchNormOptions};
use crate::layers::recurrent::{Recurrent, RecurrentBuilder, RecurrentOptions};
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
    /// `nn.RNN`: an Elman RNN (tanh cells, or ReLU ones with [`RecurrentBuilder::relu`]).
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

/// `impl Built<O> for $class` making it from the shared implementation's
/// constructor `$make` (a closure of the options and the context).
macro_rules! built {
    ($($class:ident($options:ty) => $make:expr;)*) => {
        $(
            impl crate::construction::sealed::Sealed for $class {}
            impl Built<$options> for $class {
                fn built(options: $options, init: &mut Init) -> Self {
                    let make: fn($options, &mut Init) -> _ = $make;
                    $class(make(options, init))
                }
            }
        )*
    };
}

built! {
    BatchNorm1d(BatchNormOptions) => |o, init| BatchNorm::new(1, o, init.device());
    BatchNorm2d(BatchNormOptions) => |o, init| BatchNorm::new(2, o, init.device());
    RNN(RecurrentOptions) => Recurrent::new;
    LSTM(RecurrentOptions) => Recurrent::new;
    GRU(RecurrentOptions) => Recurrent::new;
    RNNCell(CellOptions) => RecurrentCell::new;
    LSTMCell(CellOptions) => RecurrentCell::new;
    GRUCell(CellOptions) => RecurrentCell::new;
}

impl BatchNorm1d {
    /// `nn.BatchNorm1d(num_features)`: eps 1e-5, momentum 0.1, affine.
    pub fn builder(num_features: usize) -> BatchNormBuilder<BatchNorm1d> {
        BatchNormBuilder::new(num_features)
    }
}

impl BatchNorm2d {
    /// `nn.BatchNorm2d(num_features)`: eps 1e-5, momentum 0.1, affine.
    pub fn builder(num_features: usize) -> BatchNormBuilder<BatchNorm2d> {
        BatchNormBuilder::new(num_features)
    }
}

impl RNN {
    /// `nn.RNN(input_size, hidden_size)`: tanh cells (ReLU ones with
    /// [`relu`](RecurrentBuilder::relu)), one layer, biases, time-major.
    pub fn builder(input_size: usize, hidden_size: usize) -> RecurrentBuilder<RNN> {
        RecurrentBuilder::new(RecurrentKind::RnnTanh, input_size, hidden_size)
    }
}

impl RecurrentBuilder<RNN> {
    /// ReLU cells instead of tanh (PyTorch's `nonlinearity='relu'`).
    pub fn relu(self, yes: bool) -> Self {
        self.kind(if yes { RecurrentKind::RnnRelu } else { RecurrentKind::RnnTanh })
    }
}

impl LSTM {
    /// `nn.LSTM(input_size, hidden_size)`: one layer, biases, time-major.
    pub fn builder(input_size: usize, hidden_size: usize) -> RecurrentBuilder<LSTM> {
        RecurrentBuilder::new(RecurrentKind::Lstm, input_size, hidden_size)
    }
}

impl GRU {
    /// `nn.GRU(input_size, hidden_size)`: one layer, biases, time-major.
    pub fn builder(input_size: usize, hidden_size: usize) -> RecurrentBuilder<GRU> {
        RecurrentBuilder::new(RecurrentKind::Gru, input_size, hidden_size)
    }
}

impl RNNCell {
    /// `nn.RNNCell(input_size, hidden_size)` (tanh, biases).
    pub fn builder(input_size: usize, hidden_size: usize) -> CellBuilder<RNNCell> {
        CellBuilder::new(RecurrentKind::RnnTanh, input_size, hidden_size)
    }
}

impl LSTMCell {
    /// `nn.LSTMCell(input_size, hidden_size)` (biases).
    pub fn builder(input_size: usize, hidden_size: usize) -> CellBuilder<LSTMCell> {
        CellBuilder::new(RecurrentKind::Lstm, input_size, hidden_size)
    }
}

impl GRUCell {
    /// `nn.GRUCell(input_size, hidden_size)` (biases).
    pub fn builder(input_size: usize, hidden_size: usize) -> CellBuilder<GRUCell> {
        CellBuilder::new(RecurrentKind::Gru, input_size, hidden_size)
    }
}
