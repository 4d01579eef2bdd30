//! Pooling layers.

use wgrad_autograd::Tensor;

use crate::Module;

/// Max over windows (`nn.MaxPool2d`); stride defaults to the kernel size.
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
}

impl MaxPool2d {
    /// Square window `k`, stride `k`, no padding.
    pub fn new(k: usize) -> Self {
        MaxPool2d { kernel: (k, k), stride: (k, k), padding: (0, 0), dilation: (1, 1) }
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.max_pool2d(self.kernel, self.stride, self.padding, self.dilation)
    }
    fn describe(&self) -> String {
        format!("MaxPool2d(kernel_size={:?}, stride={:?}, padding={:?})", self.kernel, self.stride, self.padding)
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
}

impl AvgPool2d {
    /// Square window `k`, stride `k`, no padding.
    pub fn new(k: usize) -> Self {
        AvgPool2d { kernel: (k, k), stride: (k, k), padding: (0, 0), count_include_pad: true }
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.avg_pool2d(self.kernel, self.stride, self.padding, self.count_include_pad)
    }
    fn describe(&self) -> String {
        format!("AvgPool2d(kernel_size={:?}, stride={:?}, padding={:?})", self.kernel, self.stride, self.padding)
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
