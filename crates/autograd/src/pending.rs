//! [`PendingVec`]: a tensor's values on their way to the host
//! ([`Tensor::to_vec_async`]). A training loop that shows its loss a step
//! late never makes the host wait for the device in the middle of a step:
//! step N+1 is recorded while the device finishes step N.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use wgrad_gpu_core::Readback;

use crate::tensor::{expect, floats_from_bytes};
use crate::{DType, Result};

/// A tensor's values being copied to the host, as f32 (F16 and U32
/// converted as [`Tensor::to_vec`](crate::Tensor::to_vec) does).
///
/// [`wait`](Self::wait) blocks until they are there; [`is_ready`](Self::is_ready)
/// never blocks; `.await` yields them (or the device error) when they land.
#[must_use = "the values are read only when taken"]
pub struct PendingVec {
    readback: Readback,
    dtype: DType,
    numel: usize,
}

impl PendingVec {
    pub(crate) fn new(readback: Readback, dtype: DType, numel: usize) -> PendingVec {
        PendingVec { readback, dtype, numel }
    }

    /// Whether the values are on the host: [`wait`](Self::wait) then returns at once.
    pub fn is_ready(&self) -> bool {
        self.readback.is_ready()
    }

    /// The values (blocks until they are on the host).
    ///
    /// # Panics
    /// On a device error, as [`Tensor::to_vec`](crate::Tensor::to_vec) does
    /// (inside [`try_run`](crate::try_run) it becomes that call's error).
    pub fn wait(self) -> Vec<f32> {
        expect("to_vec_async", self.try_wait())
    }

    /// [`wait`](Self::wait) that returns device errors instead of panicking.
    pub fn try_wait(self) -> Result<Vec<f32>> {
        let (dtype, numel) = (self.dtype, self.numel);
        Ok(floats_from_bytes(dtype, numel, self.readback.wait()?))
    }
}

impl Future for PendingVec {
    type Output = Result<Vec<f32>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (dtype, numel) = (this.dtype, this.numel);
        Pin::new(&mut this.readback).poll(cx).map(|r| r.map(|bytes| floats_from_bytes(dtype, numel, bytes)))
    }
}
