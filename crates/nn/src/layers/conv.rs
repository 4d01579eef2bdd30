//! Convolution layers (NCHW), PyTorch's weight layouts and default init.

use wgrad_autograd::{Conv2dOptions, ConvTranspose2dOptions, Tensor};

use crate::construction::{setters, Init};

use crate::init;
use crate::Module;

/// Weight and bias with PyTorch's default initialisation (kaiming_uniform a=√5,
/// bias ±1/√fan_in, fan_in from the weight's dims 1..).
/// `bias_len` is the output channels (a transposed convolution's weight
/// starts with its input channels).
fn params(shape: &[usize], bias_len: usize, bias: bool, init: &mut Init) -> (Tensor, Option<Tensor>) {
    let weight = Tensor::zeros(shape, init.device()).requires_grad_();
    init::default_weight_(&weight, init.generator());
    let fan_in = init::fans(shape).0;
    let bias = bias.then(|| {
        let b = Tensor::zeros(&[bias_len], init.device()).requires_grad_();
        init::default_bias_(&b, fan_in, init.generator());
        b
    });
    (weight, bias)
}

/// 2-D convolution: weight `[out, in/groups, kh, kw]`, bias `[out]` (`nn.Conv2d`).
#[derive(Module)]
pub struct Conv2d {
    /// `[out_channels, in_channels / groups, kh, kw]`.
    #[param]
    pub weight: Tensor,
    /// `[out_channels]`.
    #[param]
    pub bias: Option<Tensor>,
    /// Stride, padding (incl. asymmetric / same), dilation, groups.
    pub options: Conv2dOptions,
}

/// Options of a [`Conv2d`]; [`build`](Self::build) makes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dBuilder {
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    options: Conv2dOptions,
    bias: bool,
}

impl Conv2d {
    /// `nn.Conv2d(in_channels, out_channels, kernel_size)` with a square
    /// kernel: stride 1, no padding, dilation 1, one group, a bias.
    pub fn builder(in_channels: usize, out_channels: usize, kernel_size: usize) -> Conv2dBuilder {
        Conv2dBuilder { in_channels, out_channels, kernel: kernel_size, options: Conv2dOptions::new(), bias: true }
    }
}

impl Conv2dBuilder {
    setters! {
        /// Whether the layer adds a learned bias (default true).
        bias: bool,
        /// Every option at once (stride, asymmetric padding, dilation, groups).
        options: Conv2dOptions,
    }

    /// The same stride along both axes (default 1).
    pub fn stride(self, s: usize) -> Self {
        Conv2dBuilder { options: self.options.stride(s), ..self }
    }

    /// The same zero padding on all four sides (default 0).
    pub fn padding(self, p: usize) -> Self {
        Conv2dBuilder { options: self.options.padding(p), ..self }
    }

    /// PyTorch's `padding='same'` for this kernel (stride 1).
    pub fn padding_same(self) -> Self {
        Conv2dBuilder { options: self.options.padding_same(self.kernel, self.kernel), ..self }
    }

    /// The same dilation along both axes (default 1).
    pub fn dilation(self, d: usize) -> Self {
        Conv2dBuilder { options: self.options.dilation(d), ..self }
    }

    /// Channel groups (default 1; `in_channels` for a depthwise convolution).
    pub fn groups(self, g: usize) -> Self {
        Conv2dBuilder { options: self.options.groups(g), ..self }
    }

    /// The layer with PyTorch's default initialisation, weight drawn first.
    ///
    /// # Panics
    /// When the groups do not divide both channel counts, or a size is zero.
    pub fn build(self, init: &mut Init) -> Conv2d {
        let (cin, cout, k, options) = (self.in_channels, self.out_channels, self.kernel, self.options);
        assert!(
            options.groups > 0 && cin.is_multiple_of(options.groups) && cout.is_multiple_of(options.groups),
            "Conv2d: {cin} in and {cout} out channels must divide into {} groups",
            options.groups
        );
        assert!(
            cin > 0 && cout > 0 && k > 0,
            "Conv2d: channels and kernel size must be positive, got {cin}, {cout}, {k}"
        );
        let (weight, bias) = params(&[cout, cin / options.groups, k, k], cout, self.bias, init);
        Conv2d { weight, bias, options }
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(&self.weight, self.bias.as_ref(), &self.options)
    }
    fn describe(&self) -> String {
        let s = self.weight.shape();
        let o = &self.options;
        format!(
            "Conv2d({}, {}, kernel_size=({}, {}), stride={:?}, padding={:?}, groups={})",
            s[1] * o.groups,
            s[0],
            s[2],
            s[3],
            o.stride,
            o.padding,
            o.groups
        )
    }
}

/// 1-D convolution over `[N, C, L]`: weight `[out, in/groups, k]` (`nn.Conv1d`).
#[derive(Module)]
pub struct Conv1d {
    /// `[out_channels, in_channels / groups, k]`.
    #[param]
    pub weight: Tensor,
    /// `[out_channels]`.
    #[param]
    pub bias: Option<Tensor>,
    /// Step along the sequence.
    pub stride: usize,
    /// Zeros added (left, right).
    pub padding: (usize, usize),
    /// Kernel dilation.
    pub dilation: usize,
    /// Channel groups.
    pub groups: usize,
}

/// Options of a [`Conv1d`]; [`build`](Self::build) makes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv1dBuilder {
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: (usize, usize),
    dilation: usize,
    groups: usize,
    bias: bool,
}

impl Conv1d {
    /// `nn.Conv1d(in_channels, out_channels, kernel_size)`: stride 1, no
    /// padding, dilation 1, one group, a bias.
    pub fn builder(in_channels: usize, out_channels: usize, kernel_size: usize) -> Conv1dBuilder {
        Conv1dBuilder {
            in_channels,
            out_channels,
            kernel: kernel_size,
            stride: 1,
            padding: (0, 0),
            dilation: 1,
            groups: 1,
            bias: true,
        }
    }
}

impl Conv1dBuilder {
    setters! {
        /// Step along the sequence (default 1).
        stride: usize,
        /// Kernel dilation (default 1).
        dilation: usize,
        /// Channel groups (default 1).
        groups: usize,
        /// Whether the layer adds a learned bias (default true).
        bias: bool,
    }

    /// The same number of zeros on both ends (default 0).
    pub fn padding(self, p: usize) -> Self {
        Conv1dBuilder { padding: (p, p), ..self }
    }

    /// Zeros added on the left and on the right (causal convolutions pad
    /// only the left).
    pub fn padding_lr(self, left: usize, right: usize) -> Self {
        Conv1dBuilder { padding: (left, right), ..self }
    }

    /// The layer with PyTorch's default initialisation, weight drawn first.
    ///
    /// # Panics
    /// When the groups do not divide both channel counts, or a size is zero.
    pub fn build(self, init: &mut Init) -> Conv1d {
        let (cin, cout, g) = (self.in_channels, self.out_channels, self.groups);
        assert!(
            g > 0 && cin.is_multiple_of(g) && cout.is_multiple_of(g),
            "Conv1d: {cin} in and {cout} out channels must divide into {g} groups"
        );
        assert!(cin > 0 && cout > 0 && self.kernel > 0 && self.stride > 0, "Conv1d: sizes must be positive: {self:?}");
        let (weight, bias) = params(&[cout, cin / g, self.kernel], cout, self.bias, init);
        Conv1d { weight, bias, stride: self.stride, padding: self.padding, dilation: self.dilation, groups: g }
    }
}

impl Module for Conv1d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv1d(&self.weight, self.bias.as_ref(), self.stride, self.padding, self.dilation, self.groups)
    }
    fn describe(&self) -> String {
        let s = self.weight.shape();
        format!("Conv1d({}, {}, kernel_size={}, stride={})", s[1] * self.groups, s[0], s[2], self.stride)
    }
}

/// Transposed 2-D convolution: weight `[in, out/groups, kh, kw]` (`nn.ConvTranspose2d`).
#[derive(Module)]
pub struct ConvTranspose2d {
    /// `[in_channels, out_channels / groups, kh, kw]`.
    #[param]
    pub weight: Tensor,
    /// `[out_channels]`.
    #[param]
    pub bias: Option<Tensor>,
    /// Stride, padding, output padding, dilation, groups.
    pub options: ConvTranspose2dOptions,
}

/// Options of a [`ConvTranspose2d`]; [`build`](Self::build) makes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvTranspose2dBuilder {
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    options: ConvTranspose2dOptions,
    bias: bool,
}

impl ConvTranspose2d {
    /// `nn.ConvTranspose2d(in_channels, out_channels, kernel_size)` with a
    /// square kernel: stride 1, no padding or output padding, one group, a bias.
    pub fn builder(in_channels: usize, out_channels: usize, kernel_size: usize) -> ConvTranspose2dBuilder {
        ConvTranspose2dBuilder {
            in_channels,
            out_channels,
            kernel: kernel_size,
            options: ConvTranspose2dOptions::new(),
            bias: true,
        }
    }
}

impl ConvTranspose2dBuilder {
    setters! {
        /// Whether the layer adds a learned bias (default true).
        bias: bool,
        /// Every option at once.
        options: ConvTranspose2dOptions,
    }

    /// The same stride along both axes (default 1).
    pub fn stride(self, s: usize) -> Self {
        ConvTranspose2dBuilder { options: self.options.stride(s), ..self }
    }

    /// The padding removed from both sides of the output (default 0).
    pub fn padding(self, p: usize) -> Self {
        ConvTranspose2dBuilder { options: self.options.padding(p), ..self }
    }

    /// Extra rows and columns added to one side of the output (default 0).
    pub fn output_padding(self, p: usize) -> Self {
        ConvTranspose2dBuilder { options: self.options.output_padding(p), ..self }
    }

    /// The same dilation along both axes (default 1).
    pub fn dilation(self, d: usize) -> Self {
        ConvTranspose2dBuilder { options: self.options.dilation(d), ..self }
    }

    /// Channel groups (default 1).
    pub fn groups(self, g: usize) -> Self {
        ConvTranspose2dBuilder { options: self.options.groups(g), ..self }
    }

    /// The layer with PyTorch's default initialisation, weight drawn first
    /// (the bias bound comes from the weight's fan_in, dims 1.., as PyTorch's).
    ///
    /// # Panics
    /// When the groups do not divide both channel counts, or a size is zero.
    pub fn build(self, init: &mut Init) -> ConvTranspose2d {
        let (cin, cout, k, options) = (self.in_channels, self.out_channels, self.kernel, self.options);
        let g = options.groups;
        assert!(
            g > 0 && cin.is_multiple_of(g) && cout.is_multiple_of(g),
            "ConvTranspose2d: {cin} in and {cout} out channels must divide into {g} groups"
        );
        assert!(cin > 0 && cout > 0 && k > 0, "ConvTranspose2d: channels and kernel size must be positive");
        let (weight, bias) = params(&[cin, cout / g, k, k], cout, self.bias, init);
        ConvTranspose2d { weight, bias, options }
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv_transpose2d(&self.weight, self.bias.as_ref(), &self.options)
    }
    fn describe(&self) -> String {
        let s = self.weight.shape();
        format!(
            "ConvTranspose2d({}, {}, kernel_size=({}, {}), stride={:?})",
            s[0],
            s[1] * self.options.groups,
            s[2],
            s[3],
            self.options.stride
        )
    }
}
