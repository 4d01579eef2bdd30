//! Padding and pixel-shuffle layers: thin wrappers over `Tensor::pad`,
//! `Tensor::pixel_shuffle` and `Tensor::pixel_unshuffle`; no parameters.

use wgrad_autograd::{PadMode, Tensor};

use crate::Module;

/// Padding of an image's sides as PyTorch's 2-d padding layers take it:
/// (left, right, top, bottom).
pub type Padding2d = (usize, usize, usize, usize);

/// `padding` as the pad list of `Tensor::pad` (last dim first).
fn pad_list((left, right, top, bottom): Padding2d) -> [usize; 4] {
    [left, right, top, bottom]
}

/// Pads the last two dims with zeros (`nn.ZeroPad2d`).
///
/// ```
/// # use wgrad_nn::{Module, ZeroPad2d};
/// # use wgrad_autograd::{Device, Tensor};
/// // nn.ZeroPad2d((1, 2, 0, 3)): 1 column left, 2 right, 3 rows below.
/// let pad = ZeroPad2d::sides((1, 2, 0, 3));
/// let x = Tensor::ones(&[1, 2, 4, 5], &Device::cpu());
/// assert_eq!(pad.forward(&x).shape(), [1, 2, 7, 8]);
/// assert_eq!(pad.describe(), "ZeroPad2d((1, 2, 0, 3))");
/// ```
#[derive(Clone, Copy, Debug, Module)]
pub struct ZeroPad2d {
    /// (left, right, top, bottom).
    pub padding: Padding2d,
}

impl ZeroPad2d {
    /// `p` on all four sides (`nn.ZeroPad2d(p)`).
    pub fn new(p: usize) -> Self {
        ZeroPad2d { padding: (p, p, p, p) }
    }

    /// (left, right, top, bottom) (`nn.ZeroPad2d((l, r, t, b))`).
    pub fn sides(padding: Padding2d) -> Self {
        ZeroPad2d { padding }
    }
}

impl Module for ZeroPad2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.pad(&pad_list(self.padding), PadMode::Constant(0.0))
    }
    fn describe(&self) -> String {
        format!("ZeroPad2d({:?})", self.padding)
    }
}

/// Pads the last two dims with a constant (`nn.ConstantPad2d`).
#[derive(Clone, Copy, Debug, Module)]
pub struct ConstantPad2d {
    /// (left, right, top, bottom).
    pub padding: Padding2d,
    /// The fill value.
    pub value: f32,
}

impl ConstantPad2d {
    /// `p` on all four sides (`nn.ConstantPad2d(p, value)`).
    pub fn new(p: usize, value: f32) -> Self {
        ConstantPad2d { padding: (p, p, p, p), value }
    }

    /// (left, right, top, bottom) (`nn.ConstantPad2d((l, r, t, b), value)`).
    pub fn sides(padding: Padding2d, value: f32) -> Self {
        ConstantPad2d { padding, value }
    }
}

impl Module for ConstantPad2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.pad(&pad_list(self.padding), PadMode::Constant(self.value))
    }
    fn describe(&self) -> String {
        format!("ConstantPad2d(padding={:?}, value={:?})", self.padding, self.value)
    }
}

/// Pads the last two dims with their reflection about the edge
/// (`nn.ReflectionPad2d`); each pad must be smaller than its dim. Takes
/// any input of at least 2 dims (PyTorch: `[C, H, W]` or `[N, C, H, W]`).
#[derive(Clone, Copy, Debug, Module)]
pub struct ReflectionPad2d {
    /// (left, right, top, bottom).
    pub padding: Padding2d,
}

impl ReflectionPad2d {
    /// `p` on all four sides (`nn.ReflectionPad2d(p)`).
    pub fn new(p: usize) -> Self {
        ReflectionPad2d { padding: (p, p, p, p) }
    }

    /// (left, right, top, bottom) (`nn.ReflectionPad2d((l, r, t, b))`).
    pub fn sides(padding: Padding2d) -> Self {
        ReflectionPad2d { padding }
    }
}

impl Module for ReflectionPad2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.pad(&pad_list(self.padding), PadMode::Reflect)
    }
    fn describe(&self) -> String {
        format!("ReflectionPad2d({:?})", self.padding)
    }
}

/// Pads the last two dims by repeating their edge elements
/// (`nn.ReplicationPad2d`). Takes any input of at least 2 dims (PyTorch:
/// `[C, H, W]` or `[N, C, H, W]`).
#[derive(Clone, Copy, Debug, Module)]
pub struct ReplicationPad2d {
    /// (left, right, top, bottom).
    pub padding: Padding2d,
}

impl ReplicationPad2d {
    /// `p` on all four sides (`nn.ReplicationPad2d(p)`).
    pub fn new(p: usize) -> Self {
        ReplicationPad2d { padding: (p, p, p, p) }
    }

    /// (left, right, top, bottom) (`nn.ReplicationPad2d((l, r, t, b))`).
    pub fn sides(padding: Padding2d) -> Self {
        ReplicationPad2d { padding }
    }
}

impl Module for ReplicationPad2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.pad(&pad_list(self.padding), PadMode::Replicate)
    }
    fn describe(&self) -> String {
        format!("ReplicationPad2d({:?})", self.padding)
    }
}

/// `[*, C·r², H, W]` to `[*, C, H·r, W·r]` (`nn.PixelShuffle(r)`), the
/// upsampling step of sub-pixel convolution (ESPCN).
///
/// ```
/// # use wgrad_nn::{Module, PixelShuffle, PixelUnshuffle};
/// # use wgrad_autograd::{Device, Tensor};
/// let x = Tensor::zeros(&[1, 12, 5, 7], &Device::cpu());
/// let y = PixelShuffle(2).forward(&x);
/// assert_eq!(y.shape(), [1, 3, 10, 14]);
/// assert_eq!(PixelUnshuffle(2).forward(&y).shape(), [1, 12, 5, 7]);
/// ```
#[derive(Clone, Copy, Debug, Module)]
pub struct PixelShuffle(pub usize);

impl Module for PixelShuffle {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.pixel_shuffle(self.0)
    }
    fn describe(&self) -> String {
        format!("PixelShuffle(upscale_factor={})", self.0)
    }
}

/// `[*, C, H·r, W·r]` to `[*, C·r², H, W]` (`nn.PixelUnshuffle(r)`), the
/// inverse of [`PixelShuffle`].
#[derive(Clone, Copy, Debug, Module)]
pub struct PixelUnshuffle(pub usize);

impl Module for PixelUnshuffle {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.pixel_unshuffle(self.0)
    }
    fn describe(&self) -> String {
        format!("PixelUnshuffle(downscale_factor={})", self.0)
    }
}
