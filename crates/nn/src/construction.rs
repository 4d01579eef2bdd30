//! How layers and models are constructed: `X::builder(sizes)`, named
//! options with PyTorch's defaults, then `.build(&mut init)`, where [`Init`]
//! carries the device and the seeded generator every parameter is drawn
//! from. A model's constructor takes the same `&mut Init` and hands it to its
//! layers in order, so one seed reproduces the whole model and nothing
//! threads a generator and a device through every call.
//!
//! ```
//! use wgrad_nn::{Conv2d, Init, Linear, ModuleExt};
//! use wgrad_autograd::Device;
//!
//! let mut init = Init::new(&Device::cpu(), 0);
//! let conv = Conv2d::builder(3, 16, 3).stride(2).padding(1).bias(false).build(&mut init);
//! let fc = Linear::builder(16, 10).build(&mut init);
//! assert!(conv.bias.is_none() && fc.bias.is_some());
//! assert_eq!(conv.num_parameters() + fc.num_parameters(), 16 * 3 * 9 + 16 * 10 + 10);
//! ```

use wgrad_autograd::{Device, Generator};

/// The construction context: the device parameters live on and the seeded
/// generator they are drawn from. Layers draw in construction order, exactly
/// as PyTorch's constructors do, so the same seed gives the same parameters
/// on every backend. Not `Clone`: two copies would draw the same numbers
/// for different layers; pass `&mut init` along instead.
#[derive(Debug)]
pub struct Init {
    device: Device,
    generator: Generator,
}

impl Init {
    /// A context on `device` whose generator starts from `seed`.
    pub fn new(device: &Device, seed: u64) -> Self {
        Init::from_generator(device, Generator::new(seed))
    }

    /// A context continuing an existing stream (e.g. a run's model seed).
    pub fn from_generator(device: &Device, generator: Generator) -> Self {
        Init { device: device.clone(), generator }
    }

    /// The device every parameter is created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The generator, for a custom module's own parameters
    /// (`init::normal_(&w, 0.0, 0.02, init.generator())`).
    pub fn generator(&mut self) -> &mut Generator {
        &mut self.generator
    }

    /// The stream where construction left it (to continue drawing from it).
    pub fn into_generator(self) -> Generator {
        self.generator
    }
}

/// Chainable setters for a builder's plain option fields: each `name: Type`
/// becomes `pub fn name(self, name: Type) -> Self`, with the doc comment
/// written before it.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $name: $ty) -> Self {
                self.$name = $name;
                self
            }
        )*
    };
}
pub(crate) use setters;

/// Implemented by the distinct layer classes that share one builder and one
/// implementation (`BatchNorm1d`/`BatchNorm2d`, `RNN`/`LSTM`/`GRU`, the
/// cells, the Transformer layers): how the class is made from the shared
/// options `O`. Sealed: only this crate's classes implement it.
pub trait Built<O>: sealed::Sealed + Sized {
    /// The layer from its options, drawing parameters from `init`.
    fn built(options: O, init: &mut Init) -> Self;
}

pub(crate) mod sealed {
    /// Keeps [`Built`](super::Built) closed to this crate's classes.
    pub trait Sealed {}
}

/// `Clone` and `Copy` for a builder generic over the class it makes (the
/// derives would ask the class itself to be `Copy`).
macro_rules! copy_builder {
    ($name:ident) => {
        impl<L> Clone for $name<L> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<L> Copy for $name<L> {}
    };
}
pub(crate) use copy_builder;
