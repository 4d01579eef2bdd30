//! The machinery every optimizer shares: per-parameter state buffers created
//! lazily on the parameter's device, one fused gpu-core kernel
//! ([`wgrad_gpu_core::ops::optim::update`]) per parameter and step, and the
//! state-dict format.
//!
//! # Writing parameters in place, and aliasing
//!
//! The kernel rewrites a parameter's buffer in place. A buffer can be shared
//! by several tensors: `x.requires_grad_()` and `p.detach()` share `x`'s or
//! `p`'s buffer, views (`reshape`, `t()`) share it, and so do tensors made by
//! `Tensor::from_parts` over the same buffer. PyTorch's in-place update is
//! visible through all of them; in wgrad, where `Tensor::clone` is a handle
//! and `detach` is the usual way to keep a snapshot, that would make
//! snapshots change silently. So an optimizer writes in place only when the
//! parameter is the sole holder of its buffer (and its view is dense from
//! offset 0). Otherwise it first gives the parameter a private dense copy
//! (`Tensor::assign`, copy on write) and updates that: other tensors keep
//! the values they saw, and from the next step on the update is in place
//! again. Consequences:
//!
//! * a `detach()`ed copy of a parameter taken before `step` keeps the old
//!   values (unlike PyTorch, where it would follow the parameter);
//! * two different parameter tensors over one buffer (weights tied by
//!   building both on the same buffer) are decoupled by their first step:
//!   tie weights by using one parameter tensor in both places instead;
//! * a graph still alive after `step` (kept with `backward_retain_graph`)
//!   reads the new values through the parameter itself but the old ones
//!   through a view of it that it saved; PyTorch raises an error there, so
//!   do not differentiate a graph again after stepping.
//!
//! The same parameter tensor may appear only once across all groups
//! (PyTorch's rule); a gradient that shares the parameter's buffer is copied
//! before the update, since a buffer cannot be bound both read-only and
//! read-write.
//!
//! # State dict
//!
//! * `kind`: the optimizer's name, checked on load;
//! * `options.<name>`: the optimizer-wide hyper-parameters (betas, eps, ...);
//! * `param_groups.<g>.lr`, `param_groups.<g>.weight_decay`,
//!   `param_groups.<g>.params` (the comma-separated parameter indices);
//! * `state.<i>.step` (metadata) and `state.<i>.<buffer>` (tensors, named as
//!   PyTorch's state keys: `exp_avg`, `exp_avg_sq`, `momentum_buffer`, ...)
//!   for every parameter `i` (counted across groups in order) that has had
//!   an update.
//!
//! Floats are written in their shortest round-trip form and state tensors
//! are copies (on the device, no readback), so saving, loading and resuming
//! reproduce an uninterrupted run bit for bit.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};

use wgrad_autograd::{DType, Error, Result, Tensor};
use wgrad_gpu_core::ops::optim::{scalars, update_row, Rule, SCALAR_WORDS, SKIP_WORD};
use wgrad_gpu_core::ops::{amp, copy, fill};
use wgrad_gpu_core::{Buffer, Layout, Readback};

use super::ParamGroup;
use crate::state::StateDict;

/// A hyper-parameter of an options struct, for saving and loading it.
pub(crate) enum Field<'a> {
    F32(&'a mut f32),
    Bool(&'a mut bool),
}

/// What distinguishes one optimizer from another: its options struct.
pub(crate) trait Algorithm: Clone {
    /// The optimizer's name (messages, the state dict's `kind`).
    const NAME: &'static str;
    /// The fused kernel's rule for these options.
    fn rule(&self) -> Rule;
    /// The value a state buffer starts with.
    fn initial_value(&self, _state: &str) -> f32 {
        0.0
    }
    /// The optimizer-wide hyper-parameters by name (not lr / weight decay,
    /// which belong to the groups).
    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)>;
    /// What is out of range among the hyper-parameters, if anything
    /// (without the optimizer's name): constructors panic with it, as
    /// PyTorch's raise, and `load_state_dict` returns it as an error.
    fn validate(&self) -> std::result::Result<(), String>;
}

/// `return Err(message)` from a `validate` unless `cond` holds (NaN fails
/// comparisons, so a NaN hyper-parameter is refused too).
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        let holds: bool = $cond;
        if !holds {
            return Err(format!($($fmt)+));
        }
    };
}
pub(crate) use ensure;

/// One parameter's optimizer state.
struct Slot {
    /// Updates applied so far (PyTorch's `state["step"]`).
    step: u64,
    /// In [`Rule::state_names`] order, each at least the parameter's size.
    bufs: Vec<Buffer>,
}

/// Groups, options and per-parameter state of one optimizer.
pub(crate) struct Fused<A: Algorithm> {
    pub groups: Vec<ParamGroup>,
    pub opts: A,
    /// By parameter tensor id, so editing the groups keeps the state.
    slots: HashMap<u64, Slot>,
    /// Per group, the device buffer of its parameters' step scalars (one
    /// row each) that the update kernels read.
    rows: Vec<Option<Buffer>>,
    /// Per group, the words its scalar buffer holds, when the host wrote
    /// them and knows: a step whose scalars are the last step's (SGD at a
    /// fixed learning rate) writes nothing. A gate rewrites the buffer on
    /// the device, so a gated step forgets them.
    written: Vec<Option<Vec<u32>>>,
    /// Per group, once a step was gated: the two candidate tables the
    /// gate fills the scalar buffer from (`ops::amp::gate`: the rows for
    /// "the last gated step was applied", then for "it was skipped"), and
    /// the words they hold.
    choices: Vec<Option<(Buffer, Vec<u32>)>>,
    /// Per group, the prepared step's rows for either verdict of the last
    /// gated step (the same when none is in doubt).
    step_words: Vec<[Vec<u32>; 2]>,
    /// Whether the last step was gated: the next one's scalars then go
    /// through the gate's choices, and the last verdict is not waited for.
    gated: bool,
    /// Per group, the parameters [`prepare_step`](Self::prepare_step)
    /// prepared (indices into the group), until [`apply_step`](Self::apply_step).
    prepared: Option<Vec<Vec<usize>>>,
    /// The parameters (ids) the last `apply_step` found without a
    /// gradient: [`prepare_step`](Self::prepare_step) leaves them out.
    gradless: HashSet<u64>,
    /// A loss scaler's state that gates the next `apply_step` (see
    /// [`apply_step_unless_overflow`](Self::apply_step_unless_overflow)).
    gate: Option<Buffer>,
    /// Gated steps whose verdict the host has not taken into its counts,
    /// oldest first (behind a lock so that `state_dict(&self)` can read them).
    pending: std::sync::Mutex<VecDeque<Pending>>,
    /// A gated update recorded into a step graph (the parameters it counted
    /// and a table it marks): each replay of the graph runs it again, which
    /// the next [`prepare_step`](Self::prepare_step) counts as a pending step.
    replay_gated: Option<(Vec<u64>, Buffer)>,
    /// Whether `apply_step` ran since the last prepare (else a step graph
    /// replayed it).
    applied: bool,
}

/// A step the device may have skipped (a loss scaler found an overflow):
/// its counts stand until the verdict, written by the gate into the skip
/// word of the scalar rows, is read.
struct Pending {
    /// The parameters it counted a step for.
    ids: Vec<u64>,
    /// A scalar table the gate marked (its first row's skip word).
    rows: Buffer,
    /// The rows on their way to the host, once asked for (not inside a
    /// step graph being recorded: the next prepare asks).
    read: Option<Readback>,
    /// The verdict, once read.
    verdict: Option<bool>,
}

impl Pending {
    fn new(ids: Vec<u64>, rows: Buffer) -> Pending {
        Pending { ids, rows, read: None, verdict: None }
    }

    /// Starts reading the verdict, unless it is on its way or known.
    fn start(&mut self) {
        if self.read.is_none() && self.verdict.is_none() && !self.rows.device().is_recording() {
            self.read = Some(self.rows.read_async());
        }
    }

    /// Whether the device skipped the step (waits for the verdict once).
    fn skipped(&mut self) -> bool {
        if let Some(v) = self.verdict {
            return v;
        }
        let word = match self.read.take() {
            Some(r) => expect(r.wait()).chunks_exact(4).nth(SKIP_WORD).map(|b| b[0] | b[1] | b[2] | b[3]),
            None => Some(expect(self.rows.to_u32())[SKIP_WORD] as u8),
        };
        let v = word.expect("a whole scalar row") != 0;
        self.verdict = Some(v);
        v
    }
}

fn check_hyper(lr: f32, weight_decay: f32) -> std::result::Result<(), String> {
    ensure!(lr >= 0.0, "invalid learning rate {lr}");
    ensure!(weight_decay >= 0.0, "invalid weight_decay {weight_decay}");
    Ok(())
}

fn check_group(who: &str, g: &ParamGroup) {
    if let Err(m) = check_hyper(g.lr, g.weight_decay) {
        panic!("{who}: {m}");
    }
}

impl<A: Algorithm> Fused<A> {
    /// Checks the options, the groups and that no parameter appears twice.
    pub fn new(groups: Vec<ParamGroup>, opts: A) -> Self {
        if let Err(m) = opts.validate() {
            panic!("{}: {m}", A::NAME);
        }
        let mut seen = HashSet::new();
        for g in &groups {
            check_group(A::NAME, g);
            for p in &g.params {
                assert!(seen.insert(p.id()), "{}: a parameter appears more than once in the parameter groups", A::NAME);
                assert!(p.dtype() == DType::F32, "{}: parameters must be F32, got {:?}", A::NAME, p.dtype());
            }
        }
        Fused {
            groups,
            opts,
            slots: HashMap::new(),
            rows: Vec::new(),
            written: Vec::new(),
            choices: Vec::new(),
            step_words: Vec::new(),
            gated: false,
            prepared: None,
            gradless: HashSet::new(),
            gate: None,
            pending: std::sync::Mutex::new(VecDeque::new()),
            replay_gated: None,
            applied: false,
        }
    }

    /// One fused update of every parameter that has a gradient.
    pub fn step(&mut self) {
        self.prepare(|p| p.grad().is_some());
        self.apply_step();
    }

    /// The host half of a step, for a step graph (`CompiledStep`) that
    /// records the update launches once: counts one more step for every
    /// parameter that requires a gradient (those the coming backward will
    /// reach, less those the last step found without one) and writes this
    /// step's scalars (learning rate, bias corrections) into the group's
    /// scalar buffer on the device. [`apply_step`](Self::apply_step) then
    /// records the updates, which are the same launches every step.
    pub fn prepare_step(&mut self) {
        let gradless = std::mem::take(&mut self.gradless);
        self.prepare(|p| p.requires_grad() && !gradless.contains(&p.id()));
        self.gradless = gradless;
    }

    /// [`step`](Self::step) skipped on the device when `scaler` (a loss
    /// scaler's state, `ops::amp`) holds an overflow.
    pub fn step_unless_overflow(&mut self, scaler: &Buffer) {
        self.prepare(|p| p.grad().is_some());
        self.apply_step_unless_overflow(scaler);
    }

    /// [`apply_step`](Self::apply_step) skipped on the device when
    /// `scaler` holds an overflow: each group's scalar rows are filled and
    /// marked by `ops::amp::gate` before its updates, which then leave
    /// everything as it is. The step's counts stand until the verdict is
    /// read: the rows are on their way to the host (unless the step is
    /// being recorded), and the prepare after next (or a state dict) takes
    /// them; the next step's scalars are written for either verdict, and
    /// its gate picks the right ones on the device.
    pub fn apply_step_unless_overflow(&mut self, scaler: &Buffer) {
        self.gate = Some(scaler.clone());
        self.apply_step();
    }

    /// Takes the verdicts of all but the last `keep` pending steps into the
    /// counts (waiting for them if need be); returns the last verdict taken.
    fn confirm(&mut self, keep: usize) -> Option<bool> {
        let mut last = None;
        loop {
            let next = {
                let pending = self.pending.get_mut().unwrap();
                if pending.len() <= keep {
                    break;
                }
                pending.pop_front()
            };
            let mut p = next.expect("checked above");
            let skipped = p.skipped();
            if skipped {
                for &id in &p.ids {
                    self.unstep(id);
                }
            }
            last = Some(skipped);
        }
        last
    }

    /// How many steps of parameter `id` the pending steps the device
    /// skipped counted (waits for their verdicts).
    fn skipped_pending(&self) -> HashMap<u64, u64> {
        let mut taken_back = HashMap::new();
        for p in self.pending.lock().unwrap().iter_mut() {
            p.start();
            if p.skipped() {
                for &id in &p.ids {
                    *taken_back.entry(id).or_insert(0) += 1;
                }
            }
        }
        taken_back
    }

    /// Takes back one counted step of parameter `id`.
    fn unstep(&mut self, id: u64) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.step -= 1;
            if slot.step == 0 {
                self.slots.remove(&id);
            }
        }
    }

    /// Counts a step for the parameters `stepped` selects and writes their
    /// scalars; creates state buffers on first use. After a gated step the
    /// verdicts of all but that one are taken into the counts (the one
    /// before it was read long ago), and this step's scalars are written
    /// for both of its verdicts, into the gate's choices.
    fn prepare(&mut self, stepped: impl Fn(&Tensor) -> bool) {
        if !self.applied {
            // A step graph replayed the recorded gated update.
            if let Some((ids, rows)) = &self.replay_gated {
                self.pending.get_mut().unwrap().push_back(Pending::new(ids.clone(), rows.clone()));
            }
        }
        self.applied = false;
        self.confirm(usize::from(self.gated));
        let doubt: HashSet<u64> = {
            let pending = self.pending.get_mut().unwrap();
            pending.iter_mut().for_each(Pending::start);
            pending.back().map(|p| p.ids.iter().copied().collect()).unwrap_or_default()
        };
        let rule = self.opts.rule();
        let names = rule.state_names();
        let n = self.groups.len();
        self.rows.resize(n, None);
        self.written.resize(n, None);
        self.choices.resize(n, None);
        self.step_words.resize(n, Default::default());
        let (mut prepared, mut fresh) = (Vec::new(), false);
        for (gi, group) in self.groups.iter().enumerate() {
            check_group(A::NAME, group);
            let mut words = [0, 1].map(|_| vec![0u32; group.params.len().max(1) * SCALAR_WORDS]);
            let (mut chosen, mut last) = (Vec::new(), [None, None]);
            for (i, p) in group.params.iter().enumerate() {
                if !stepped(p) {
                    continue;
                }
                let slot = match self.slots.entry(p.id()) {
                    Entry::Occupied(slot) => slot.into_mut(),
                    Entry::Vacant(_) if p.numel() == 0 => continue,
                    Entry::Vacant(v) => v.insert(Slot {
                        step: 0,
                        bufs: names
                            .iter()
                            .map(|s| expect(fill::fill(&p.device(), p.numel(), self.opts.initial_value(s))))
                            .collect(),
                    }),
                };
                slot.step += 1;
                // The step counts if the last gated step was applied, and
                // if it was skipped; parameters stepped together share
                // their scalars, computed once.
                let steps = [slot.step, slot.step - u64::from(doubt.contains(&p.id()))];
                for ((w, t), last) in words.iter_mut().zip(steps).zip(&mut last) {
                    let row = match *last {
                        Some((lt, row)) if lt == t => row,
                        _ => scalars(&rule, group.lr, group.weight_decay, t),
                    };
                    *last = Some((t, row));
                    w[i * SCALAR_WORDS..(i + 1) * SCALAR_WORDS].copy_from_slice(&row);
                }
                chosen.push(i);
            }
            if let Some(p) = group.params.first() {
                let len = 4 * words[0].len() as u64;
                if self.rows[gi].as_ref().is_none_or(|b| b.len_bytes() != len || b.device() != &p.device()) {
                    self.rows[gi] = Some(expect(Buffer::alloc(&p.device(), len)));
                    self.written[gi] = None;
                    self.choices[gi] = None;
                    fresh = true;
                }
                if self.gated {
                    write_choices(&mut self.choices[gi], &words, &p.device());
                } else {
                    let rows = self.rows[gi].as_ref().expect("allocated above");
                    write_rows(rows, &mut self.written[gi], &words[0]);
                }
            }
            self.step_words[gi] = words;
            prepared.push(chosen);
        }
        if self.gated && fresh && !doubt.is_empty() {
            // A new scalar buffer holds no verdict for the gate to pick by:
            // the last one is waited for, and both choices are its rows.
            let v = usize::from(self.confirm(0).unwrap_or(false));
            for ((choices, words), group) in self.choices.iter_mut().zip(&mut self.step_words).zip(&self.groups) {
                if let Some(p) = group.params.first() {
                    words[1 - v] = words[v].clone();
                    write_choices(choices, words, &p.device());
                }
            }
        }
        self.prepared = Some(prepared);
    }

    /// The device half of a step: one fused update per parameter that
    /// [`prepare_step`](Self::prepare_step) prepared, reading its scalars
    /// from the group's buffer. A prepared parameter that has no gradient
    /// after all is not updated and its step is not counted.
    ///
    /// # Panics
    /// When nothing was prepared.
    pub fn apply_step(&mut self) {
        let _scope = wgrad_gpu_core::profile::scope(|| format!("{} step", A::NAME));
        let prepared = self.prepared.take().unwrap_or_else(|| panic!("{}: apply_step without prepare_step", A::NAME));
        let rule = self.opts.rule();
        let gate = self.gate.take();
        self.applied = true;
        match (&gate, self.gated) {
            (None, true) => {
                // Scalars written for either verdict, and no gate to pick:
                // this step waits for the last one.
                let skipped = self.confirm(0).unwrap_or(false);
                for ((rows, written), words) in self.rows.iter().zip(&mut self.written).zip(&self.step_words) {
                    if let Some(rows) = rows {
                        write_rows(rows, written, &words[usize::from(skipped)]);
                    }
                }
                self.gated = false;
            }
            (Some(_), false) => {
                // The first gated step: its scalars went to the rows, and
                // the gate takes them from its choices.
                for ((choices, rows), words) in self.choices.iter_mut().zip(&self.rows).zip(&self.step_words) {
                    if let Some(rows) = rows {
                        write_choices(choices, words, rows.device());
                    }
                }
                self.gated = true;
            }
            _ => {}
        }
        let params = self.groups.iter().map(|g| g.params.len()).sum();
        let (mut stepped, mut marked, mut gradless) = (Vec::with_capacity(params), None, Vec::new());
        for (gi, ((group, chosen), rows)) in self.groups.iter().zip(prepared).zip(&self.rows).enumerate() {
            if let (Some(state), Some(rows)) = (&gate, rows) {
                self.written[gi] = None;
                let (choices, _) = self.choices[gi].as_ref().expect("written above");
                expect(amp::gate(rows, choices, group.params.len(), (SCALAR_WORDS, SKIP_WORD), state));
                marked.get_or_insert_with(|| rows.clone());
            }
            for i in chosen {
                let p = &group.params[i];
                let Some(grad) = p.grad() else {
                    gradless.push(p.id());
                    continue;
                };
                stepped.push(p.id());
                self.gradless.remove(&p.id());
                let n = p.numel();
                assert_eq!(
                    grad.shape(),
                    p.shape(),
                    "{}: gradient shape {:?} differs from parameter shape {:?}",
                    A::NAME,
                    grad.shape(),
                    p.shape()
                );
                let param = exclusive_buffer(p);
                let slot = &self.slots[&p.id()];
                let (gb, gl) = grad.buffer_and_layout();
                let gb =
                    if gl.is_contiguous() && !gb.same_as(&param) { gb } else { expect(copy::contiguous(&gb, &gl)) };
                // Inline: this runs per parameter and step.
                let state: smallvec::SmallVec<[&Buffer; 4]> = slot.bufs.iter().collect();
                let rows = rows.as_ref().expect("prepared groups have a scalar buffer");
                expect(update_row(&rule, (rows, i), &param, &gb, &state, n));
            }
        }
        for id in gradless {
            // Not stepped after all: its count back, and no state made for
            // it if this was its first step (as `step`).
            self.unstep(id);
            self.gradless.insert(id);
        }
        self.replay_gated = None;
        if let Some(rows) = marked {
            if rows.device().is_recording() {
                self.replay_gated = Some((stepped.clone(), rows.clone()));
            }
            let mut p = Pending::new(stepped, rows);
            p.start();
            self.pending.get_mut().unwrap().push_back(p);
        }
    }

    /// See the module documentation for the format. A gated step the
    /// device skipped is not counted (its verdict is read first).
    pub fn state_dict(&self) -> StateDict {
        let skipped = self.skipped_pending();
        let mut sd = StateDict::new();
        sd.meta.insert("kind".into(), A::NAME.into());
        let mut opts = self.opts.clone();
        for (name, field) in opts.fields() {
            let v = match field {
                Field::F32(v) => format!("{v:?}"),
                Field::Bool(v) => format!("{v:?}"),
            };
            sd.meta.insert(format!("options.{name}"), v);
        }
        let names = self.opts.rule().state_names();
        let mut index = 0;
        for (gi, g) in self.groups.iter().enumerate() {
            sd.meta.insert(format!("param_groups.{gi}.lr"), format!("{:?}", g.lr));
            sd.meta.insert(format!("param_groups.{gi}.weight_decay"), format!("{:?}", g.weight_decay));
            let ids: Vec<String> = (index..index + g.params.len()).map(|i| i.to_string()).collect();
            sd.meta.insert(format!("param_groups.{gi}.params"), ids.join(","));
            for p in &g.params {
                let taken_back = skipped.get(&p.id()).copied().unwrap_or(0);
                if let Some(slot) = self.slots.get(&p.id()).filter(|s| s.step > taken_back) {
                    sd.meta.insert(format!("state.{index}.step"), (slot.step - taken_back).to_string());
                    let layout = Layout::contiguous(&p.shape());
                    for (name, b) in names.iter().zip(&slot.bufs) {
                        let copy = expect(copy::contiguous(b, &layout));
                        sd.tensors.insert(
                            format!("state.{index}.{name}"),
                            Tensor::from_parts(copy, layout.clone(), DType::F32),
                        );
                    }
                }
                index += 1;
            }
        }
        sd
    }

    /// Restores hyper-parameters, group lrs / weight decays and state; on any
    /// error nothing is changed.
    pub fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        let who = A::NAME;
        let kind: String = get(sd, "kind")?;
        if kind != who {
            return Err(Error::invalid(who, format!("the state was saved by a {kind} optimizer, not a {who}")));
        }
        let saved_groups = (0..).take_while(|g| sd.meta.contains_key(&format!("param_groups.{g}.lr"))).count();
        if saved_groups != self.groups.len() {
            return Err(Error::invalid(
                who,
                format!("the state has {saved_groups} parameter groups, the optimizer {}", self.groups.len()),
            ));
        }
        let mut group_hyper = Vec::new();
        for (gi, g) in self.groups.iter().enumerate() {
            let params: String = get(sd, &format!("param_groups.{gi}.params"))?;
            let count = params.split(',').filter(|s| !s.is_empty()).count();
            if count != g.params.len() {
                return Err(Error::invalid(
                    who,
                    format!("parameter group {gi} has {} parameters, the saved group {count}", g.params.len()),
                ));
            }
            let lr: f32 = get(sd, &format!("param_groups.{gi}.lr"))?;
            let wd: f32 = get(sd, &format!("param_groups.{gi}.weight_decay"))?;
            // Checked here: the next step would panic on them.
            check_hyper(lr, wd).map_err(|m| saved_out_of_range(who, &m))?;
            group_hyper.push((lr, wd));
        }
        let mut opts = self.opts.clone();
        for (name, field) in opts.fields() {
            let key = format!("options.{name}");
            match field {
                Field::F32(v) => *v = get(sd, &key)?,
                Field::Bool(v) => *v = get(sd, &key)?,
            }
        }
        let names = opts.rule().state_names();
        let params: Vec<&Tensor> = self.groups.iter().flat_map(|g| &g.params).collect();
        let mut slots = HashMap::new();
        for (i, p) in params.iter().enumerate() {
            let Some(step) = sd.meta.get(&format!("state.{i}.step")) else { continue };
            let step: u64 = step.parse().map_err(|_| malformed(&format!("state.{i}.step"), step))?;
            if step == u64::MAX {
                // The next update counts one more.
                return Err(saved_out_of_range(who, &format!("step count {step} of parameter {i}")));
            }
            let mut bufs = Vec::new();
            for name in names {
                let key = format!("state.{i}.{name}");
                let t = sd
                    .tensors
                    .get(&key)
                    .ok_or_else(|| Error::invalid(who, format!("state lacks the tensor {key:?}")))?;
                if t.shape() != p.shape() || t.dtype() != DType::F32 {
                    return Err(Error::invalid(
                        who,
                        format!("{key:?} is {:?} {:?} but parameter {i} is F32 {:?}", t.dtype(), t.shape(), p.shape()),
                    ));
                }
                bufs.push(to_device_copy(t, p)?);
            }
            slots.insert(p.id(), Slot { step, bufs });
        }
        for key in sd.tensors.keys().chain(sd.meta.keys()).filter(|k| k.starts_with("state.")) {
            let mut parts = key.splitn(3, '.').skip(1);
            let (i, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let known = i.parse::<usize>().is_ok_and(|i| i < params.len()) && (name == "step" || names.contains(&name));
            if !known || !sd.meta.contains_key(&format!("state.{i}.step")) {
                return Err(Error::invalid(
                    who,
                    format!("unexpected state entry {key:?} for {} parameters", params.len()),
                ));
            }
        }
        opts.validate().map_err(|m| saved_out_of_range(who, &m))?;
        self.opts = opts;
        for (g, (lr, wd)) in self.groups.iter_mut().zip(group_hyper) {
            g.lr = lr;
            g.weight_decay = wd;
        }
        self.slots = slots;
        // The loaded counts are what they are: no earlier verdict applies.
        self.pending.get_mut().unwrap().clear();
        Ok(())
    }
}

/// Writes `words` into a group's scalar buffer unless it holds them.
fn write_rows(rows: &Buffer, written: &mut Option<Vec<u32>>, words: &[u32]) {
    if written.as_deref() != Some(words) {
        expect(rows.write_bytes(bytemuck_words(words).as_slice()));
        *written = Some(words.to_vec());
    }
}

/// Writes both candidates into a group's gate choices (made on `device`
/// when missing or of another size) unless they hold them.
fn write_choices(choices: &mut Option<(Buffer, Vec<u32>)>, words: &[Vec<u32>; 2], device: &wgrad_gpu_core::Device) {
    let len = words[0].len() + words[1].len();
    match choices {
        Some((b, held))
            if held.len() == len
                && b.device() == device
                && held[..words[0].len()] == words[0][..]
                && held[words[0].len()..] == words[1][..] => {}
        Some((b, held)) if held.len() == len && b.device() == device => {
            *held = words.concat();
            expect(b.write_bytes(bytemuck_words(held).as_slice()));
        }
        _ => {
            let both = words.concat();
            let b = expect(Buffer::alloc(device, 4 * len as u64));
            expect(b.write_bytes(bytemuck_words(&both).as_slice()));
            *choices = Some((b, both));
        }
    }
}

fn bytemuck_words(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The tensor's buffer, safe to write in place: its own when the tensor is
/// the only holder and its view is dense from offset 0, else a private copy
/// that the tensor is switched to. Parameters (see the module documentation)
/// and gradients (backward may hand one buffer to several gradients, which
/// `GradScaler` would otherwise unscale twice) are updated in place through it.
pub(crate) fn exclusive_buffer(p: &Tensor) -> Buffer {
    let (b, l) = p.buffer_and_layout();
    // Two handles: the parameter's and `b`.
    if l.is_contiguous() && b.handle_count() == 2 {
        return b;
    }
    let private = expect(copy::contiguous(&b, &l));
    drop(b);
    p.assign(&Tensor::from_parts(private.clone(), Layout::contiguous(&p.shape()), DType::F32));
    private
}

/// A copy of a saved state tensor on the parameter's device (through the
/// host when it was loaded on another device).
fn to_device_copy(t: &Tensor, p: &Tensor) -> Result<Buffer> {
    let dev = p.device();
    let (b, l) = t.buffer_and_layout();
    if t.device() == dev {
        copy::contiguous(&b, &l)
    } else {
        Buffer::from_f32(&dev, &t.try_to_vec()?)
    }
}

fn saved_out_of_range(who: &'static str, what: &str) -> Error {
    Error::invalid(who, format!("{what} in the saved state"))
}

fn malformed(key: &str, value: &str) -> Error {
    Error::invalid("load_state_dict", format!("entry {key:?} = {value:?} is malformed"))
}

fn get<T: std::str::FromStr>(sd: &StateDict, key: &str) -> Result<T> {
    let s =
        sd.meta.get(key).ok_or_else(|| Error::invalid("load_state_dict", format!("state lacks the entry {key:?}")))?;
    s.parse().map_err(|_| malformed(key, s))
}

#[track_caller]
fn expect<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("optimizer step: {e}"))
}

/// Declares an optimizer type over [`Fused`]: the struct, its constructors
/// and its [`Optimizer`](super::Optimizer) implementation.
macro_rules! fused_optimizer {
    ($(#[$doc:meta])* $name:ident, $opts:ident) => {
        $(#[$doc])*
        pub struct $name {
            inner: $crate::optim::fused::Fused<$opts>,
        }

        impl $name {
            /// One group over `params` with learning rate `lr` and default options.
            pub fn new(params: Vec<wgrad_autograd::Tensor>, lr: f32) -> Self {
                Self::with_options(params, lr, $opts::default())
            }

            /// One group over `params` with learning rate `lr`; the group's
            /// weight decay is `opts.weight_decay`.
            pub fn with_options(params: Vec<wgrad_autograd::Tensor>, lr: f32, opts: $opts) -> Self {
                let wd = opts.weight_decay;
                Self::with_groups(vec![$crate::optim::ParamGroup::new(params, lr, wd)], opts)
            }

            /// Several groups, each with its own lr and weight decay
            /// (`opts.weight_decay` is not used).
            ///
            /// # Panics
            /// On out-of-range hyper-parameters, a parameter that appears
            /// twice, or a non-F32 parameter.
            pub fn with_groups(groups: Vec<$crate::optim::ParamGroup>, opts: $opts) -> Self {
                $name { inner: $crate::optim::fused::Fused::new(groups, opts) }
            }

            /// The optimizer-wide hyper-parameters.
            pub fn options(&self) -> &$opts {
                &self.inner.opts
            }
        }

        impl $crate::optim::Optimizer for $name {
            fn step(&mut self) {
                self.inner.step()
            }
            fn prepare_step(&mut self) {
                self.inner.prepare_step()
            }
            fn apply_step(&mut self) {
                self.inner.apply_step()
            }
            fn step_unless_overflow(&mut self, scaler: &wgrad_gpu_core::Buffer) -> bool {
                self.inner.step_unless_overflow(scaler);
                true
            }
            fn apply_step_unless_overflow(&mut self, scaler: &wgrad_gpu_core::Buffer) -> bool {
                self.inner.apply_step_unless_overflow(scaler);
                true
            }
            fn groups(&self) -> &[$crate::optim::ParamGroup] {
                &self.inner.groups
            }
            fn groups_mut(&mut self) -> &mut [$crate::optim::ParamGroup] {
                &mut self.inner.groups
            }
            fn state_dict(&self) -> $crate::state::StateDict {
                self.inner.state_dict()
            }
            fn load_state_dict(&mut self, state: &$crate::state::StateDict) -> wgrad_autograd::Result<()> {
                self.inner.load_state_dict(state)
            }
        }
    };
}
pub(crate) use fused_optimizer;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::AdamOptions;
    use wgrad_gpu_core::ops::amp::{state_words, FOUND_INF};
    use wgrad_gpu_core::Device;

    /// A gated step's verdict is not needed to prepare the next step: it
    /// stays pending (not read) through the next prepare, whose scalars
    /// are written for both outcomes, and is taken into the counts by the
    /// prepare after that. An overflowed first step leaves Adam's count
    /// one short, as PyTorch's.
    #[test]
    fn the_last_gated_verdict_is_read_a_step_late() {
        let dev = Device::cpu();
        let p = Tensor::from_vec(&[1.0, 2.0], &[2], &dev).requires_grad_();
        let mut opt = Fused::new(vec![ParamGroup::new(vec![p.clone()], 0.1, 0.0)], AdamOptions::default());
        let scaler = |overflow: bool| {
            let mut w = state_words(1.0, 0);
            w[FOUND_INF] = if overflow { 1.0f32.to_bits() } else { 0 };
            Buffer::from_u32(&dev, &w).unwrap()
        };
        let verdicts = |opt: &mut Fused<AdamOptions>| -> Vec<Option<bool>> {
            opt.pending.get_mut().unwrap().iter().map(|p| p.verdict).collect()
        };
        for (step, overflow) in [true, false, false].into_iter().enumerate() {
            p.set_grad(Some(Tensor::from_vec(&[0.5, -0.5], &[2], &dev)));
            opt.prepare_step();
            match step {
                0 => assert!(verdicts(&mut opt).is_empty()),
                // The first step's verdict: not read by this prepare.
                1 => assert_eq!(verdicts(&mut opt), vec![None]),
                // Taken now; the second step's is pending, unread.
                _ => {
                    assert_eq!(verdicts(&mut opt), vec![None]);
                    assert_eq!(opt.slots[&p.id()].step, 2, "the skipped first step is not counted");
                }
            }
            opt.apply_step_unless_overflow(&scaler(overflow));
        }
        let sd = opt.state_dict();
        assert_eq!(sd.meta["state.0.step"], "2", "three steps, the first skipped");
    }
}
