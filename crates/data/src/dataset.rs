//! The [`Dataset`] trait: what a [`DataLoader`](crate::DataLoader) reads
//! items from, on its worker threads.

use crate::DataError;

/// Items addressed by index, like PyTorch's map-style `Dataset`.
///
/// The loader's workers call [`get_batch`](Dataset::get_batch) with one
/// batch's indices, from several threads at once (hence `Send + Sync`), so
/// slow work (decoding files, say) belongs in `get` and runs in parallel.
///
/// A dataset of points on a line, batched by a closure into host vectors that
/// the caller's thread turns into tensors:
///
/// ```
/// use std::sync::Arc;
/// use wgrad_autograd::{Device, Tensor};
/// use wgrad_data::{DataError, DataLoader, Dataset};
///
/// /// Points `(x, 2x + 1)` for `x` in [0, 1).
/// struct Line {
///     n: usize,
/// }
///
/// impl Dataset for Line {
///     type Item = (f32, f32);
///
///     fn len(&self) -> usize {
///         self.n
///     }
///
///     fn get(&self, i: usize) -> Result<(f32, f32), DataError> {
///         let x = i as f32 / self.n as f32;
///         Ok((x, 2.0 * x + 1.0))
///     }
/// }
///
/// let dev = Device::cpu();
/// let loader = DataLoader::with_collate(Arc::new(Line { n: 100 }), 32, |items: Vec<(f32, f32)>| {
///     Ok(items.into_iter().unzip::<f32, f32, Vec<f32>, Vec<f32>>())
/// })
/// .workers(2)
/// .seed(7);
/// let mut seen = 0;
/// for batch in loader.epoch(0) {
///     let (xs, ys) = batch?;
///     // Tensors are made on the caller's thread, where device work belongs.
///     let (x, y) = (Tensor::from_vec(&xs, &[xs.len(), 1], &dev), Tensor::from_vec(&ys, &[ys.len(), 1], &dev));
///     assert_eq!(x.shape(), y.shape());
///     seen += xs.len();
/// }
/// assert_eq!(seen, 100);
/// # Ok::<(), DataError>(())
/// ```
pub trait Dataset: Send + Sync {
    /// One item, as the collate step receives it.
    type Item: Send;

    /// Number of items.
    fn len(&self) -> usize;

    /// True when there are no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `index` (`index < len()`; implementations may panic otherwise,
    /// as slice indexing does).
    fn get(&self, index: usize) -> Result<Self::Item, DataError>;

    /// The items at `indices`, in that order. The default calls
    /// [`get`](Dataset::get) for each and names the failing index
    /// ([`DataError::Item`]); override it when one read of many items is
    /// cheaper than many reads of one (a database query, a file range).
    fn get_batch(&self, indices: &[usize]) -> Result<Vec<Self::Item>, DataError> {
        indices.iter().map(|&i| self.get(i).map_err(|e| e.at_item(i))).collect()
    }
}
