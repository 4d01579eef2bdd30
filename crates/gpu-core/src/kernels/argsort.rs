//! The reference twin of argsort (`ops/argsort.rs`): the order it defines
//! (keys, then positions) is the one the kernel's network reaches.

/// A key whose unsigned order is the float order: any NaN above +inf,
/// -0.0 equal to 0.0 (`sortable` in the kernel).
pub(crate) fn sortable(v: f32) -> u32 {
    let mut bits = v.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        bits = 0x7fc0_0000;
    }
    if bits == 0x8000_0000 {
        bits = 0;
    }
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// The positions that sort one `[n, inner]` block's fibers along n
/// (ascending, or largest first), equal values in position order.
pub(crate) fn argsort_block(n: usize, inner: usize, descending: bool, src: &[f32], idx: &mut [u32]) {
    let mut order: Vec<(u32, u32)> = Vec::with_capacity(n);
    for i in 0..inner {
        order.clear();
        order.extend((0..n).map(|j| {
            let k = sortable(src[j * inner + i]);
            (if descending { !k } else { k }, j as u32)
        }));
        order.sort_unstable();
        for (j, &(_, at)) in order.iter().enumerate() {
            idx[j * inner + i] = at;
        }
    }
}
