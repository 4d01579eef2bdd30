//! Replay: a batch that repeats one recorded before reuses that batch's
//! recording decisions instead of making them again.
//!
//! A training loop records the same batch in every step: the same kernels,
//! on the same pooled buffers (the pool hands a step its buffers in the
//! same order), in the same order. Recording one launch afresh costs a
//! pipeline lookup (a key built and hashed), a bind-group lookup (another),
//! and for the elementwise runs the fuser's planning and the generation of
//! each fused kernel's WGSL, whose pipeline is then found by hashing that
//! source. So each batch is kept as a *plan*: per position in the batch (a
//! launch, or a settled elementwise run), what the launch was (its key) and
//! what recording it decided (the pipeline, the bind group, the parameter
//! chunk; for a run, the merges and the generated kernels with their
//! pipelines). When the next batch's launch at the same position has the
//! same key, the recorder takes the plan's decisions and only writes the
//! launch's parameters and `set_pipeline` (skipped when unchanged) +
//! `set_bind_group` + `dispatch` into the open compute pass.
//!
//! Every entry is checked against the launch it stands for, so a replay
//! binds exactly what recording afresh would: the same kernel, buffers,
//! windows, grid and parameter chunk; a fused run's plan is reused only
//! for a run of the same structure (nodes, element counts, index maps,
//! which launch reads which one's output, which outputs a tensor still
//! holds, which buffers exceed the binding limit). Parameters are never
//! taken from the plan: each launch's block is the one its op wrote now,
//! so the scalars that change between steps (Adam's step count, a learning
//! rate, a dropout seed, a loss scale) are current in a replayed step, and
//! results are bit-identical to recording afresh.
//!
//! A launch that differs (new shapes, another graph, a buffer the pool did
//! not hand back) is recorded afresh: the batch *falls back* from that
//! launch on (later positions still replay where they match), and at its
//! submit the batch is kept as a new plan beside the old ones (at most
//! [`MAX_PLANS`], least recently used dropped), so a loop alternating two
//! kinds of batch (a training and an evaluation step) replays both.
//! Not replayed: launches that read operand textures (CPU adapters, where
//! the views bound change from launch to launch), launches while the
//! profiler runs (each gets a timed pass of its own), the CPU backend
//! (nothing is recorded there). `WGRAD_REPLAY=0` or `Device::set_replay`
//! turns it off; `Stats` counts plans captured, batches and launches
//! replayed, and fallbacks, and [`Device::replay_fallback`] says why the
//! last batch that fell back did.
//!
//! Plans keep their buffers alive (as the bind-group cache does): they are
//! dropped with the buffer pool (`Device::empty_cache`, a new binding limit).
//!
//! [`Device::replay_fallback`]: crate::Device::replay_fallback

use std::sync::Arc;

use super::fused_wgsl::Generated;
use super::fusion::{held, Deferred, Fusable};
use super::handle::BufferHandle;
use super::launch::Launch;
use super::pipelines::Kernel;
use super::tails::TailPlan;
use super::window::Window;

/// Most plans kept (distinct kinds of batch a loop records).
pub(crate) const MAX_PLANS: usize = 8;

/// What recording one launch decided.
pub(crate) struct LaunchEntry {
    shader: &'static str,
    entry: &'static str,
    constants: Vec<(&'static str, f64)>,
    /// Inputs, then outputs.
    buffers: Vec<wgpu::Buffer>,
    windows: Vec<Option<Window>>,
    workgroups: u32,
    pub kernel: Arc<Kernel>,
    /// The bind group and the parameter chunk it binds; `None` for a launch
    /// that reads operand textures (its bind group is made per launch).
    pub bound: Option<(wgpu::BindGroup, wgpu::Buffer)>,
}

impl LaunchEntry {
    /// The entry of launch `l` (binding `windows`), recorded with `kernel`
    /// and `bound`.
    pub fn new(
        l: &Launch,
        windows: &[Option<Window>],
        kernel: Arc<Kernel>,
        bound: Option<(wgpu::BindGroup, wgpu::Buffer)>,
    ) -> LaunchEntry {
        LaunchEntry {
            shader: l.shader,
            entry: l.entry,
            constants: l.constants.to_vec(),
            buffers: l.inputs.iter().chain(l.outputs).map(|&b| b.clone()).collect(),
            windows: windows.to_vec(),
            workgroups: l.workgroups,
            kernel,
            bound,
        }
    }

    /// The windows the launch bound.
    pub fn windows(&self) -> &[Option<Window>] {
        &self.windows
    }

    /// What differs between `l` and the launch this entry recorded, for
    /// [`Device::replay_fallback`](crate::Device::replay_fallback).
    fn differs(&self, l: &Launch, windows: &[Option<Window>]) -> String {
        if (self.shader, self.entry) != (l.shader, l.entry) {
            return format!("the plan launched `{}:{}` there", self.shader, self.entry);
        }
        let bound: Vec<&wgpu::Buffer> = l.inputs.iter().chain(l.outputs).copied().collect();
        let buffers: Vec<String> = (0..bound.len().min(self.buffers.len()))
            .filter(|&i| self.buffers[i] != *bound[i])
            .map(|i| i.to_string())
            .collect();
        let what = [
            (self.constants[..] != *l.constants, "constants".to_string()),
            (self.workgroups != l.workgroups, format!("workgroups {} -> {}", self.workgroups, l.workgroups)),
            (self.windows[..] != *windows, "windows".to_string()),
            (self.buffers.len() != bound.len(), "binding count".to_string()),
            (!buffers.is_empty(), format!("buffers bound at {}", buffers.join(", "))),
        ];
        what.into_iter().filter(|(differs, _)| *differs).map(|(_, w)| w).collect::<Vec<_>>().join("; ")
    }

    /// Whether `l` (binding `windows`) is the launch this entry recorded.
    fn matches(&self, l: &Launch, windows: &[Option<Window>]) -> bool {
        self.shader == l.shader
            && self.entry == l.entry
            && self.workgroups == l.workgroups
            && self.constants[..] == *l.constants
            && self.windows[..] == *windows
            && self.buffers.len() == l.inputs.len() + l.outputs.len()
            && self.buffers.iter().zip(l.inputs.iter().chain(l.outputs)).all(|(a, &b)| a == b)
    }
}

/// Where a deferred launch's input comes from, within its run.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Source {
    /// The output of the run's launch with this index.
    Produced(usize),
    /// A buffer no launch of the run writes.
    Outside,
}

/// What the fuser's plan depends on, for one deferred launch.
#[derive(Debug)]
struct DeferredKey {
    shader: &'static str,
    entry: &'static str,
    constants: Vec<(&'static str, f64)>,
    fusable: Fusable,
    sources: Vec<Source>,
    /// Whether a fused kernel would have to store its output (see
    /// `fusion::merges`).
    held: bool,
    /// Bit `i`: binding `i` (inputs, then the output) is past the binding limit.
    over_limit: u32,
}

fn source(run: &[Deferred], i: usize, b: &BufferHandle) -> Source {
    match run[..i].iter().rposition(|p| p.output.id() == b.id()) {
        Some(p) => Source::Produced(p),
        None => Source::Outside,
    }
}

/// `d`'s constants (a deferred product's are its store's).
fn constants(d: &Deferred) -> &[(&'static str, f64)] {
    d.product.as_ref().map_or(&d.constants[..], |p| p.constants())
}

fn over_limit(d: &Deferred, limit: u64) -> u32 {
    d.inputs.iter().chain([&d.output]).enumerate().fold(0, |m, (k, b)| m | (u32::from(b.len_bytes() > limit) << k))
}

impl DeferredKey {
    fn of(run: &[Deferred], i: usize, limit: u64) -> DeferredKey {
        let d = &run[i];
        DeferredKey {
            shader: d.shader,
            entry: d.entry,
            constants: constants(d).to_vec(),
            fusable: d.fusable.clone(),
            sources: d.inputs.iter().map(|b| source(run, i, b)).collect(),
            held: held(d),
            over_limit: over_limit(d, limit),
        }
    }

    /// `*self == DeferredKey::of(run, i, limit)`, without building that key.
    fn matches(&self, run: &[Deferred], i: usize, limit: u64) -> bool {
        let d = &run[i];
        self.shader == d.shader
            && self.entry == d.entry
            && self.constants[..] == *constants(d)
            && self.fusable.node == d.fusable.node
            && self.fusable.n == d.fusable.n
            && self.fusable.access == d.fusable.access
            && self.sources.len() == d.inputs.len()
            && self.sources.iter().zip(&d.inputs).all(|(&s, b)| s == source(run, i, b))
            && self.held == held(d)
            && self.over_limit == over_limit(d, limit)
    }
}

/// How one launch of a settled run is encoded.
pub(crate) enum Root {
    /// Merged into a consumer: nothing of its own.
    Absorbed,
    /// Its own recorded kernel.
    Alone(Arc<Kernel>),
    /// A generated kernel computing it with the producers it absorbed.
    Fused(Box<Generated>, Arc<Kernel>),
    /// A generated kernel computing it by itself: a pad (which has no
    /// kernel of its own) or a launch binding a buffer past the binding
    /// limit (run in ranges). Its leaves index the one-launch run.
    AloneGenerated(Box<Generated>, Arc<Kernel>),
    /// A deferred product, storing through the tail it merged (`tails.rs`),
    /// and the kernel that tail runs on.
    Product(Box<TailPlan>, Arc<Kernel>),
}

/// What settling one elementwise run decided.
pub(crate) struct SettleEntry {
    /// What the decisions depend on (empty while replay is off: nothing
    /// will be matched against them).
    keys: Vec<DeferredKey>,
    /// Per launch of the run, in order.
    pub roots: Vec<Root>,
}

impl SettleEntry {
    /// The decisions `roots` for a run, without the keys to match it by.
    pub fn new(roots: Vec<Root>) -> SettleEntry {
        SettleEntry { keys: Vec::new(), roots }
    }

    /// Adds the keys of `run` (settled under binding limit `limit`).
    pub fn keyed(mut self, run: &[Deferred], limit: u64) -> SettleEntry {
        self.keys = (0..run.len()).map(|i| DeferredKey::of(run, i, limit)).collect();
        self
    }

    fn matches(&self, run: &[Deferred], limit: u64) -> bool {
        self.keys.len() == run.len() && self.keys.iter().enumerate().all(|(i, k)| k.matches(run, i, limit))
    }
}

/// One position of a plan.
pub(crate) enum Entry {
    Launch(LaunchEntry),
    Settle(SettleEntry),
}

struct Plan {
    entries: Vec<Arc<Entry>>,
    /// When it was last followed (a batch count), for dropping the least recently used.
    used: u64,
}

/// How a submitted batch was recorded.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Nothing was recorded through the plans (replay off, nothing launched).
    Nothing,
    /// Every position matched one plan, whole (and was replayed, but for
    /// texture-reading launches).
    Replayed,
    /// Recorded afresh, no plan had its first position: kept as a new plan.
    Captured,
    /// Replayed a plan up to a position that differed (the reason), then
    /// recorded afresh: kept as a new plan.
    FellBack(String),
}

/// The plans of one device and the batch being recorded against them
/// (kept in the batch, under its lock).
pub(crate) struct Replay {
    /// Whether batches are replayed (`WGRAD_REPLAY`, `Device::set_replay`).
    pub on: bool,
    plans: Vec<Plan>,
    /// The plan the batch is following (the last one whose entry matched).
    following: Option<usize>,
    /// The batch's entries so far (replayed or recorded).
    trace: Vec<Arc<Entry>>,
    /// Positions of the batch replayed.
    hits: usize,
    /// Positions that matched the plan but are recorded afresh anyway
    /// (texture-reading launches).
    skipped: usize,
    /// Why the batch first differed from the plan it followed.
    missed: Option<String>,
    /// Why the last batch that fell back did (see [`Outcome::FellBack`]).
    pub last_fallback: Option<String>,
    batches: u64,
}

impl Default for Replay {
    fn default() -> Replay {
        Replay {
            on: crate::env::switch("WGRAD_REPLAY", true),
            plans: Vec::new(),
            following: None,
            trace: Vec::new(),
            hits: 0,
            skipped: 0,
            missed: None,
            last_fallback: None,
            batches: 0,
        }
    }
}

impl Replay {
    /// The entry at this batch's next position that `matches`: the
    /// followed plan's, else another plan's (which is followed from now on).
    fn find(&mut self, matches: impl Fn(&Entry) -> bool) -> Option<Arc<Entry>> {
        let at = self.trace.len();
        let hit = |plan: &Plan| plan.entries.get(at).filter(|e| matches(e)).cloned();
        if let Some(e) = self.following.and_then(|p| hit(&self.plans[p])) {
            return Some(e);
        }
        let (p, e) = self.plans.iter().enumerate().find_map(|(p, plan)| Some((p, hit(plan)?)))?;
        self.following = Some(p);
        Some(e)
    }

    /// Notes that this position differs from the followed plan's: `what`
    /// was recorded here, and `how` says what the plan's entry there differs in.
    fn miss(&mut self, what: impl FnOnce() -> String, how: impl FnOnce(&Entry) -> String) {
        if self.missed.is_some() {
            return;
        }
        if let Some(p) = self.following {
            let at = self.trace.len();
            let why = match self.plans[p].entries.get(at) {
                None => "the batch is longer than the plan".to_string(),
                Some(e) => how(e),
            };
            self.missed = Some(format!("position {at}: {} ({why})", what()));
        }
    }

    /// The plan's entry for launch `l` at the batch's next position, if it
    /// can be replayed. A launch that reads operand textures matches its
    /// entry but is recorded afresh (its views change).
    pub fn launch(&mut self, l: &Launch, windows: &[Option<Window>]) -> Option<Arc<Entry>> {
        let found = self.find(|e| matches!(e, Entry::Launch(e) if e.matches(l, windows)));
        match found {
            None => self.miss(
                || format!("launch `{}:{}`", l.shader, l.entry),
                |e| match e {
                    Entry::Launch(e) => e.differs(l, windows),
                    Entry::Settle(_) => "the plan settled an elementwise run there".to_string(),
                },
            ),
            Some(e) if matches!(&*e, Entry::Launch(e) if e.bound.is_none()) => self.skipped += 1,
            Some(e) => return Some(e),
        }
        None
    }

    /// The plan's entry for settling `run` at the batch's next position.
    pub fn settle(&mut self, run: &[Deferred], limit: u64) -> Option<Arc<Entry>> {
        let found = self.find(|e| matches!(e, Entry::Settle(s) if s.matches(run, limit)));
        if found.is_none() {
            self.miss(
                || format!("an elementwise run of {} launches", run.len()),
                |e| match e {
                    Entry::Launch(e) => format!("the plan launched `{}:{}` there", e.shader, e.entry),
                    Entry::Settle(_) => "the plan's run there has another structure".to_string(),
                },
            );
        }
        found
    }

    /// Notes that the plan's entry for the next position matched but could
    /// not be replayed (`why`).
    pub fn refused(&mut self, why: &str) {
        self.miss(|| why.to_string(), |_| "the plan's entry matched".to_string());
    }

    /// Appends the entry the batch's next position was recorded (or replayed) with.
    pub fn push(&mut self, entry: Arc<Entry>, replayed: bool) {
        self.hits += usize::from(replayed);
        self.trace.push(entry);
    }

    /// Ends the batch at its submit: keeps it as a plan unless it replayed one whole.
    pub fn finish(&mut self) -> Outcome {
        let trace = std::mem::take(&mut self.trace);
        let (hits, missed, following) = (self.hits + self.skipped, self.missed.take(), self.following.take());
        (self.hits, self.skipped) = (0, 0);
        self.batches += 1;
        if trace.is_empty() {
            return Outcome::Nothing;
        }
        if let Some(p) = following {
            self.plans[p].used = self.batches;
            if hits == trace.len() && self.plans[p].entries.len() == trace.len() {
                return Outcome::Replayed;
            }
        }
        if self.plans.len() >= MAX_PLANS {
            let oldest = (0..self.plans.len()).min_by_key(|&p| self.plans[p].used).expect("plans");
            self.plans.swap_remove(oldest);
        }
        self.plans.push(Plan { entries: trace, used: self.batches });
        match (following, missed) {
            (None, _) => Outcome::Captured,
            (Some(_), Some(why)) => Outcome::FellBack(why),
            (Some(_), None) => {
                Outcome::FellBack(format!("the plan is longer than the batch ({hits} positions replayed)"))
            }
        }
    }

    /// Forgets every plan (and the buffers they kept alive).
    pub fn clear(&mut self) {
        self.plans.clear();
        self.following = None;
    }
}
