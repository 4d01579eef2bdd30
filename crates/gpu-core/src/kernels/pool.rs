//! Pooling's shared meaning: the marker a max-pool window stores where it
//! has no argmax. The launches and twins are `ops/pool.rs`.

use super::io::{Binding, Elem, IoLibrary, Storage};
use super::variants::{FamilyShaders, Variant};

/// The argmax of a window with no in-bounds element (cannot happen within
/// PyTorch's padding limit, but kernel and twin agree on it anyway).
pub(crate) const NONE: u32 = u32::MAX;

/// The shaders this family derives from its files by swapping includes,
/// and the inputs its texture variants read through textures (`shaders.rs`
/// collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[
        Variant::new("pool_tex", "pool", &[("pool_io_f32", "pool_io_tex")]),
        Variant::new("pool_f16", "pool", &[("pool_io_f32", "pool_io_f16")]),
        Variant::new("pool_f16_native", "pool", &[("pool_io_f32", "pool_io_f16_native")]).f16(),
        // The backward passes with a ReLU's gradient in their store (the
        // fuser's tails: `max_pool(relu(x))`, a global average pool after
        // a ResNet block's ReLU): y read at binding 3, the outputs at 4.
        Variant::new(
            "pool_relu_grad",
            "pool",
            &[("pool_io_f32", "pool_grad_io_f32"), ("pool_tail", "pool_tail_relu_grad")],
        ),
        Variant::new(
            "pool_relu_grad_tex",
            "pool",
            &[("pool_io_f32", "pool_grad_io_tex"), ("pool_tail", "pool_tail_relu_grad")],
        ),
    ],
    texture_inputs: &[
        ("pool_tex", "max_backward", &[0, 1]),
        ("pool_tex", "*", &[0]),
        ("pool_relu_grad_tex", "max_backward", &[0, 1, 2]),
        ("pool_relu_grad_tex", "avg_backward", &[0, 2]),
        ("pool_relu_grad_tex", "*", &[0]),
    ],
    io: &[
        IoLibrary {
            stem: "pool_io",
            storages: Storage::ALL,
            bindings: &[
                // The input (forward) or output gradient (backward).
                Binding::load("src", 1),
                // Max pooling backward's argmax (u32 per output element; copied
                // byte for byte into the texture variant's r32float texture,
                // whose loads move the bits unchanged, NONE included).
                Binding::load("arg", 2).of(Elem::Word),
                // The pooled output or average pooling's input gradient.
                Binding::store("out", 2),
                // Max pooling's input gradient.
                Binding::store("dx", 3),
            ],
        },
        IoLibrary {
            stem: "pool_grad_io",
            storages: Storage::F32_TEX,
            bindings: &[
                Binding::load("src", 1),
                Binding::load("arg", 2).of(Elem::Word),
                // The ReLU's output whose derivative the stored gradient takes.
                Binding::load("y", 3),
                Binding::store("out", 4),
                Binding::store("dx", 4),
            ],
        },
    ],
};
