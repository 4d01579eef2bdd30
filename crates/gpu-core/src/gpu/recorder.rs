//! The recorder: how the [`GpuContext`] records launches, copies, uploads
//! and readbacks into its pending [`Batch`] (`batch.rs`), settles the
//! fuser's runs, replays earlier plans and submits.

use smallvec::SmallVec;

use super::batch::{fold_grid, recorded, Batch, Binds, Chunk, Timing, MAX_PENDING_DISPATCHES, PROFILE_QUERIES};
use super::context::GpuContext;
use super::fused_wgsl::{self, Generated};
use super::fusion::{self, Deferred};
use super::host_clock;
use super::launch::Launch;
use super::pipelines::Kernel;
use super::replay::{Entry, LaunchEntry, Outcome, Root, SettleEntry};
use super::split::{self, LeafRead};
use super::tails::{self, TailPlan};
use super::tape::Command;
use super::window::{binding, Window};
use crate::stats::HostPhase;
use crate::{Error, Result};

/// Longest run of deferred elementwise launches before the fuser settles it
/// (bounds the planner's quadratic scans and the memory the run pins).
const MAX_RUN: usize = 64;
/// Most storage buffers (inputs and outputs) of one fused kernel (also
/// capped by the adapter's limit).
const MAX_BUFFERS: usize = 16;

/// What one encoded launch binds and runs.
struct Encode<'a> {
    kernel: &'a Kernel,
    /// Its profile record, while profiling.
    record: Option<usize>,
    label: &'static str,
    params: &'a [u32],
    inputs: &'a [&'a wgpu::Buffer],
    outputs: &'a [&'a wgpu::Buffer],
    /// Per binding (inputs then outputs), a window to bind instead of the
    /// whole buffer; missing entries bind the whole buffer.
    windows: &'a [Option<Window>],
    workgroups: u32,
}

impl GpuContext {
    /// Records one kernel launch into the pending batch, after the deferred
    /// elementwise run it may depend on.
    pub fn launch(&self, l: &Launch) -> Result<()> {
        self.launch_windows(l, &[])
    }

    /// [`launch`](Self::launch) binding `windows[i]` (when `Some`) instead
    /// of the whole buffer `i` (inputs, then outputs).
    pub(crate) fn launch_windows(&self, l: &Launch, windows: &[Option<Window>]) -> Result<()> {
        if l.workgroups == 0 {
            return Ok(());
        }
        let _host = host_clock::enter(&self.stats, HostPhase::Record);
        let mut batch = self.batch.lock().unwrap();
        self.settle(&mut batch)?;
        batch.dispatches += 1;
        let replay = self.replaying(&batch);
        if replay {
            if let Some(entry) = batch.replay.launch(l, windows) {
                let Entry::Launch(e) = &*entry else { unreachable!("a launch's entry") };
                if self.encode_replayed(&mut batch, e, l)? {
                    batch.replay.push(entry, true);
                    self.stats().launch_replayed();
                    return self.submit_if_full(&mut batch);
                }
                batch.replay.refused("the parameter chunk differs");
            }
        }
        let kernel = self.pipelines.get(&self.device, l.shader, l.entry, l.constants, l.inputs.len(), l.outputs.len());
        let record = self.profiler.is_active().then(|| {
            let bytes = l.inputs.iter().chain(l.outputs).map(|b| b.size()).sum();
            self.profiler.record(format!("{}:{}", l.shader, l.entry), bytes)
        });
        let bound = self.encode(
            &mut batch,
            &Encode {
                kernel: &kernel,
                record,
                label: l.shader,
                params: l.params,
                inputs: l.inputs,
                outputs: l.outputs,
                windows,
                workgroups: l.workgroups,
            },
        )?;
        if replay {
            batch.replay.push(std::sync::Arc::new(Entry::Launch(LaunchEntry::new(l, windows, kernel, bound))), false);
        }
        self.submit_if_full(&mut batch)
    }

    /// Whether launches recorded now go through the plans: replay is on
    /// and the profiler is not timing each launch in a pass of its own.
    fn replaying(&self, batch: &Batch) -> bool {
        batch.replay.on && !self.profiler.is_active()
    }

    /// Encodes launch `l` with the pipeline and bind group a plan recorded
    /// for it (`e`, which matched it), writing only its parameters; false
    /// (nothing encoded) when its parameter block lands in another chunk
    /// than the one that bind group binds.
    fn encode_replayed(&self, batch: &mut Batch, e: &LaunchEntry, l: &Launch) -> Result<bool> {
        let Some((bind_group, chunk_buffer)) = &e.bound else { return Ok(false) };
        if batch.next_params_chunk() != Some(chunk_buffer) {
            return Ok(false);
        }
        let (chunk, offset) = batch.push_params(&self.device, l.params);
        debug_assert!(batch.chunks[chunk].buffer == *chunk_buffer, "the parameter block went to another chunk");
        for o in l.outputs {
            batch.staging.written(o);
        }
        let binds = Binds { inputs: l.inputs, outputs: l.outputs, windows: e.windows(), views: &[] };
        batch.dispatch(&self.device, &e.kernel, (bind_group, binds), offset, l.workgroups);
        self.stats().dispatched();
        Ok(true)
    }

    /// Submits the batch when it holds [`MAX_PENDING_DISPATCHES`] launches
    /// or its timestamp queries are used up.
    pub(crate) fn submit_if_full(&self, batch: &mut Batch) -> Result<()> {
        let queries_full = batch.timings.first().is_some_and(|t| 2 * t.records.len() as u32 >= PROFILE_QUERIES);
        if batch.dispatches >= MAX_PENDING_DISPATCHES || queries_full {
            self.submit(batch)?;
        }
        Ok(())
    }

    /// Records an elementwise launch the fuser may merge with its neighbours
    /// (see `fusion.rs`); with fusion off it is encoded at once, as [`launch`](Self::launch) would.
    pub(crate) fn defer(&self, mut d: Deferred) -> Result<()> {
        if d.workgroups == 0 {
            return Ok(());
        }
        let _host = host_clock::enter(&self.stats, HostPhase::Record);
        // A launch past the binding limit runs in ranges (`split.rs`); one
        // whose reads cannot be cut into ranges is this op's error now, not
        // the fused kernel's at a later settle (a buffer's logical size is
        // above the limit exactly when its backing is; see
        // `GpuContext::backing_size`).
        let limit = self.binding_limit();
        let big = d.inputs.iter().chain([&d.output]).find(|b| b.len_bytes() > limit);
        if let Some(big) = big.filter(|_| d.product.is_none()) {
            let half = d.fusable.node == fusion::Node::Widen;
            let reads: Vec<LeafRead> =
                d.fusable.access.iter().map(|a| LeafRead { maps: vec![a.clone()], half }).collect();
            let narrow = d.fusable.node == fusion::Node::Narrow;
            if split::plan(d.fusable.n, narrow, &reads, limit, self.window_align()).is_none() {
                return Err(Error::LimitExceeded {
                    what: format!(
                        "kernel `{}` reading a view of which even {} outputs reach across more than the binding limit",
                        d.shader,
                        self.window_align() / 4
                    ),
                    needed: big.len_bytes(),
                    limit: "max_storage_buffer_binding_size",
                    allowed: limit,
                });
            }
        }
        d.record = self.profiler.is_active().then(|| {
            let bytes = d.inputs.iter().chain([&d.output]).map(|b| super::pool::size_class(b.len_bytes())).sum();
            self.profiler.record(format!("{}:{}", d.shader, d.entry), bytes)
        });
        let mut batch = self.batch.lock().unwrap();
        batch.dispatches += 1;
        if !self.fusion_enabled() {
            self.settle(&mut batch)?;
            let alone = std::slice::from_ref(&d);
            self.encode_root(&mut batch, alone, 0, &self.alone_root(alone))?;
            return self.submit_if_full(&mut batch);
        }
        batch.deferred.push(d);
        if batch.dispatches >= MAX_PENDING_DISPATCHES {
            self.submit(&mut batch)?;
        } else if batch.deferred.len() >= MAX_RUN {
            self.settle(&mut batch)?;
        }
        Ok(())
    }

    /// Encodes the deferred run now (without submitting).
    pub(crate) fn settle_now(&self) -> Result<()> {
        let mut batch = self.batch.lock().unwrap();
        self.settle(&mut batch)
    }

    /// Plans and encodes the deferred run: each launch that no consumer
    /// absorbs becomes one launch, fused with the producers it absorbed.
    pub(crate) fn settle(&self, batch: &mut Batch) -> Result<()> {
        if batch.deferred.is_empty() {
            return Ok(());
        }
        let run = std::mem::take(&mut batch.deferred);
        let limit = self.binding_limit();
        let replay = self.replaying(batch);
        let (entry, replayed) = match replay.then(|| batch.replay.settle(&run, limit)).flatten() {
            Some(entry) => (entry, true),
            None => {
                let planned = SettleEntry::new(self.plan_run(&run));
                (std::sync::Arc::new(Entry::Settle(if replay { planned.keyed(&run, limit) } else { planned })), false)
            }
        };
        let Entry::Settle(plan) = &*entry else { unreachable!("a settle's entry") };
        for (root, how) in plan.roots.iter().enumerate() {
            self.encode_root(batch, &run, root, how)?;
            if replayed && matches!(how, Root::Fused(..) | Root::AloneGenerated(..) | Root::Product(..)) {
                self.stats().launch_replayed();
            }
        }
        if replay {
            batch.replay.push(entry, replayed);
        }
        // Clearing the run drops the last handles of the absorbed
        // intermediates, which were never backed by device memory; its
        // vector is kept for the next run (no allocation per run).
        let mut run = run;
        run.clear();
        if batch.deferred.is_empty() {
            batch.deferred = run;
        }
        Ok(())
    }

    /// The fuser's decisions for `run`: each launch that no consumer
    /// absorbs becomes one launch, fused with the producers it absorbed.
    fn plan_run(&self, run: &[Deferred]) -> Vec<Root> {
        let mut into = fusion::merges(run);
        let (tails, absorbed) = tails::tails(run, &mut into);
        let max_buffers = (self.limits.max_storage_buffers_per_shader_stage as usize).min(MAX_BUFFERS);
        // Planned from the last launch back: cutting an oversized kernel
        // frees only earlier producers, which are then planned in turn.
        let mut plans: Vec<Option<Generated>> = (0..run.len()).map(|_| None).collect();
        for root in (0..run.len()).rev() {
            if into[root].is_none() && !absorbed[root] && tails[root].is_none() {
                plans[root] = fusion::plan(run, &mut into, root, |into, expr| {
                    self.generate(run, into, (root, expr), max_buffers)
                });
            }
        }
        plans
            .into_iter()
            .zip(tails)
            .enumerate()
            .map(|(root, (plan, tail))| match plan {
                _ if into[root].is_some() || absorbed[root] => Root::Absorbed,
                _ if tail.is_some() => self.product_root(&run[root], tail.unwrap_or_default()),
                None => self.alone_root(std::slice::from_ref(&run[root])),
                Some(g) => {
                    let kernel = self.pipelines.generated(&self.device, &g.body, g.leaves.len(), 1 + g.stored.len());
                    Root::Fused(Box::new(g), kernel)
                }
            })
            .collect()
    }

    /// How the one deferred launch in `alone` runs by itself: its own
    /// kernel, or, when it binds a buffer past the binding limit (or is a
    /// pad, which has no kernel of its own), a generated kernel, which runs
    /// in ranges when it must.
    fn alone_root(&self, alone: &[Deferred]) -> Root {
        let d = &alone[0];
        if d.product.is_some() {
            return self.product_root(d, TailPlan::default());
        }
        let limit = self.binding_limit();
        let pad = matches!(d.fusable.node, fusion::Node::Pad { .. });
        if !pad && d.inputs.iter().chain([&d.output]).all(|b| b.len_bytes() <= limit) {
            return Root::Alone(self.pipelines.get(&self.device, d.shader, d.entry, &d.constants, d.inputs.len(), 1));
        }
        let into = [None];
        let expr = fusion::expression(alone, &into, 0);
        let g = self
            .generate(alone, &into, (0, &expr), MAX_BUFFERS)
            .expect("wgrad internal: one elementwise launch fits a generated kernel");
        let kernel = self.pipelines.generated(&self.device, &g.body, g.leaves.len(), 1 + g.stored.len());
        Root::AloneGenerated(Box::new(g), kernel)
    }

    /// Encodes launch `root` of `run` as `how` says.
    fn encode_root(&self, batch: &mut Batch, run: &[Deferred], root: usize, how: &Root) -> Result<()> {
        match how {
            Root::Absorbed => Ok(()),
            Root::Alone(kernel) => self.encode_deferred(batch, &run[root], kernel),
            Root::Fused(g, kernel) => self.encode_fused(batch, run, root, g, kernel),
            Root::AloneGenerated(g, kernel) => self.encode_fused(batch, std::slice::from_ref(&run[root]), 0, g, kernel),
            Root::Product(plan, kernel) => self.encode_product(batch, run, root, plan, kernel),
        }
    }

    /// How deferred product `d` runs with `plan`'s tail: the plan and its
    /// kernel, looked up once (a replayed step reuses both).
    fn product_root(&self, d: &Deferred, plan: TailPlan) -> Root {
        let store = d.product.as_ref().expect("wgrad internal: a product's root without its store");
        let l = store.launch(&plan.tail);
        let outputs = 1 + usize::from(l.binds_pre);
        let kernel = self.pipelines.get(&self.device, l.shader, l.entry, &l.constants, l.inputs, outputs);
        Root::Product(Box::new(plan), kernel)
    }

    /// Encodes product `p` of `run` storing through its tail: one launch
    /// writing the last merged reader's output (the product's own when
    /// none), the values before the activation where a tensor holds them,
    /// the tail's operands in the slots the store names.
    fn encode_product(
        &self,
        batch: &mut Batch,
        run: &[Deferred],
        p: usize,
        plan: &TailPlan,
        kernel: &Kernel,
    ) -> Result<()> {
        let d = &run[p];
        let store = d.product.as_ref().expect("wgrad internal: a product's root without its store");
        let l = store.launch(&plan.tail);
        let mut inputs: SmallVec<[&wgpu::Buffer; 6]> = d.inputs.iter().map(|b| b.wgpu()).collect();
        inputs.resize(l.inputs, inputs[0]);
        for (at, operand) in [(l.residual_slot, plan.residual), (l.relu_grad_slot, plan.relu_grad)] {
            if let (Some(at), Some((c, slot))) = (at, operand) {
                inputs[at] = run[c].inputs[slot].wgpu();
            }
        }
        let out = plan.absorbed.last().map_or(&d.output, |&c| &run[c].output).wgpu();
        let mut outputs: SmallVec<[&wgpu::Buffer; 2]> = smallvec::smallvec![out];
        if l.binds_pre {
            outputs.push(plan.pre.map_or(out, |q| run[q].output.wgpu()));
        }
        if let Some(r) = d.record.filter(|_| !plan.absorbed.is_empty()) {
            // The merged readers' profile records join the product's.
            // (An operand's widen too: its launch vanished with them.)
            let merged = || plan.operands.iter().chain(&plan.absorbed);
            let absorbed: SmallVec<[usize; 2]> = merged().filter_map(|&c| run[c].record).collect();
            let family = merged()
                .fold(format!("{}:{}", l.shader, l.entry), |family, &c| family + "+" + &run[c].fusable.node.name());
            let bytes = inputs.iter().chain(&outputs).map(|b| b.size()).sum();
            self.profiler.merge(r, &absorbed, family, bytes);
        }
        let encode = Encode {
            kernel,
            record: d.record,
            label: l.shader,
            params: &l.params,
            inputs: &inputs,
            outputs: &outputs,
            windows: &l.windows,
            workgroups: l.workgroups,
        };
        self.encode(batch, &encode).map(drop)
    }

    /// Encodes a deferred launch as recorded (its own kernel).
    fn encode_deferred(&self, batch: &mut Batch, d: &Deferred, kernel: &Kernel) -> Result<()> {
        debug_assert!(!matches!(d.fusable.node, fusion::Node::Pad { .. }), "a pad has no kernel of its own");
        let inputs: Vec<&wgpu::Buffer> = d.inputs.iter().map(|b| b.wgpu()).collect();
        self.encode(
            batch,
            &Encode {
                kernel,
                record: d.record,
                label: d.shader,
                params: &d.params,
                inputs: &inputs,
                outputs: &[d.output.wgpu()],
                windows: &[],
                workgroups: d.workgroups,
            },
        )
        .map(drop)
    }

    /// The kernel for `expr`: the plain one, or, when a buffer it binds is
    /// past the binding limit, the ranged one (`fused_wgsl.rs`), generated
    /// only then so that work that fits pays nothing for ranges.
    fn generate(
        &self,
        run: &[Deferred],
        into: &[Option<fusion::Merge>],
        (root, expr): (usize, &fusion::Expr),
        max_buffers: usize,
    ) -> Option<Generated> {
        let n = run[root].fusable.n;
        let g = fused_wgsl::generate(run, into, expr, n, (max_buffers, false))?;
        let limit = self.binding_limit();
        let inputs = g.leaves.iter().map(|&(l, s)| &run[l].inputs[s]);
        let outputs = [root].into_iter().chain(g.stored.iter().copied()).map(|l| &run[l].output);
        if inputs.chain(outputs).all(|b| b.len_bytes() <= limit) {
            return Some(g);
        }
        fused_wgsl::generate(run, into, expr, n, (max_buffers, true))
    }

    /// Encodes a generated kernel computing `run[root]` with its absorbed
    /// producers: one launch, or one per range when a buffer it binds is
    /// past the binding limit (`split.rs`).
    fn encode_fused(
        &self,
        batch: &mut Batch,
        run: &[Deferred],
        root: usize,
        g: &Generated,
        kernel: &Kernel,
    ) -> Result<()> {
        if self.fusion_debug > 0 {
            eprintln!("wgrad fuser: {} ({} inputs, {} elements)", g.name, g.leaves.len(), run[root].fusable.n);
            if self.fusion_debug > 1 {
                eprintln!("{}", g.source());
            }
        }
        let inputs: SmallVec<[&wgpu::Buffer; 8]> = g.leaves.iter().map(|&(l, s)| run[l].inputs[s].wgpu()).collect();
        let outputs: SmallVec<[&wgpu::Buffer; 4]> =
            [root].iter().chain(&g.stored).map(|&l| run[l].output.wgpu()).collect();
        if let Some(r) = run[root].record {
            let absorbed: Vec<usize> =
                g.members.iter().filter(|&&m| m != root).filter_map(|&m| run[m].record).collect();
            let bytes = inputs.iter().chain(&outputs).map(|b| b.size()).sum();
            self.profiler.merge(r, &absorbed, format!("fused:{}", g.name), bytes);
        }
        let limit = self.binding_limit();
        if !g.ranged {
            return self
                .encode(
                    batch,
                    &Encode {
                        kernel,
                        record: run[root].record,
                        label: "wgrad fused",
                        params: &g.params,
                        inputs: &inputs,
                        outputs: &outputs,
                        windows: &[],
                        workgroups: super::workgroups::groups(g.threads, 256),
                    },
                )
                .map(drop);
        }
        let n = run[root].fusable.n;
        let ranges =
            split::plan(n, g.narrow, &g.reads, limit, self.window_align()).ok_or_else(|| Error::LimitExceeded {
                what: format!("fused kernel `{}` reading a view too wide to split", g.name),
                needed: inputs.iter().chain(&outputs).map(|b| b.size()).max().unwrap_or(0),
                limit: "max_storage_buffer_binding_size",
                allowed: limit,
            })?;
        for (k, r) in ranges.iter().enumerate() {
            let mut params = g.params.clone();
            (params[0], params[1]) = (r.len as u32, r.start as u32);
            for (&w, &(_, shift)) in g.shift_words.iter().zip(&r.leaves) {
                params[w] = shift as u32;
            }
            let windows: Vec<Option<Window>> = r
                .leaves
                .iter()
                .map(|l| Some(l.0))
                .chain([Some(r.out)])
                .chain(g.stored.iter().map(|_| Some(r.stored)))
                .collect();
            if k > 0 {
                // The first range was counted when the launch was recorded.
                batch.dispatches += 1;
            }
            let threads = if g.narrow { r.len.div_ceil(2) } else { r.len };
            self.encode(
                batch,
                &Encode {
                    kernel,
                    record: if k == 0 { run[root].record } else { None },
                    label: "wgrad fused",
                    params: &params,
                    inputs: &inputs,
                    outputs: &outputs,
                    windows: &windows,
                    workgroups: super::workgroups::groups(threads, 256),
                },
            )?;
        }
        Ok(())
    }

    /// Binds and dispatches one launch in the batch; returns the bind group
    /// and parameter chunk it bound, unless it reads operand textures (whose
    /// bind groups are made per launch). The caller submits a full batch
    /// ([`submit_if_full`](Self::submit_if_full)).
    fn encode(&self, batch: &mut Batch, l: &Encode) -> Result<Option<(wgpu::BindGroup, wgpu::Buffer)>> {
        let (kernel, record) = (l.kernel, l.record);
        // Checked before anything is recorded: a buffer past the binding
        // limit bound whole is the error of an op that cannot split its
        // work, not a wgpu validation failure at submit.
        let limit = self.binding_limit();
        // Texture operands are copied in first, unless a texture still
        // holds them (see `texture_operands.rs`; an input bound twice, a
        // placeholder for an unused one, is copied once). (Empty, so no
        // allocation, for the kernels that read buffers only.)
        let mut views: Vec<Option<wgpu::TextureView>> = Vec::new();
        if kernel.textures != 0 {
            views.resize(l.inputs.len(), None);
            batch.staging.next_launch();
        }
        for i in (0..l.inputs.len()).filter(|i| kernel.textures >> i & 1 == 1) {
            let (view, copied) = batch.stage_texture(&self.device, l.inputs[i], l.windows.get(i).copied().flatten());
            self.stats().texture_staged(copied);
            views[i] = Some(view);
        }
        // What the launch writes is no longer what any texture holds.
        for o in l.outputs {
            batch.staging.written(o);
        }
        let (chunk, offset) = batch.push_params(&self.device, l.params);
        let params = batch.chunks[chunk].buffer.clone();
        let window = |i: usize| l.windows.get(i).copied().flatten();
        let create = || -> Result<wgpu::BindGroup> {
            let bindings: Vec<wgpu::BindingResource> = l
                .inputs
                .iter()
                .chain(l.outputs)
                .enumerate()
                .map(|(i, b)| {
                    let (view, w) = (views.get(i).and_then(Option::as_ref), window(i));
                    if view.is_none() && w.is_none() && b.size() > limit {
                        return Err(Error::LimitExceeded {
                            what: format!(
                                "kernel `{}` binding one of its buffers whole (this op does not split its work)",
                                l.label
                            ),
                            needed: b.size(),
                            limit: "max_storage_buffer_binding_size",
                            allowed: limit,
                        });
                    }
                    debug_assert!(
                        w.is_none_or(|w| w.size <= limit && w.offset + w.size <= b.size()),
                        "{}: window {w:?}",
                        l.label
                    );
                    Ok(binding(b, w, view))
                })
                .collect::<Result<_>>()?;
            Ok(kernel.bind_group(&self.device, l.label, &params, bindings))
        };
        // Texture views change from launch to launch: those bind groups are made afresh.
        let (bind_group, created) = if kernel.textures == 0 {
            let bound = l.inputs.iter().chain(l.outputs).enumerate().map(|(i, b)| (*b, window(i)));
            batch.bind_groups.get_or_create(&kernel.layout, &params, bound, create)?
        } else {
            (create()?, true)
        };
        if created {
            self.stats().bind_group_created();
        }
        // Timestamps around this launch's pass, when profiling on an adapter that has them.
        let timed = record.filter(|_| self.features.contains(wgpu::Features::TIMESTAMP_QUERY)).map(|r| {
            if batch.timings.last().is_none_or(|t| 2 * t.records.len() as u32 >= PROFILE_QUERIES) {
                batch.timings.push(Timing::new(&self.device));
            }
            let t = batch.timings.last_mut().expect("pushed above");
            t.records.push(r);
            (t.set.clone(), 2 * (t.records.len() as u32 - 1))
        });
        if let Some((set, i)) = &timed {
            if let Some(t) = &mut batch.tape {
                t.refuse("the profiler timed its launches");
            }
            // A profiled launch gets a pass of its own, bracketed by timestamps.
            let timestamp_writes = Some(wgpu::ComputePassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: Some(*i),
                end_of_pass_write_index: Some(i + 1),
            });
            let enc = batch.encoder(&self.device);
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(l.label), timestamp_writes });
            let (x, y) = fold_grid(l.workgroups);
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bind_group, &[offset]);
            pass.dispatch_workgroups(x, y, 1);
        } else {
            let binds = Binds { inputs: l.inputs, outputs: l.outputs, windows: l.windows, views: &views };
            batch.dispatch(&self.device, kernel, (&bind_group, binds), offset, l.workgroups);
        }
        self.stats().dispatched();
        Ok((kernel.textures == 0).then_some((bind_group, params)))
    }

    /// Records a host-to-device copy to byte `offset` of `dst` into the
    /// batch (ordered with the kernels around it); an open step recording
    /// keeps it unless `!recorded` (`Buffer::write_unrecorded`).
    pub fn upload(&self, dst: &wgpu::Buffer, offset: u64, bytes: &[u8], recorded: bool) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let _host = host_clock::enter(&self.stats, HostPhase::Record);
        use wgpu::util::DeviceExt;
        let mut padded;
        let contents = if bytes.len().is_multiple_of(4) {
            bytes
        } else {
            padded = bytes.to_vec();
            padded.resize(bytes.len().next_multiple_of(4), 0);
            &padded[..]
        };
        // Mappable, so wgpu writes `contents` into it directly: a buffer
        // that is not gets a hidden staging buffer and a copy that takes the
        // queue's pending-writes lock, which a submit holds for as long as
        // lavapipe's submit blocks.
        let staging = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("wgrad upload"),
            contents,
            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::MAP_WRITE,
        });
        let mut batch = self.batch.lock().unwrap();
        // A deferred kernel may read `dst`'s previous contents.
        self.settle(&mut batch)?;
        batch.staging.written(dst);
        batch.encoder(&self.device).copy_buffer_to_buffer(&staging, 0, dst, offset, contents.len() as u64);
        if let Some(t) = batch.tape.as_mut().filter(|_| recorded) {
            let hash = super::tape::hash_bytes(contents);
            t.push(Command::Upload { staging, dst: dst.clone(), offset, size: contents.len() as u64, hash });
        }
        Ok(())
    }

    /// Records a device-side copy of `size` bytes from `src` at `src_offset`
    /// to `dst` at `dst_offset` (all multiples of 4), ordered with the
    /// kernels around it. Copies bind nothing, so the binding limit does
    /// not apply.
    pub(crate) fn copy_range(
        &self,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    ) -> Result<()> {
        if size == 0 {
            return Ok(());
        }
        let _host = host_clock::enter(&self.stats, HostPhase::Record);
        let mut batch = self.batch.lock().unwrap();
        // A deferred kernel may write `src` or read `dst`'s previous contents.
        self.settle(&mut batch)?;
        batch.staging.written(dst);
        batch.encoder(&self.device).copy_buffer_to_buffer(src, src_offset, dst, dst_offset, size);
        if let Some(t) = &mut batch.tape {
            t.push(Command::Copy { src: src.clone(), src_offset, dst: dst.clone(), dst_offset, size });
        }
        Ok(())
    }

    /// Submits everything recorded so far (no-op when nothing is pending).
    /// Returns whether a submission happened.
    pub fn flush(&self) -> Result<bool> {
        let mut batch = self.batch.lock().unwrap();
        self.submit(&mut batch)
    }

    pub(crate) fn submit(&self, batch: &mut Batch) -> Result<bool> {
        {
            // The last deferred run is recording, not submitting.
            let _host = host_clock::enter(&self.stats, HostPhase::Record);
            self.settle(batch)?;
        }
        let _host = host_clock::enter(&self.stats, HostPhase::Submit);
        batch.pass.end();
        match batch.replay.finish() {
            Outcome::Nothing => {}
            Outcome::Replayed => self.stats().batch_replayed(),
            Outcome::Captured => self.stats().plan_captured(),
            Outcome::FellBack(why) => {
                self.stats().plan_captured();
                self.stats().replay_fell_back();
                batch.replay.last_fallback = Some(why);
            }
        }
        self.pool.next_batch();
        let timings = std::mem::take(&mut batch.timings);
        for t in &timings {
            let n = 2 * t.records.len() as u32;
            let encoder = batch.encoder(&self.device);
            encoder.resolve_query_set(&t.set, 0..n, &t.resolve, 0);
            encoder.copy_buffer_to_buffer(&t.resolve, 0, &t.read, 0, n as u64 * 8);
        }
        // The step graphs replayed and the caller's encoders between them.
        let mut parts = std::mem::take(&mut batch.parts);
        parts.extend(batch.encoder.take().map(recorded));
        if parts.is_empty() {
            // Nothing to submit: what waited for the submit runs now,
            // after the batches before it.
            if !batch.after_submit.is_empty() {
                self.submitter.drain();
                for f in batch.after_submit.drain(..) {
                    f(None);
                }
            }
            return Ok(false);
        }
        if let Some(t) = &mut batch.tape {
            t.end_segment(batch.chunks.iter().map(|c| c.data.clone()).collect());
        }
        // The parameter arena is written by the queue before this submit
        // runs; the chunk keeps a vector of the same capacity for its next use.
        let writes = batch
            .chunks
            .iter_mut()
            .map(|c| {
                let fresh = Vec::with_capacity(c.data.capacity());
                (c.buffer.clone(), std::mem::replace(&mut c.data, fresh))
            })
            .collect();
        let then = std::mem::take(&mut batch.after_submit);
        self.submitter.submit(&self.device, &self.queue, super::submitter::Job { writes, parts, then });
        self.stats().submitted();
        for t in timings {
            self.read_timestamps(t)?;
        }
        // Chunks are free again: later writes are queued behind this submit.
        // They are taken again in the order they were used (`spare` pops
        // from the end), so the same launch of the next step gets the same
        // chunk and finds its bind group cached.
        let used: Vec<Chunk> = batch.chunks.drain(..).collect();
        batch.spare.extend(used.into_iter().rev());
        batch.dispatches = 0;
        self.take_error()?;
        Ok(true)
    }

    /// Waits for a profiled batch and hands its launch times to the profiler.
    fn read_timestamps(&self, t: Timing) -> Result<()> {
        crate::web::refuse_blocking("the step profiler's GPU timestamps", "the profiler in a native build")?;
        let n = 2 * t.records.len();
        let _host = host_clock::enter(&self.stats, HostPhase::Wait);
        self.submitter.drain();
        let (tx, rx) = std::sync::mpsc::channel();
        t.read.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Readback(e.to_string()))?;
        rx.recv().map_err(|e| Error::Readback(e.to_string()))?.map_err(|e| Error::Readback(e.to_string()))?;
        let ticks: Vec<u64> = {
            let view = t.read.get_mapped_range(..).map_err(|e| Error::Readback(format!("{e:?}")))?;
            bytemuck::cast_slice::<u8, u64>(&view[..n * 8]).to_vec()
        };
        t.read.unmap();
        let period = self.queue.get_timestamp_period() as f64;
        let times: Vec<(usize, f64, f64)> = t
            .records
            .iter()
            .zip(ticks.chunks_exact(2))
            .map(|(&r, pair)| (r, pair[0] as f64 * period, pair[1] as f64 * period))
            .collect();
        self.profiler.set_times(&times);
        Ok(())
    }
}
