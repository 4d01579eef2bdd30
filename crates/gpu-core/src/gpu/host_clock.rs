//! Where the host's time goes while a GPU device works: recording launches
//! (the fuser's planning and the encoding included), submitting batches,
//! and waiting for the device (readbacks). The split is what tells a
//! host-bound step (recording costs more than the GPU's work) from a
//! device-bound one, on any adapter: it needs no timestamps.
//!
//! Each span is charged to the innermost phase open on its thread, so a
//! phase inside another (a launch that submits a full batch, a readback's
//! submit) is not counted twice.

use std::cell::RefCell;
use std::sync::Arc;
use web_time::Instant;

use crate::stats::{HostPhase, Stats};

/// The phase open on this thread: what it is, since when it runs
/// uninterrupted, and whose counters it goes to.
type Open = (HostPhase, Instant, Arc<Stats>);

thread_local! {
    static OPEN: RefCell<Option<Open>> = const { RefCell::new(None) };
}

/// Charges the open phase (if any) up to `now`, and returns it.
fn charge(open: Option<Open>, now: Instant) -> Option<(HostPhase, Arc<Stats>)> {
    open.map(|(phase, since, stats)| {
        stats.add_host_time(phase, now - since);
        (phase, stats)
    })
}

/// A phase of host work, timed until the guard drops.
#[must_use = "the phase is timed while the guard lives"]
pub(crate) struct Phase {
    outer: Option<(HostPhase, Arc<Stats>)>,
}

/// Opens `phase` for `stats`' device on this thread (pausing the phase it
/// interrupts).
pub(crate) fn enter(stats: &Arc<Stats>, phase: HostPhase) -> Phase {
    let now = Instant::now();
    let outer = OPEN.with(|open| charge(open.replace(Some((phase, now, stats.clone()))), now));
    Phase { outer }
}

impl Drop for Phase {
    fn drop(&mut self) {
        let now = Instant::now();
        OPEN.with(|open| {
            let mut open = open.borrow_mut();
            charge(open.take(), now);
            *open = self.outer.take().map(|(phase, stats)| (phase, now, stats));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn busy(d: Duration) {
        let t = Instant::now();
        while t.elapsed() < d {}
    }

    #[test]
    fn nested_phases_are_charged_once_each() {
        let stats = Arc::new(Stats::default());
        let t = Instant::now();
        {
            let _record = enter(&stats, HostPhase::Record);
            busy(Duration::from_millis(4));
            {
                let _submit = enter(&stats, HostPhase::Submit);
                busy(Duration::from_millis(6));
            }
            busy(Duration::from_millis(2));
        }
        let total = t.elapsed();
        let s = stats.snapshot();
        let ms = |ns: u64| ns as f64 / 1e6;
        assert!(ms(s.host_submit_ns) >= 6.0 && ms(s.host_submit_ns) < 6.0 + 50.0, "{s:?}");
        assert!(ms(s.host_record_ns) >= 6.0 && ms(s.host_record_ns) < 6.0 + 50.0, "{s:?}");
        // Together they are the whole span, nothing counted twice.
        let sum = s.host_record_ns + s.host_submit_ns;
        assert!(sum as u128 <= total.as_nanos(), "{sum} ns charged for {total:?}");
        assert_eq!(s.host_wait_ns, 0);
        // Nothing stays open after the outer phase ends.
        busy(Duration::from_millis(1));
        assert_eq!(stats.snapshot(), s);
    }

    #[test]
    fn a_phase_of_another_device_charges_that_device() {
        let (a, b) = (Arc::new(Stats::default()), Arc::new(Stats::default()));
        {
            let _wait = enter(&a, HostPhase::Wait);
            busy(Duration::from_millis(2));
            let _record = enter(&b, HostPhase::Record);
            busy(Duration::from_millis(3));
        }
        let (a, b) = (a.snapshot(), b.snapshot());
        assert!(a.host_wait_ns >= 2_000_000 && a.host_wait_ns < 50_000_000, "{a:?}");
        assert!(b.host_record_ns >= 3_000_000 && a.host_record_ns == 0 && b.host_wait_ns == 0, "{a:?} {b:?}");
    }
}
