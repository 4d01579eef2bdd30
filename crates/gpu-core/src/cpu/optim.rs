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
        let g = &gs[start..start + w.len()];
        // One loop per state count over zipped slices: no per-element loop
        // over the state buffers, so the compiler can keep each element's
        // state in registers.
        match st.as_mut_slice() {
            [] => w.iter_mut().zip(g).for_each(|(w, &g)| *w = one(*w, g, &mut [0.0; 3])),
            [a] => w.iter_mut().zip(g).zip(a.iter_mut()).for_each(|((w, &g), a)| {
                let mut s = [*a, 0.0, 0.0];
                *w = one(*w, g, &mut s);
                *a = s[0];
            }),
            [a, b] => w.iter_mut().zip(g).zip(a.iter_mut().zip(b.iter_mut())).for_each(|((w, &g), (a, b))| {
                let mut s = [*a, *b, 0.0];
                *w = one(*w, g, &mut s);
                (*a, *b) = (s[0], s[1]);
            }),
            [a, b, c] => w.iter_mut().zip(g).zip(a.iter_mut().zip(b.iter_mut()).zip(c.iter_mut())).for_each(
                |((w, &g), ((a, b), c))| {
                    let mut s = [*a, *b, *c];
                    *w = one(*w, g, &mut s);
                    (*a, *b, *c) = (s[0], s[1], s[2]);
                },
            ),
            _ => unreachable!("at most three state buffers"),
        }
    });
}
