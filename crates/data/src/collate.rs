//! The [`Collate`] step: how a [`DataLoader`](crate::DataLoader) turns one
//! batch's items into what the caller receives.

use crate::DataError;

/// Items to batch, in two stages: [`collate`](Collate::collate) runs on a
/// loader worker and builds a host-side batch, then
/// [`upload`](Collate::upload) runs on the thread that iterates the epoch.
///
/// The split exists because device work (uploading, on-device conversion)
/// must stay on the caller's thread, while gathering bytes should not.
///
/// Any `Fn(Vec<I>) -> Result<B, DataError>` closure is a `Collate<I>` whose
/// upload hands the host batch over as it is; the image loader's
/// [`ImageCollate`](crate::ImageCollate) uploads bytes and converts them on
/// the device.
pub trait Collate<I>: Send + Sync {
    /// The batch as the workers build it and hand it across threads.
    type Host: Send;
    /// The batch as the caller receives it.
    type Batch;

    /// Builds one batch from its items, in batch order (runs on a worker).
    fn collate(&self, items: Vec<I>) -> Result<Self::Host, DataError>;

    /// Finishes a batch on the caller's thread (runs in `Iterator::next`).
    fn upload(&self, host: Self::Host) -> Result<Self::Batch, DataError>;
}

impl<I, B, F> Collate<I> for F
where
    F: Fn(Vec<I>) -> Result<B, DataError> + Send + Sync,
    B: Send,
{
    type Host = B;
    type Batch = B;

    fn collate(&self, items: Vec<I>) -> Result<B, DataError> {
        self(items)
    }

    fn upload(&self, host: B) -> Result<B, DataError> {
        Ok(host)
    }
}
