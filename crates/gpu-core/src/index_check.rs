//! Index validation for the ops that read class ids or indices (gather,
//! index_select and the embedding built on it, scatter_add, index_add, the class
//! targets of cross-entropy and nll_loss): PyTorch's device-side asserts, without a submission or a
//! readback of their own.
//!
//! On a GPU, a kernel that meets an index past its dimension records the
//! first such (site, index, size) in a 16-byte buffer of the device (see
//! `shaders/index_check.wgsl`) and carries on with the kernel's fixed
//! out-of-range meaning (a zero read, a skipped add, a NaN loss). The next
//! readback (`to_vec`, `item`), which a training step does anyway, copies
//! those 16 bytes in the same submission and returns
//! [`Error::IndexOutOfRange`] instead of the data. On the CPU backend the
//! twins check before they run and the op itself returns the error.

use crate::Error;

/// The ops that check, in the order of their site numbers (1-based in the
/// kernels: 0 means "no error").
const SITES: &[&str] = &["gather", "index_select", "scatter_add", "cross_entropy", "nll_loss", "index_add"];

/// The site number a kernel reports for `op`.
pub(crate) fn site(op: &'static str) -> usize {
    let k = SITES.iter().position(|&s| s == op).unwrap_or_else(|| panic!("wgrad internal: {op} is not an index site"));
    k + 1
}

/// The error for a site's record, `None` for an empty record.
pub(crate) fn decode(record: [u32; 4]) -> Option<Error> {
    let [site, index, size, _] = record;
    let op = *SITES.get(site.checked_sub(1)? as usize)?;
    Some(Error::IndexOutOfRange { op, index: index as u64, size: size as u64 })
}

/// The first index of `indices` at or past `size`, as the CPU twins' error.
pub(crate) fn check_host(op: &'static str, indices: impl IntoIterator<Item = u32>, size: usize) -> crate::Result<()> {
    match indices.into_iter().find(|&i| i as usize >= size) {
        Some(index) => Err(Error::IndexOutOfRange { op, index: index as u64, size: size as u64 }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decode_to_their_sites() {
        assert!(decode([0, 7, 3, 0]).is_none());
        assert!(decode([99, 7, 3, 0]).is_none());
        let e = decode([site("cross_entropy") as u32, 12, 10, 0]).unwrap().to_string();
        assert_eq!(e, "cross_entropy: index 12 is out of range for a dimension of size 10 (valid indices are 0..10)");
        assert!(check_host("gather", [0, 2, 5, 9], 5).unwrap_err().to_string().contains("index 5 "));
        assert!(check_host("gather", [0, 4], 5).is_ok());
    }
}
