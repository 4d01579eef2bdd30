//! Host memory that CPU-backend kernels hold beyond their buffers, counted
//! against the device's memory budget ([`Reservation`], [`HostVec`]); the
//! budget itself is `memory.rs`, below the device that owns it.

use crate::{Device, Result};

/// Checks that `bytes` more fit the budget of `device` and makes room for
/// them: on the CPU backend, pooled free vectors are freed until the live
/// bytes, the pool and `bytes` fit together (a vector the allocation will
/// reuse is taken out of the pool first, so it is not freed).
pub(crate) fn make_room(device: &Device, bytes: u64) -> Result<()> {
    let live = device.inner.stats.bytes_live();
    device.inner.budget.check(|| device.name(), bytes, live)?;
    if !device.is_gpu() {
        device.inner.host_pool.trim(device.inner.budget.room(live).saturating_sub(bytes));
    }
    Ok(())
}

/// Host memory a CPU-backend kernel holds beyond its buffers, checked
/// against the budget before it is allocated and counted in `bytes_live`
/// (and `transient_bytes`) until dropped. Take one for any host allocation
/// that grows with a tensor; scratch of a fixed size (a row, a tile) needs
/// none.
#[must_use = "the bytes are reserved only while the reservation lives"]
pub(crate) struct Reservation {
    device: Device,
    bytes: u64,
}

impl Reservation {
    /// Reserves `bytes` on `device`; [`Error::OutOfMemory`] when they do not
    /// fit its budget beside what is live.
    pub fn new(device: &Device, bytes: u64) -> Result<Reservation> {
        make_room(device, bytes)?;
        device.inner.stats.transient_acquired(bytes);
        Ok(Reservation { device: device.clone(), bytes })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.device.inner.stats.transient_released(self.bytes);
    }
}

/// A host vector counted against the budget while it lives (see
/// [`Reservation`]), allocated only once the reservation is granted.
pub(crate) struct HostVec<T> {
    data: Vec<T>,
    _held: Reservation,
}

impl<T: Clone> HostVec<T> {
    /// `n` copies of `value`.
    pub fn filled(device: &Device, n: usize, value: T) -> Result<HostVec<T>> {
        let held = Reservation::new(device, (n * std::mem::size_of::<T>()) as u64)?;
        Ok(HostVec { data: vec![value; n], _held: held })
    }

    /// The values of `iter` (`n` of them), collected under a reservation.
    pub fn collect(device: &Device, n: usize, iter: impl Iterator<Item = T>) -> Result<HostVec<T>> {
        let held = Reservation::new(device, (n * std::mem::size_of::<T>()) as u64)?;
        let mut data = Vec::with_capacity(n);
        data.extend(iter.take(n));
        Ok(HostVec { data, _held: held })
    }
}

impl<T> std::ops::Deref for HostVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.data
    }
}

impl<T> std::ops::DerefMut for HostVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.data
    }
}
