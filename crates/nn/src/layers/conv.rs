//! Convolution layers (NCHW), PyTorch's weight layouts and default init.

use wgrad_autograd::{Conv2dOptions, ConvTranspose2dOptions, Device, Generator, Tensor};

use crate::init;
use crate::Module;

/// Weight and bias with PyTorch's default initialisation (kaiming_uniform a=√5,
/// bias ±1/√fan_in, fan_in from the weight's dims 1..).
fn params(shape: &[usize], bias: bool, gen: &mut Generator, device: &Device) -> (Tensor, Option<Tensor>) {
    let weight = Tensor::zeros(shape, device).requires_grad_();
    init::default_weight_(&weight, gen);
    let fan_in = init::fans(shape).0;
    let bias = bias.then(|| {
        let b = Tensor::zeros(&[shape[0]], device).requires_grad_();
        init::default_bias_(&b, fan_in, gen);
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

impl Conv2d {
    /// A layer with square kernel `k` and the given options.
    pub fn new(
        in_ch: usize,
        out_ch: usize,
        k: usize,
        options: Conv2dOptions,
        bias: bool,
        gen: &mut Generator,
        device: &Device,
    ) -> Self {
        assert!(
            options.groups > 0 && in_ch.is_multiple_of(options.groups) && out_ch.is_multiple_of(options.groups),
            "Conv2d: {in_ch} in and {out_ch} out channels must divide into {} groups",
            options.groups
        );
        let (weight, bias) = params(&[out_ch, in_ch / options.groups, k, k], bias, gen, device);
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

impl Conv1d {
    /// A layer with symmetric `padding`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_ch: usize,
        out_ch: usize,
        k: usize,
        stride: usize,
        padding: usize,
        groups: usize,
        gen: &mut Generator,
        device: &Device,
    ) -> Self {
        let (weight, bias) = params(&[out_ch, in_ch / groups, k], true, gen, device);
        Conv1d { weight, bias, stride, padding: (padding, padding), dilation: 1, groups }
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

impl ConvTranspose2d {
    /// A layer with square kernel `k`.
    pub fn new(
        in_ch: usize,
        out_ch: usize,
        k: usize,
        options: ConvTranspose2dOptions,
        gen: &mut Generator,
        device: &Device,
    ) -> Self {
        let shape = [in_ch, out_ch / options.groups, k, k];
        let weight = Tensor::zeros(&shape, device).requires_grad_();
        init::default_weight_(&weight, gen);
        // PyTorch computes the bias bound from the weight's fan_in (dims 1..).
        let b = Tensor::zeros(&[out_ch], device).requires_grad_();
        init::default_bias_(&b, init::fans(&shape).0, gen);
        ConvTranspose2d { weight, bias: Some(b), options }
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
