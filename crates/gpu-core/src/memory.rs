//! The memory budget of a device: every allocation is checked against it
//! before anything is written, so running out of memory is an
//! [`Error::OutOfMemory`] a program can catch and retry with a smaller batch
//! rather than a kill by the operating system (CPU backend) or a driver
//! error deep inside a kernel (GPU).
//!
//! `WGRAD_MEMORY_BUDGET` (bytes, or with a `K`/`M`/`G` suffix) sets it for
//! every device; otherwise the CPU backend defaults to the memory the
//! machine has available when the device opens, and a GPU to no budget
//! beyond its buffer-size limits (wgpu does not report how much memory an
//! adapter has; the driver's own out-of-memory report becomes the same
//! typed error). [`Device::set_memory_budget`](crate::Device::set_memory_budget)
//! changes it at run time.
//!
//! What is checked is what is held: a buffer in its allocation's size class
//! (the pooled allocation, not the bytes asked for), and on the CPU backend
//! also the host memory a kernel takes beyond its buffers (an f16 operand
//! widened to f32, a readback's copy), each through a `Reservation` (`reservation.rs`) that
//! counts as live bytes while it exists. Kernels that can read their
//! buffers in place do (a fill, a reduction), so they take none. Free
//! vectors the CPU backend's pool keeps are resident too: when an
//! allocation needs room, pooled vectors are freed first, so the live
//! bytes, the pool and the new allocation together stay within the budget.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::{Error, Result};

/// The environment variable that sets every device's budget.
pub const ENV_VAR: &str = "WGRAD_MEMORY_BUDGET";

/// A budget in bytes; `u64::MAX` means none.
#[derive(Debug)]
pub(crate) struct Budget(AtomicU64);

impl Budget {
    /// The budget a new device starts with (see the module docs).
    pub fn initial(cpu: bool) -> Result<Budget> {
        let bytes = match from_env()? {
            Some(b) => Some(b),
            None if cpu => available_memory(),
            None => None,
        };
        Ok(Budget(AtomicU64::new(bytes.unwrap_or(u64::MAX))))
    }

    /// No budget.
    pub fn none() -> Budget {
        Budget(AtomicU64::new(u64::MAX))
    }

    pub fn get(&self) -> Option<u64> {
        Some(self.0.load(Relaxed)).filter(|&b| b != u64::MAX)
    }

    pub fn set(&self, bytes: Option<u64>) {
        self.0.store(bytes.unwrap_or(u64::MAX), Relaxed);
    }

    /// Bytes that may be held besides `live` (`u64::MAX` without a budget).
    pub fn room(&self, live: u64) -> u64 {
        self.0.load(Relaxed).saturating_sub(live)
    }

    /// Errors when `bytes` more on top of `live` would pass the budget
    /// (`device` names it, called only then: allocation is a hot path).
    pub fn check(&self, device: impl FnOnce() -> String, bytes: u64, live: u64) -> Result<()> {
        match self.get() {
            Some(budget) if live.saturating_add(bytes) > budget => Err(Error::OutOfMemory {
                device: device(),
                requested: bytes,
                detail: format!(
                    "{live} bytes are in use and the memory budget is {budget} bytes (set with {ENV_VAR} or \
                     Device::set_memory_budget)"
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// The budget `WGRAD_MEMORY_BUDGET` sets, if any; an error naming the
/// variable when it is not a byte count.
pub(crate) fn from_env() -> Result<Option<u64>> {
    match std::env::var(ENV_VAR) {
        Ok(v) => parse(&v).map(Some).ok_or_else(|| {
            Error::invalid("memory budget", format!("{ENV_VAR}={v:?} is not a byte count such as 4G or 512M"))
        }),
        Err(_) => Ok(None),
    }
}

/// `1073741824`, `1G`, `512M`, `64K` (powers of 1024).
pub(crate) fn parse(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return None,
    };
    let n: u64 = digits.trim().parse().ok()?;
    n.checked_mul(1 << shift)
}

/// `MemAvailable` of /proc/meminfo (Linux); `None` elsewhere.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_with_units() {
        assert_eq!(parse("1024"), Some(1024));
        assert_eq!(parse("4k"), Some(4096));
        assert_eq!(parse(" 512M "), Some(512 << 20));
        assert_eq!(parse("2G"), Some(2 << 30));
        assert_eq!(parse("lots"), None);
        assert_eq!(parse("5X"), None);
        assert_eq!(parse("99999999999T"), None, "overflow");
    }

    #[test]
    fn the_check_names_the_sizes() {
        let b = Budget(AtomicU64::new(1000));
        let cpu = || "cpu".to_string();
        assert!(b.check(cpu, 400, 500).is_ok());
        let e = b.check(cpu, 600, 500).unwrap_err().to_string();
        assert_eq!(
            e,
            "out of memory on cpu: 600 bytes requested; 500 bytes are in use and the memory budget is 1000 bytes \
             (set with WGRAD_MEMORY_BUDGET or Device::set_memory_budget)"
        );
        b.set(None);
        assert!(b.check(cpu, u64::MAX, 500).is_ok());
    }
}
