//! Seeded random tensors from the counter-based Philox generator: the same
//! seed gives the same numbers on the GPU and on the CPU backend.

use wgrad_gpu_core::ops::random;
use wgrad_gpu_core::{Device, Layout};

use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

/// A random stream: a seed and how far into its counter space we are.
/// Saving `(seed, offset)` saves the generator's whole state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generator {
    /// The Philox key.
    pub seed: u64,
    /// Counter blocks (4 values each) already used.
    pub offset: u64,
}

impl Generator {
    /// A fresh stream.
    pub fn new(seed: u64) -> Self {
        Generator { seed, offset: 0 }
    }

    /// A new, independent stream derived from this one (which advances), so
    /// one model seed can seed every layer's own generator.
    pub fn fork(&mut self) -> Generator {
        // SplitMix64 finaliser of (seed, position): decorrelated child seeds.
        let z = self.seed ^ self.offset.wrapping_mul(wgrad_gpu_core::GOLDEN) ^ 0xD1B5_4A32_D192_ED03;
        self.offset += 1;
        Generator::new(wgrad_gpu_core::mix64(z))
    }

    fn advance(&mut self, n: usize) -> u64 {
        self.take((n as u64).div_ceil(4))
    }

    /// Reserves `counters` counter blocks for a kernel that draws its own
    /// numbers (dropout masks, augmentations): returns the first one and
    /// advances past them, so the next draw is independent.
    pub fn take(&mut self, counters: u64) -> u64 {
        let at = self.offset;
        self.offset = self.offset.wrapping_add(counters);
        at
    }

    /// The four Philox words of the next counter block, on the host (the
    /// words the kernels would draw there); advances by one block. For
    /// decisions made on the host, such as a mixup permutation.
    pub fn next_block(&mut self) -> [u32; 4] {
        let at = self.take(1);
        wgrad_gpu_core::ops::augment::draws(self.seed, at, 0)
    }

    /// Uniform values in `[lo, hi)`.
    pub fn uniform(&mut self, shape: &[usize], lo: f32, hi: f32, device: &Device) -> Tensor {
        let scope = crate::trace::scope();
        let n = shape.iter().product();
        let at = self.advance(n);
        let source = crate::compiled_random::source(self, at);
        let b = expect("rand", random::uniform_from(device, n, source.counter(), lo, hi));
        scope.output(|| TraceOp::Opaque("uniform"), &[], Tensor::constant(b, Layout::contiguous(shape), DType::F32))
    }

    /// Normal values with `mean` and `std`.
    pub fn normal(&mut self, shape: &[usize], mean: f32, std: f32, device: &Device) -> Tensor {
        let scope = crate::trace::scope();
        let n = shape.iter().product();
        let at = self.advance(n);
        let source = crate::compiled_random::source(self, at);
        let b = expect("randn", random::normal_from(device, n, source.counter(), mean, std));
        scope.output(|| TraceOp::Opaque("normal"), &[], Tensor::constant(b, Layout::contiguous(shape), DType::F32))
    }
}

impl Tensor {
    /// Uniform `[0, 1)` values from `seed` (`torch.rand` with a fixed generator).
    pub fn rand(shape: &[usize], seed: u64, device: &Device) -> Tensor {
        Generator::new(seed).uniform(shape, 0.0, 1.0, device)
    }

    /// Standard normal values from `seed`.
    pub fn randn(shape: &[usize], seed: u64, device: &Device) -> Tensor {
        Generator::new(seed).normal(shape, 0.0, 1.0, device)
    }
}
