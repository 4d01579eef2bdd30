//! The reference twin of cumsum (`ops/cumsum.rs`): the order of the sums it
//! defines is what the kernel keeps.

/// Running sums of one `[n, inner]` block (an outer index's slice) along
/// its rows, first to last or, with `reverse`, last to first: each fiber
/// `i` adds its elements in that order.
pub(crate) fn cumsum_block(n: usize, inner: usize, reverse: bool, src: &[f32], dst: &mut [f32]) {
    let mut acc = vec![0.0f32; inner];
    for k in 0..n {
        let j = if reverse { n - 1 - k } else { k };
        let (s, d) = (&src[j * inner..][..inner], &mut dst[j * inner..][..inner]);
        for ((a, &s), d) in acc.iter_mut().zip(s).zip(d) {
            *a += s;
            *d = *a;
        }
    }
}
