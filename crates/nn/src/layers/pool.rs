//! Pooling layers.

use wgrad_autograd::{PoolWindow, Tensor};

use crate::Module;

/// Max over windows (`nn.MaxPool2d`); stride defaults to the kernel size.
///
/// ```
/// # use wgrad_nn::{MaxPool2d, Module};
/// # use wgrad_autograd::{Device, Tensor};
/// // nn.MaxPool2d(3, stride=2, ceil_mode=True), as GoogLeNet pools.
/// let pool = MaxPool2d { stride: (2, 2), ..MaxPool2d::new(3) }.ceil_mode(true);
/// let x = Tensor::zeros(&[1, 4, 8, 8], &Device::cpu());
/// assert_eq!(pool.forward(&x).shape(), [1, 4, 4, 4]); // 3 without ceil_mode
/// ```
#[derive(Clone, Copy, Debug, Module)]
pub struct MaxPool2d {
    /// Window (h, w).
    pub kernel: (usize, usize),
    /// Step (h, w).
    pub stride: (usize, usize),
    /// Implicit -inf padding (h, w).
    pub padding: (usize, usize),
    /// Window dilation (h, w).
    pub dilation: (usize, usize),
    /// Output sizes rounded up (the last window may run past the input).
    pub ceil_mode: bool,
}

impl MaxPool2d {
    /// Square window `k`, stride `k`, no padding, `ceil_mode` off.
    pub fn new(k: usize) -> Self {
        MaxPool2d { kernel: (k, k), stride: (k, k), padding: (0, 0), dilation: (1, 1), ceil_mode: false }
    }

    /// With output sizes rounded up (`true`, PyTorch's `ceil_mode=True`) or down.
    pub fn ceil_mode(self, ceil_mode: bool) -> Self {
        MaxPool2d { ceil_mode, ..self }
    }

    /// The window as the functional form takes it.
    pub fn window(&self) -> PoolWindow {
        let w = PoolWindow::new(self.kernel).stride(self.stride).padding(self.padding);
        w.dilation(self.dilation).ceil_mode(self.ceil_mode)
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.max_pool2d_window(self.window())
    }
    fn describe(&self) -> String {
        let ceil = if self.ceil_mode { ", ceil_mode=True" } else { "" };
        format!("MaxPool2d(kernel_size={:?}, stride={:?}, padding={:?}{ceil})", self.kernel, self.stride, self.padding)
    }
}

/// Mean over windows (`nn.AvgPool2d`, count_include_pad true by default).
#[derive(Clone, Copy, Debug, Module)]
pub struct AvgPool2d {
    /// Window (h, w).
    pub kernel: (usize, usize),
    /// Step (h, w).
    pub stride: (usize, usize),
    /// Zero padding (h, w).
    pub padding: (usize, usize),
    /// Whether padded zeros count in the mean (PyTorch default true).
    pub count_include_pad: bool,
    /// Output sizes rounded up; a last window that runs past the padded
    /// input divides by its area up to there (PyTorch's rule).
    pub ceil_mode: bool,
}

impl AvgPool2d {
    /// Square window `k`, stride `k`, no padding, `ceil_mode` off.
    pub fn new(k: usize) -> Self {
        AvgPool2d { kernel: (k, k), stride: (k, k), padding: (0, 0), count_include_pad: true, ceil_mode: false }
    }

    /// With output sizes rounded up (`true`, PyTorch's `ceil_mode=True`) or down.
    pub fn ceil_mode(self, ceil_mode: bool) -> Self {
        AvgPool2d { ceil_mode, ..self }
    }

    /// The window as the functional form takes it.
    pub fn window(&self) -> PoolWindow {
        PoolWindow::new(self.kernel).stride(self.stride).padding(self.padding).ceil_mode(self.ceil_mode)
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.avg_pool2d_window(self.window(), self.count_include_pad)
    }
    fn describe(&self) -> String {
        let ceil = if self.ceil_mode { ", ceil_mode=True" } else { "" };
        format!("AvgPool2d(kernel_size={:?}, stride={:?}, padding={:?}{ceil})", self.kernel, self.stride, self.padding)
    }
}

/// Mean over adaptive windows to a fixed output size; `(1, 1)` is global average pooling.
#[derive(Clone, Copy, Debug, Module)]
pub struct AdaptiveAvgPool2d(pub (usize, usize));

impl Module for AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.adaptive_avg_pool2d(self.0)
    }
    fn describe(&self) -> String {
        format!("AdaptiveAvgPool2d(output_size={:?})", self.0)
    }
}
