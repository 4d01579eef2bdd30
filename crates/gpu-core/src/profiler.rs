//! The step profiler's recording side: the per-device [`Profiler`] that
//! launches and CPU kernels report to, the thread's scope and FLOP notes,
//! and the [`Profile`] report it builds. It sits below the device, the
//! recorder and the ops, which all report to it; the public face (and how
//! to read a profile) is `profile.rs`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use web_time::Instant;

/// Devices with a profile running, process-wide: the fast path of every hook.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SCOPES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    static PENDING_FLOPS: Cell<u64> = const { Cell::new(0) };
    static PENDING_ALLOC: Cell<u64> = const { Cell::new(0) };
    static HOST_BYTES: Cell<u64> = const { Cell::new(0) };
}

/// True while any device is profiling (cheap: one relaxed load).
#[inline]
pub(crate) fn any_active() -> bool {
    ACTIVE.load(Relaxed) > 0
}

/// One recorded kernel launch.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    /// Kernel family: `shader:entry` on a GPU, `cpu:<op file>` on the CPU backend.
    pub family: String,
    /// The op (or scope) that launched it; the family when nobody named it.
    pub op: String,
    /// Bytes of the buffers bound (GPU) or touched (CPU): read + written, an upper estimate.
    pub bytes_moved: u64,
    /// Bytes allocated on this thread since the previous launch (its outputs, mostly).
    pub bytes_allocated: u64,
    /// Floating-point operations the op declared (0 when it declares none).
    pub flops: u64,
    /// Start in µs from the first timed launch of the profile, when timed.
    pub start_us: Option<f64>,
    /// Duration in µs on the device (GPU timestamps or the host clock on the CPU backend).
    pub dur_us: Option<f64>,
}

/// What a profiled region did, launch by launch.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Device name, for the report's heading.
    pub device: String,
    /// Every launch in recording order.
    pub launches: Vec<Launch>,
    /// Whether launch durations were measured.
    pub timed: bool,
}

/// Per-device profiler state, shared by the device and its GPU context.
#[derive(Default)]
pub(crate) struct Profiler {
    active: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    launches: Vec<Launch>,
    /// Launches from here on have no op name yet (see `label_pending`).
    unlabeled_from: usize,
    /// Whether each launch was named by a scope (those keep their name).
    scoped: Vec<bool>,
    /// Launches the fuser merged into another one (dropped from the report).
    merged: Vec<bool>,
    started: Option<Instant>,
}

impl Profiler {
    #[inline]
    pub fn is_active(&self) -> bool {
        any_active() && self.active.load(Relaxed)
    }

    pub fn start(&self) {
        let mut s = self.state.lock().unwrap();
        *s = State { started: Some(Instant::now()), ..State::default() };
        if !self.active.swap(true, Relaxed) {
            ACTIVE.fetch_add(1, Relaxed);
        }
        PENDING_FLOPS.with(|f| f.set(0));
        PENDING_ALLOC.with(|a| a.set(0));
    }

    /// Ends recording without building a report (a region that panicked).
    pub fn stop_quietly(&self) {
        if self.active.swap(false, Relaxed) {
            ACTIVE.fetch_sub(1, Relaxed);
        }
        if let Ok(mut s) = self.state.lock() {
            *s = State::default();
        }
    }

    pub fn stop(&self, device: String) -> Profile {
        if self.active.swap(false, Relaxed) {
            ACTIVE.fetch_sub(1, Relaxed);
        }
        let mut s = self.state.lock().unwrap();
        let merged = std::mem::take(&mut s.merged);
        let mut launches: Vec<Launch> =
            std::mem::take(&mut s.launches).into_iter().zip(merged).filter(|(_, m)| !m).map(|(l, _)| l).collect();
        // GPU timestamps count from an arbitrary origin: start at the first launch.
        let origin = launches.iter().filter_map(|l| l.start_us).fold(f64::INFINITY, f64::min);
        if origin.is_finite() {
            launches.iter_mut().for_each(|l| l.start_us = l.start_us.map(|t| t - origin));
        }
        let timed = !launches.is_empty() && launches.iter().all(|l| l.dur_us.is_some());
        Profile { device, launches, timed }
    }

    /// Records a launch; returns its index (for GPU timestamps filled in later).
    pub fn record(&self, family: String, bytes_moved: u64) -> usize {
        let flops = PENDING_FLOPS.with(|f| f.replace(0));
        let bytes_allocated = PENDING_ALLOC.with(|a| a.replace(0));
        let scope = SCOPES.with(|s| s.borrow().last().cloned());
        let mut s = self.state.lock().unwrap();
        s.scoped.push(scope.is_some());
        s.merged.push(false);
        let op = scope.unwrap_or_else(|| family.clone());
        s.launches.push(Launch { family, op, bytes_moved, bytes_allocated, flops, start_us: None, dur_us: None });
        s.launches.len() - 1
    }

    /// Folds the records of launches the fuser merged (`absorbed`, in
    /// evaluation order) into the record of the launch that computes them
    /// (`root`): one launch of family `family` binding `bytes_moved` bytes,
    /// whose op names the ops of the chain (`add+relu`), with their FLOPs
    /// and allocations summed.
    pub fn merge(&self, root: usize, absorbed: &[usize], family: String, bytes_moved: u64) {
        let mut s = self.state.lock().unwrap();
        // Records of a profile that has ended meanwhile are gone.
        if absorbed.iter().chain([&root]).any(|&i| i >= s.launches.len()) {
            return;
        }
        let mut ops: Vec<String> = Vec::new();
        let (mut flops, mut bytes_allocated) = (0, 0);
        for &i in absorbed.iter().chain([&root]) {
            let l = &s.launches[i];
            if ops.last() != Some(&l.op) {
                ops.push(l.op.clone());
            }
            flops += l.flops;
            bytes_allocated += l.bytes_allocated;
            if i != root {
                s.merged[i] = true;
            }
        }
        let l = &mut s.launches[root];
        *l = Launch { family, op: ops.join("+"), bytes_moved, bytes_allocated, flops, ..l.clone() };
    }

    /// Records a CPU-backend kernel that ran from `t0` until now.
    pub fn record_host(&self, family: String, bytes_moved: u64, t0: Instant) {
        let i = self.record(family, bytes_moved);
        let mut s = self.state.lock().unwrap();
        let origin = s.started.unwrap_or(t0);
        let l = &mut s.launches[i];
        l.start_us = Some(t0.saturating_duration_since(origin).as_secs_f64() * 1e6);
        l.dur_us = Some(t0.elapsed().as_secs_f64() * 1e6);
    }

    /// Fills in GPU times (ns since an arbitrary origin) of recorded launches.
    pub fn set_times(&self, times: &[(usize, f64, f64)]) {
        let mut s = self.state.lock().unwrap();
        for &(i, begin_ns, end_ns) in times {
            if let Some(l) = s.launches.get_mut(i) {
                l.start_us = Some(begin_ns / 1e3);
                l.dur_us = Some((end_ns - begin_ns).max(0.0) / 1e3);
            }
        }
    }

    pub(crate) fn label(&self, op: &str) {
        let mut s = self.state.lock().unwrap();
        let from = s.unlabeled_from;
        let n = s.launches.len();
        for i in from..n {
            if !s.scoped[i] {
                s.launches[i].op = op.to_string();
            }
        }
        s.unlabeled_from = n;
    }
}

/// Declares the FLOPs of the next launch on this thread (matmul, conv, attention).
#[inline]
pub fn annotate_flops(flops: u64) {
    if any_active() {
        PENDING_FLOPS.with(|f| f.set(f.get() + flops));
    }
}

/// Counts an allocation against the next launch on this thread.
#[inline]
pub(crate) fn note_alloc(bytes: u64) {
    if any_active() {
        PENDING_ALLOC.with(|a| a.set(a.get() + bytes));
    }
}

/// Counts host words a CPU kernel touches (the CPU backend's bytes moved).
#[inline]
pub(crate) fn note_host_bytes(bytes: u64) {
    if any_active() {
        HOST_BYTES.with(|b| b.set(b.get() + bytes));
    }
}

/// Takes the host bytes counted since the last call.
pub(crate) fn take_host_bytes() -> u64 {
    HOST_BYTES.with(|b| b.replace(0))
}

/// Names the launches recorded on this thread until the guard drops; the
/// innermost scope wins. Nearly free when no profile runs.
#[must_use = "the scope ends when the guard drops"]
pub struct Scope {
    pushed: bool,
}

/// Opens a [`Scope`] named `name` (e.g. `"conv2d backward"`, `"optimizer"`).
pub fn scope(name: impl FnOnce() -> String) -> Scope {
    if !any_active() {
        return Scope { pushed: false };
    }
    let name = name();
    SCOPES.with(|s| s.borrow_mut().push(name));
    Scope { pushed: true }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if self.pushed {
            SCOPES.with(|s| s.borrow_mut().pop());
        }
    }
}

/// Totals of a group of launches.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// Kernel launches.
    pub launches: usize,
    /// Bytes allocated.
    pub bytes_allocated: u64,
    /// Bytes read + written (estimate).
    pub bytes_moved: u64,
    /// Declared FLOPs.
    pub flops: u64,
    /// Device time in µs (0 when untimed).
    pub time_us: f64,
}

impl Totals {
    fn add(&mut self, l: &Launch) {
        self.launches += 1;
        self.bytes_allocated += l.bytes_allocated;
        self.bytes_moved += l.bytes_moved;
        self.flops += l.flops;
        self.time_us += l.dur_us.unwrap_or(0.0);
    }
}

impl Profile {
    /// Totals per kernel family, largest time (or launch count) first.
    pub fn by_family(&self) -> Vec<(String, Totals)> {
        self.group(|l| &l.family)
    }

    /// Totals per op name, largest time (or launch count) first.
    pub fn by_op(&self) -> Vec<(String, Totals)> {
        self.group(|l| &l.op)
    }

    /// Totals of everything.
    pub fn total(&self) -> Totals {
        let mut t = Totals::default();
        self.launches.iter().for_each(|l| t.add(l));
        t
    }

    fn group(&self, key: impl Fn(&Launch) -> &String) -> Vec<(String, Totals)> {
        let mut map: HashMap<&String, Totals> = HashMap::new();
        for l in &self.launches {
            map.entry(key(l)).or_default().add(l);
        }
        let mut v: Vec<(String, Totals)> = map.into_iter().map(|(k, t)| (k.clone(), t)).collect();
        v.sort_by(|a, b| b.1.time_us.total_cmp(&a.1.time_us).then(b.1.launches.cmp(&a.1.launches)).then(a.0.cmp(&b.0)));
        v
    }

    /// The launches as a Chrome-trace / Perfetto JSON document (one complete
    /// event per launch; untimed launches get zero length at their index).
    pub fn chrome_trace(&self) -> String {
        let mut out = String::from("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[");
        for (i, l) in self.launches.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "{{\"name\":{},\"cat\":{},\"ph\":\"X\",\"pid\":1,\"tid\":1,\"ts\":{:.3},\"dur\":{:.3},\"args\":{{\"bytes_moved\":{},\"bytes_allocated\":{},\"flops\":{}}}}}",
                json_string(&l.op),
                json_string(&l.family),
                l.start_us.unwrap_or(i as f64),
                l.dur_us.unwrap_or(0.0),
                l.bytes_moved,
                l.bytes_allocated,
                l.flops
            ));
        }
        out.push_str("]}");
        out
    }

    /// Writes [`chrome_trace`](Self::chrome_trace) to `path` (open it in
    /// <https://ui.perfetto.dev> or `chrome://tracing`).
    pub fn write_chrome_trace(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        std::fs::write(path, self.chrome_trace())
    }

    fn table(&self, f: &mut fmt::Formatter<'_>, title: &str, rows: &[(String, Totals)]) -> fmt::Result {
        let total = self.total();
        writeln!(
            f,
            "{title:<44} {:>8} {:>10} {:>6} {:>10} {:>10} {:>9} {:>9}",
            "launches", "time ms", "%", "alloc MB", "moved MB", "GFLOP", "GFLOP/s"
        )?;
        for (name, t) in rows.iter().chain(std::iter::once(&("total".to_string(), total.clone()))) {
            let (time, pct, rate) = if self.timed {
                let pct = if total.time_us > 0.0 { 100.0 * t.time_us / total.time_us } else { 0.0 };
                let rate = if t.time_us > 0.0 && t.flops > 0 {
                    format!("{:.1}", t.flops as f64 / t.time_us / 1e3)
                } else {
                    "-".into()
                };
                (format!("{:.2}", t.time_us / 1e3), format!("{pct:.1}"), rate)
            } else {
                ("-".into(), "-".into(), "-".into())
            };
            let flops = if t.flops > 0 { format!("{:.3}", t.flops as f64 / 1e9) } else { "-".into() };
            let name: String =
                if name.chars().count() > 44 { name.chars().take(43).chain(['…']).collect() } else { name.clone() };
            writeln!(
                f,
                "{name:<44} {:>8} {time:>10} {pct:>6} {:>10.2} {:>10.2} {flops:>9} {rate:>9}",
                t.launches,
                t.bytes_allocated as f64 / 1e6,
                t.bytes_moved as f64 / 1e6
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.timed { "device time from timestamps" } else { "no device timer: launches and bytes only" };
        writeln!(f, "profile on {} ({} launches; {how})", self.device, self.launches.len())?;
        self.table(f, "kernel family", &self.by_family())?;
        writeln!(f)?;
        self.table(f, "op", &self.by_op())
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
