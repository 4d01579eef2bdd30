//! The reference twin of index_add (`ops/index_add.rs`): the order of the
//! sums it defines is what the kernel keeps.

/// `torch.Tensor.index_add_` on the dense `dst` viewed as `[outer,
/// dim_size, inner]`: `dst[o][ids[t]][i] += src[o][t][i]` for each `t` in
/// order (an id out of range skips its rows), so every destination element
/// adds its rows in increasing `t`.
pub(crate) fn index_add((outer, dim_size, inner): (usize, usize, usize), ids: &[u32], src: &[f32], dst: &mut [f32]) {
    let k = ids.len();
    for o in 0..outer {
        for (t, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if id < dim_size {
                let s = &src[(o * k + t) * inner..][..inner];
                let d = &mut dst[(o * dim_size + id) * inner..][..inner];
                for (d, s) in d.iter_mut().zip(s) {
                    *d += s;
                }
            }
        }
    }
}
