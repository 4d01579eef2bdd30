//! [`DistError`]: what can go wrong between ranks.

/// An error of a process group or of data-parallel training.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// The process was started by an MPI launcher, but this build has no
    /// MPI (the `mpi` cargo feature is off).
    #[error(
        "started by an MPI launcher ({variable} is set) but built without MPI: rebuild with `--features mpi` \
         (a feature of both wgrad and wgrad-distributed)"
    )]
    NoMpi {
        /// The launcher's variable that was found.
        variable: &'static str,
    },
    /// MPI failed to start or is gone (its thread ended).
    #[error("MPI: {0}")]
    Mpi(String),
    /// Ranks disagree on something they must share (a length, a model).
    #[error("rank {rank}: {what}")]
    Mismatch {
        /// The rank that noticed.
        rank: usize,
        /// What differs.
        what: String,
    },
    /// Parameters that required a gradient got none from a backward pass.
    #[error(
        "rank {rank}: {count} parameter(s) got no gradient from this backward pass: {names}; \
         DdpOptions::find_unused_parameters(true) reduces zeros for them instead"
    )]
    UnusedParameters {
        /// The rank.
        rank: usize,
        /// How many.
        count: usize,
        /// Their names (the first few).
        names: String,
    },
    /// A device error while reading or writing a tensor.
    #[error(transparent)]
    Device(#[from] wgrad_autograd::Error),
}

/// The result type of this crate.
pub type Result<T, E = DistError> = std::result::Result<T, E>;
