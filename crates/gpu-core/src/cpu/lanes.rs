//! Sums kept in independent lanes. A float sum in one chain waits for each
//! add to finish (about four cycles an element), and the compiler may not
//! reorder it. Adding element `i` into lane `i % LANES` and the lanes in
//! order at the end gives it chains to keep in vector registers, at
//! whatever width the build targets: about six times faster on the
//! baseline x86-64 build. The order differs from a plain loop's, so results
//! may differ in the last bits from the reference twins; used only where a
//! fast path does not promise the reference's order (batch norm's
//! statistics and gradient sums, row normalisation).

/// Independent chains of a sum: enough for two vector adders with a
/// four-cycle latency at SSE2's two f64 per register.
pub(crate) const LANES: usize = 16;

/// `Σ f(x)` over `xs`.
#[inline(always)]
pub(crate) fn sum(xs: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f(x);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&x| f(x)).sum();
    acc.iter().sum::<f64>() + tail
}

/// `(Σ f(a, b).0, Σ f(a, b).1)` over the pairs of `a` and `b` (as long as
/// the shorter).
#[inline(always)]
pub(crate) fn sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> (f64, f64)) -> (f64, f64) {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (mut s, mut t) = ([0.0f64; LANES], [0.0f64; LANES]);
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            let (u, v) = f(x[l], y[l]);
            s[l] += u;
            t[l] += v;
        }
    }
    let (mut ts, mut tt) = (0.0, 0.0);
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        let (u, v) = f(x, y);
        ts += u;
        tt += v;
    }
    (s.iter().sum::<f64>() + ts, t.iter().sum::<f64>() + tt)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against plain f64 sums, over lengths around the lane count (tails),
    /// and with values whose sum is exact in f64 (then any order agrees).
    #[test]
    fn lane_sums_are_the_sums() {
        for n in [0, 1, LANES - 1, LANES, LANES + 1, 3 * LANES + 5, 1000] {
            let a: Vec<f32> = (0..n).map(|i| (i % 37) as f32 - 18.0).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 11) as f32 * 0.5).collect();
            let plain: f64 = a.iter().map(|&x| x as f64 * 2.0).sum();
            assert_eq!(sum(&a, |x| x as f64 * 2.0), plain, "n={n}");
            let (s, t) = sum2(&a, &b, |x, y| (x as f64, x as f64 * y as f64));
            let want =
                (a.iter().map(|&x| x as f64).sum::<f64>(), a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum());
            assert_eq!((s, t), want, "n={n}");
        }
        // Pairs stop at the shorter slice.
        assert_eq!(sum2(&[1.0; 40], &[2.0; 35], |x, y| (x as f64, y as f64)), (35.0, 70.0));
    }
}
