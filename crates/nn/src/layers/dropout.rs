//! Inverted dropout.

use std::sync::Mutex;

use wgrad_autograd::{Generator, Tensor};

use crate::construction::Init;
use crate::Module;

/// Zeroes each element with probability `p` in training and scales the rest
/// by 1/(1−p); the identity in evaluation. The mask comes from the layer's
/// own counter-based generator, so a seed reproduces it on GPU and CPU.
#[derive(Module)]
pub struct Dropout {
    /// Drop probability.
    pub p: f32,
    #[training]
    training: bool,
    gen: Mutex<Generator>,
}

impl Dropout {
    /// `nn.Dropout(p)`; its mask stream is forked from the context's
    /// generator at [`build`](DropoutBuilder::build).
    pub fn builder(p: f32) -> DropoutBuilder {
        DropoutBuilder { p }
    }

    /// The layer's random stream (its whole state), e.g. to store in a
    /// training checkpoint's `rng` map for an exact resume.
    pub fn generator(&self) -> Generator {
        *self.gen.lock().unwrap()
    }

    /// Restores the layer's random stream.
    pub fn set_generator(&self, gen: Generator) {
        *self.gen.lock().unwrap() = gen;
    }
}

/// Options of a [`Dropout`] layer (only `p`, given to
/// [`Dropout::builder`]); [`build`](Self::build) makes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutBuilder {
    p: f32,
}

impl DropoutBuilder {
    /// The layer, its stream forked from `init`'s generator.
    ///
    /// # Panics
    /// When `p` is outside [0, 1].
    pub fn build(self, init: &mut Init) -> Dropout {
        let p = self.p;
        assert!((0.0..=1.0).contains(&p), "Dropout: p must be in [0, 1], got {p}");
        Dropout { p, training: true, gen: Mutex::new(init.generator().fork()) }
    }
}

impl Dropout {
    /// Whether [`forward`](Module::forward) returns its input unchanged:
    /// in eval mode, or with `p = 0` (a residual block then adds its
    /// input in the producing product's store).
    pub fn is_identity(&self) -> bool {
        !self.training || self.p == 0.0
    }
}

impl Module for Dropout {
    fn random_stream(&self) -> Option<&Mutex<Generator>> {
        Some(&self.gen)
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.dropout(self.p, self.training, &mut self.gen.lock().unwrap())
    }
    fn describe(&self) -> String {
        format!("Dropout(p={})", self.p)
    }
}
