//! What can go wrong in an export.

use std::path::PathBuf;

/// An export that did not produce a file, and why.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A traced op has no ONNX form (or not with these attributes).
    #[error("ONNX export: op #{index} of {total} in the trace, `{op}`, cannot be exported: {reason}")]
    Unsupported {
        /// The op's name.
        op: String,
        /// Its position in the trace (0-based).
        index: usize,
        /// How many ops the trace holds.
        total: usize,
        /// Why.
        reason: String,
    },
    /// An op read a tensor made during the trace by something the trace
    /// does not record (a kernel called directly, a tensor built from
    /// `from_parts`): the file would be missing how it is computed.
    #[error(
        "ONNX export: op #{index} `{op}` reads a tensor of shape {shape:?} that was made inside the traced function \
         by an op tracing does not know; compute it with Tensor ops or create it before export"
    )]
    UntracedTensor {
        /// The op that read it.
        op: String,
        /// Its position in the trace.
        index: usize,
        /// The tensor's shape.
        shape: Vec<usize>,
    },
    /// The traced function returned a tensor it did not compute from its
    /// inputs, parameters or constants.
    #[error("ONNX export: output {index} (shape {shape:?}) was not computed by the traced function")]
    UnknownOutput {
        /// Which output.
        index: usize,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// The export's own arguments do not fit together.
    #[error("ONNX export: {0}")]
    Invalid(String),
    /// The file could not be written.
    #[error("writing the ONNX model {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// This crate's results.
pub type Result<T> = std::result::Result<T, Error>;
