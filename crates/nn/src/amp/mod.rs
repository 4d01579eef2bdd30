//! Mixed-precision training helpers (PyTorch's `torch.amp`).
//!
//! Gradients computed in reduced precision underflow to zero when they are
//! small; dynamic loss scaling multiplies the loss by a large factor before
//! backward so they stay representable, divides the gradients back before
//! the optimizer uses them, and skips the steps whose gradients overflowed.
//! [`GradScaler`] does that bookkeeping with PyTorch's semantics.

mod grad_scaler;

pub use grad_scaler::{GradScaler, GradScalerOptions};
