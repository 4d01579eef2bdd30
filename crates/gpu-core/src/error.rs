//! The error type of gpu-core: everything a user can get wrong at run time.

/// Errors returned by device selection, allocation, kernel launches and readback.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// `WGRAD_DEVICE=gpu` (or a name) was requested and no adapter fits.
    #[error("no GPU adapter found but {wanted} was requested; adapters seen: {available}")]
    NoAdapter {
        /// What the user asked for (`gpu` or a name substring).
        wanted: String,
        /// The adapters wgpu enumerated, comma separated (may be `none`).
        available: String,
    },
    /// `WGRAD_DEVICE` holds something we cannot parse.
    #[error("WGRAD_DEVICE={0:?} is not `gpu`, `cpu` or an adapter-name substring")]
    BadDeviceSpec(String),
    /// A call that waits (a readback, opening a GPU, synchronizing) made
    /// where nothing may wait: in the browser, whose one thread must return
    /// to the page for the GPU to answer.
    #[error("{call} would block the browser's only thread; use {instead}")]
    WouldBlock {
        /// What was called.
        call: &'static str,
        /// The asynchronous form to use instead.
        instead: &'static str,
    },
    /// The adapter refused to open a device.
    #[error("could not open a device on adapter {adapter}: {reason}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's message.
        reason: String,
    },
    /// A buffer or binding would exceed one of the adapter's limits.
    #[error("{what} needs {needed} bytes but the adapter's {limit} is {allowed} bytes")]
    LimitExceeded {
        /// What was being allocated or bound.
        what: String,
        /// Bytes requested.
        needed: u64,
        /// Name of the wgpu limit.
        limit: &'static str,
        /// The limit's value.
        allowed: u64,
    },
    /// An allocation would pass the device's memory budget, or the driver
    /// ran out of memory: lower the batch size and retry.
    #[error("out of memory on {device}: {requested} bytes requested; {detail}")]
    OutOfMemory {
        /// The device's name.
        device: String,
        /// Bytes of the allocation that failed (0 when the driver did not say).
        requested: u64,
        /// The budget and use, or the driver's message.
        detail: String,
    },
    /// The GPU reported an error (validation, device loss) while running recorded work.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// Copying results back to the host failed.
    #[error("readback failed: {0}")]
    Readback(String),
    /// An operation was called with arguments it cannot accept (sizes, ranks, dtypes).
    #[error("{op}: {msg}")]
    Invalid {
        /// The operation's name.
        op: &'static str,
        /// What was wrong.
        msg: String,
    },
    /// An op read a class id or index outside its dimension (found by the
    /// kernel on a GPU, reported at the next readback; at once on the CPU).
    #[error("{op}: index {index} is out of range for a dimension of size {size} (valid indices are 0..{size})")]
    IndexOutOfRange {
        /// The op that read it (`index_select`, `cross_entropy`, ...).
        op: &'static str,
        /// The offending index.
        index: u64,
        /// The size of the indexed dimension.
        size: u64,
    },
    /// Buffers from two different devices were combined.
    #[error("{op}: operands live on different devices ({a} and {b})")]
    DeviceMismatch {
        /// The operation's name.
        op: &'static str,
        /// First device.
        a: String,
        /// Second device.
        b: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an [`Error::Invalid`].
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid { op, msg: msg.into() }
    }

    /// The message prefixed with `op: `, for a caller reporting a failure
    /// of `op`; an [`Error::Invalid`] of `op` itself already starts that
    /// way and is not prefixed twice (`from_vec: from_vec: ...`).
    pub fn in_op(&self, op: &str) -> String {
        // Errors that carry their op (invalid arguments, bad indices) already
        // start with its name.
        let own = self.to_string();
        match own.strip_prefix(op) {
            Some(rest) if rest.starts_with(": ") => own,
            _ => format!("{op}: {own}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn in_op_names_the_op_once() {
        let own = Error::invalid("from_vec", "3 values do not fill shape [2, 2] (4 elements)");
        assert_eq!(own.in_op("from_vec"), "from_vec: 3 values do not fill shape [2, 2] (4 elements)");
        assert_eq!(own.in_op("to_dtype"), "to_dtype: from_vec: 3 values do not fill shape [2, 2] (4 elements)");
        assert_eq!(Error::Gpu("lost".into()).in_op("rand"), "rand: GPU error: lost");
        let bad = Error::IndexOutOfRange { op: "index_select", index: 6, size: 4 };
        assert_eq!(bad.in_op("index_select").matches("index_select").count(), 1, "{}", bad.in_op("index_select"));
        assert!(bad.in_op("embedding").starts_with("embedding: index_select: "));
    }
}
