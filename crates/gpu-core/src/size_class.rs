//! The size classes of pooled memory, shared by the GPU buffer pool
//! (`gpu/pool.rs`) and the CPU backend's host pool (`cpu/pool.rs`): what an
//! allocation really holds, and so what the memory budget charges.

/// Rounds a request up to its bucket: powers of two up to 64 KiB, then sixteenths
/// of a power of two, so large tensors waste at most 12.5%.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(256);
    let p = b.next_power_of_two();
    if p <= 1 << 16 {
        return p;
    }
    let step = p / 16;
    b.div_ceil(step) * step
}
