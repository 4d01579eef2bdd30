//! How many equal slices a product's K is cut into, where a GPU runs the
//! slices' products as one batched launch and adds them in slice order
//! (`matmul::split_k` for plain products, `recurrent::step_slices` for a
//! recurrent layer's per-step products, whose cell kernel adds them), and
//! the knob that caps both.

/// The fewest equal slices of `k` that reach `want`, each at least
/// `depth` deep and at most `cap` of them; where K allows no more, as many
/// as it does; 1 (K whole) where `want` is 1 or K has no such divisor.
pub(crate) fn slices_for(k: usize, want: usize, depth: usize, cap: usize) -> usize {
    if want <= 1 {
        return 1;
    }
    let most = (k / depth.max(1)).min(cap);
    (want..=most).find(|s| k.is_multiple_of(*s)).unwrap_or_else(|| largest_divisor(k, most))
}

/// The largest divisor of `k` up to `n` (at least 1): the count of equal
/// slices a forced count gives.
pub(crate) fn largest_divisor(k: usize, n: usize) -> usize {
    (1..=n.min(k).max(1)).rev().find(|s| k.is_multiple_of(*s)).unwrap_or(1)
}

/// `WGRAD_MATMUL_SPLIT_K`, the cap on every product's slices (a tuning
/// knob like `WGRAD_MATMUL_TILE`; `matmul::k_slices` says where it
/// applies): `None` when unset, an error for anything but a count of at
/// least 1. Read once.
pub(crate) fn cap() -> Result<Option<usize>, String> {
    static CAP: std::sync::OnceLock<Result<Option<usize>, String>> = std::sync::OnceLock::new();
    CAP.get_or_init(|| match std::env::var("WGRAD_MATMUL_SPLIT_K") {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(format!("WGRAD_MATMUL_SPLIT_K={v:?} is not a count of at least 1")),
        },
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_divide_k_reach_the_want_and_keep_their_depth() {
        assert_eq!(largest_divisor(1024, 32), 32);
        assert_eq!(largest_divisor(100, 32), 25);
        assert_eq!(largest_divisor(7, 4), 1);
        assert_eq!(largest_divisor(3, 8), 3);
        assert_eq!(largest_divisor(5, 0), 1);
        // (k, want, depth, cap) -> slices; the recurrent and matmul rules'
        // tests check the counts their products get.
        let cases = [
            ((1024, 1, 32, usize::MAX), 1),
            // The fewest that reach the want: 11 is no divisor of 2048, 16 is.
            ((2048, 11, 128, usize::MAX), 16),
            // 2048 at depth 128 allows 16, short of 32; a cap of 12 allows 8.
            ((2048, 32, 128, usize::MAX), 16),
            ((2048, 32, 128, 12), 8),
            // K = 96 at depth 32: 3 slices, a divisor.
            ((96, 4, 32, usize::MAX), 3),
        ];
        for ((k, want, depth, cap), slices) in cases {
            assert_eq!(slices_for(k, want, depth, cap), slices, "k {k}, want {want}, depth {depth}, cap {cap}");
        }
    }
}
