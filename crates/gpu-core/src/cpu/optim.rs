//! Fast optimizer updates: the reference's per-element rule (`update_one`)
//! over chunks of the parameter and its state buffers on all cores; each
//! element is updated exactly as by the reference, so results are
//! bit-identical.

use rayon::prelude::*;

use super::GRAIN;

/// One task's share: its first element index, its chunk of the parameter
/// and of each state buffer.
type Task<'a> = (usize, &'a mut [f32], Vec<&'a mut [f32]>);

/// `w[i] = one(w[i], g[i], state_i)` for every element, with `state_i` the
/// i-th element of each state buffer (up to three), read before and
/// written back after.
pub(crate) fn update(
    ws: &mut [f32],
    gs: &[f32],
    states: Vec<&mut [f32]>,
    one: impl Fn(f32, f32, &mut [f32; 3]) -> f32 + Sync,
) {
    let n = ws.len();
    let chunk = n.div_ceil(4 * rayon::current_num_threads()).max(GRAIN);
    // Task t owns chunk t of the parameter and of every state buffer.
    let mut state_chunks: Vec<_> = states.into_iter().map(|s| s[..n].chunks_mut(chunk)).collect();
    let tasks: Vec<Task> = ws
        .chunks_mut(chunk)
        .enumerate()
        .map(|(t, w)| (t * chunk, w, state_chunks.iter_mut().filter_map(Iterator::next).collect()))
        .collect();
    tasks.into_par_iter().for_each(|(start, w, mut st)| {
        for (i, wi) in w.iter_mut().enumerate() {
            let mut s = [0.0f32; 3];
            for (j, h) in st.iter().enumerate() {
                s[j] = h[i];
            }
            *wi = one(*wi, gs[start + i], &mut s);
            for (j, h) in st.iter_mut().enumerate() {
                h[i] = s[j];
            }
        }
    });
}
