//! Which gradients are reduced together: buckets of parameters in the
//! reverse of their registration order (backward finishes the last layers
//! first), each up to a byte cap, the first one small so that the first
//! reduction starts early (PyTorch DDP's 1 MB / 25 MB).

/// Splits parameters of `bytes[i]` bytes into buckets of parameter
/// indices: from the last parameter to the first, a bucket closes once it
/// holds `first_cap` bytes (the first bucket) or `cap` (the others), so a
/// parameter larger than the cap closes the bucket it joins.
pub(crate) fn assign(bytes: &[usize], first_cap: usize, cap: usize) -> Vec<Vec<usize>> {
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut current = Vec::new();
    let mut filled = 0;
    for i in (0..bytes.len()).rev() {
        current.push(i);
        filled += bytes[i];
        let limit = if buckets.is_empty() { first_cap } else { cap };
        if filled >= limit {
            buckets.push(std::mem::take(&mut current));
            filled = 0;
        }
    }
    if !current.is_empty() {
        buckets.push(current);
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_run_backwards_with_a_small_first_one() {
        let b = assign(&[4, 4, 4, 4, 4, 4], 4, 8);
        assert_eq!(b, vec![vec![5], vec![4, 3], vec![2, 1], vec![0]]);
    }

    #[test]
    fn every_parameter_is_in_exactly_one_bucket() {
        let sizes = [100, 3, 7, 5000, 1, 1, 64];
        let b = assign(&sizes, 10, 120);
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, (0..sizes.len()).collect::<Vec<_>>());
        assert_eq!(b, vec![vec![6], vec![5, 4, 3], vec![2, 1, 0]]);
        assert!(assign(&[], 1, 1).is_empty());
    }
}
