//! Element types a tensor can hold.

/// The element type of a [`Tensor`](crate::Tensor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float: every arithmetic op.
    F32,
    /// 16-bit float storage (halves memory; cast to F32 for arithmetic).
    F16,
    /// 32-bit unsigned integer: indices, labels, argmax results.
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F16 => 2,
            DType::F32 | DType::U32 => 4,
        }
    }
}
