//! [`DistributedDataParallel`]: PyTorch DDP's gradient averaging. Every
//! rank holds a replica of the model; after each backward the gradients
//! are the mean over the ranks, reduced in buckets that start while
//! backward is still computing the earlier layers' gradients.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use wgrad_autograd::{no_grad, GradientHook, Tensor};
use wgrad_nn::train::{BoxError, DataParallel};
use wgrad_nn::ModuleExt;

use crate::error::{DistError, Result};
use crate::process_group::{bytes_of_f32, f32_of_bytes, tensor_like, PendingReduce, ProcessGroup, Reducer};

/// Options of [`DistributedDataParallel`] (PyTorch's keyword arguments).
#[derive(Clone, Debug)]
pub struct DdpOptions {
    bucket_cap_mb: f64,
    first_bucket_mb: f64,
    find_unused_parameters: bool,
    broadcast_buffers: bool,
    overlap: bool,
}

impl Default for DdpOptions {
    fn default() -> Self {
        DdpOptions {
            bucket_cap_mb: 25.0,
            first_bucket_mb: 1.0,
            find_unused_parameters: false,
            broadcast_buffers: true,
            overlap: true,
        }
    }
}

impl DdpOptions {
    /// Bytes of gradients per bucket, in MiB (default 25).
    pub fn bucket_cap_mb(mut self, mb: f64) -> Self {
        self.bucket_cap_mb = mb;
        self
    }

    /// The first (last layers') bucket's cap in MiB (default 1): small, so
    /// that the first reduction starts early in backward.
    pub fn first_bucket_mb(mut self, mb: f64) -> Self {
        self.first_bucket_mb = mb;
        self
    }

    /// Reduce zeros for parameters a backward pass did not reach (layers
    /// skipped by this batch) instead of failing (default false: such a
    /// parameter is an error that names it).
    pub fn find_unused_parameters(mut self, on: bool) -> Self {
        self.find_unused_parameters = on;
        self
    }

    /// After each synced backward, replace every rank's buffers (batch norm
    /// running statistics) with rank 0's (default true, as PyTorch), so the
    /// replicas stay identical.
    pub fn broadcast_buffers(mut self, on: bool) -> Self {
        self.broadcast_buffers = on;
        self
    }

    /// Start each bucket's reduction as soon as backward has finished its
    /// gradients (default true); false reduces every bucket after backward
    /// (the "before" of the overlap measurement).
    pub fn overlap(mut self, on: bool) -> Self {
        self.overlap = on;
        self
    }
}

/// Where the time of gradient averaging went, summed over synced steps.
#[derive(Clone, Copy, Debug, Default)]
pub struct DdpStats {
    /// Synced backward passes.
    pub steps: u64,
    /// Buckets reduced.
    pub buckets: u64,
    /// Gradient bytes each rank sent into all-reduces.
    pub bytes: u64,
    /// Time inside backward (recording its ops, and on the CPU backend running them).
    pub backward: Duration,
    /// Time the MPI thread spent in all-reduces, hidden or not.
    pub all_reduce: Duration,
    /// Time the step waited for reductions after backward: the part of
    /// `all_reduce` not hidden behind it (with the copies back in).
    pub exposed: Duration,
}

impl DdpStats {
    /// The share of the all-reduce time hidden behind backward (0 to 1).
    pub fn hidden_fraction(&self) -> f64 {
        let total = self.all_reduce.as_secs_f64();
        if total == 0.0 {
            return 0.0;
        }
        (1.0 - self.exposed.as_secs_f64() / total).clamp(0.0, 1.0)
    }
}

/// Data-parallel training of one model replica per rank, as PyTorch's
/// `DistributedDataParallel`:
///
/// - [`new`](Self::new) replaces every rank's parameters and buffers with
///   rank 0's, so all replicas start equal;
/// - [`backward`](Self::backward) runs the loss's backward and leaves each
///   parameter's gradient equal to the mean over the ranks (f32 sums on the
///   host, through MPI); buckets of about 25 MiB, the first of 1 MiB, are
///   copied to the host and reduced as soon as backward finished them,
///   while it goes on with the earlier layers;
/// - [`backward_no_sync`](Self::backward_no_sync) only accumulates locally
///   (gradient accumulation; the next synced backward averages the sum);
/// - a parameter that got no gradient is an error naming it, unless
///   [`DdpOptions::find_unused_parameters`].
///
/// The optimizer steps as usual on every rank: with equal gradients the
/// replicas stay equal. With AMP, the averaged scaled gradients carry any
/// rank's overflow (inf/NaN sum to inf/NaN), so every rank's `GradScaler`
/// skips the same steps.
pub struct DistributedDataParallel<'g> {
    group: &'g ProcessGroup,
    params: Vec<(String, Tensor)>,
    buffers: Vec<Tensor>,
    buckets: Rc<Vec<Vec<usize>>>,
    bucket_of: Rc<Vec<usize>>,
    index: Rc<FxHashMap<u64, usize>>,
    options: DdpOptions,
    stats: DdpStats,
}

impl<'g> DistributedDataParallel<'g> {
    /// Wraps `model` (its parameters and buffers) for training over `group`,
    /// broadcasting rank 0's values to every rank.
    ///
    /// # Errors
    /// When the ranks' models differ in their parameters' names or shapes,
    /// or a collective fails.
    pub fn new<M: ModuleExt + ?Sized>(model: &M, group: &'g ProcessGroup, options: DdpOptions) -> Result<Self> {
        // A parameter shared by two modules (tied weights) is reduced once.
        let mut seen = rustc_hash::FxHashSet::default();
        let params: Vec<(String, Tensor)> =
            model.named_parameters().into_iter().filter(|(_, p)| p.requires_grad() && seen.insert(p.id())).collect();
        let buffers: Vec<(String, Tensor)> = model.named_buffers();
        let described: Vec<(&str, Vec<usize>)> =
            params.iter().chain(&buffers).map(|(n, t)| (n.as_str(), t.shape().to_vec())).collect();
        check_same_model(group, &described)?;
        let all: Vec<&Tensor> = params.iter().map(|(_, p)| p).chain(buffers.iter().map(|(_, b)| b)).collect();
        broadcast_all(group, &all)?;
        let mib = |mb: f64| (mb * (1 << 20) as f64) as usize;
        let bytes: Vec<usize> = params.iter().map(|(_, p)| p.numel() * 4).collect();
        let buckets = crate::bucket::assign(&bytes, mib(options.first_bucket_mb), mib(options.bucket_cap_mb));
        let mut bucket_of = vec![0; params.len()];
        for (b, members) in buckets.iter().enumerate() {
            members.iter().for_each(|&i| bucket_of[i] = b);
        }
        let index = params.iter().enumerate().map(|(i, (_, p))| (p.id(), i)).collect();
        Ok(DistributedDataParallel {
            group,
            params,
            buffers: buffers.into_iter().map(|(_, b)| b).collect(),
            buckets: Rc::new(buckets),
            bucket_of: Rc::new(bucket_of),
            index: Rc::new(index),
            options,
            stats: DdpStats::default(),
        })
    }

    /// The process group.
    pub fn group(&self) -> &ProcessGroup {
        self.group
    }

    /// The gradient buckets: parameter names, in reduction order.
    pub fn buckets(&self) -> Vec<Vec<String>> {
        self.buckets.iter().map(|b| b.iter().map(|&i| self.params[i].0.clone()).collect()).collect()
    }

    /// Where the time of the synced steps so far went.
    pub fn stats(&self) -> DdpStats {
        self.stats
    }

    /// Backward of `loss`, then every gradient is the mean over the ranks.
    pub fn backward(&mut self, loss: &Tensor) -> Result<()> {
        let started = Instant::now();
        let pass = Rc::new(RefCell::new(Pass::new(self)));
        {
            let hook = pass.clone();
            let _hook =
                self.options.overlap.then(|| GradientHook::install(move |leaf| hook.borrow_mut().reached(leaf)));
            loss.backward();
        }
        let backward_done = Instant::now();
        let mut pass =
            Rc::try_unwrap(pass).map_err(|_| DistError::Mpi("a gradient hook outlived backward".into()))?.into_inner();
        if !self.options.overlap {
            // The hook's work, all at once: every gradient is final now.
            self.params.iter().filter(|(_, p)| p.grad().is_some()).for_each(|(_, p)| pass.reached(p));
        }
        pass.reach_unused(self)?;
        let (reduced, mpi_seconds) = pass.wait(self)?;
        for (b, sums) in reduced.into_iter().enumerate() {
            self.write_back(b, sums)?;
        }
        if self.options.broadcast_buffers && !self.buffers.is_empty() {
            let buffers: Vec<&Tensor> = self.buffers.iter().collect();
            broadcast_all(self.group, &buffers)?;
        }
        let s = &mut self.stats;
        s.steps += 1;
        s.buckets += self.buckets.len() as u64;
        s.bytes += self.params.iter().map(|(_, p)| 4 * p.numel() as u64).sum::<u64>();
        s.backward += backward_done - started;
        s.all_reduce += Duration::from_secs_f64(mpi_seconds);
        s.exposed += backward_done.elapsed();
        Ok(())
    }

    /// Backward of `loss` without averaging: gradients accumulate on this
    /// rank only, until the next [`backward`](Self::backward) (PyTorch's
    /// `with model.no_sync():`).
    pub fn backward_no_sync(&mut self, loss: &Tensor) {
        loss.backward();
    }

    /// Divides bucket `b`'s sums by the world size and makes them its
    /// parameters' gradients.
    fn write_back(&self, b: usize, sums: Vec<f32>) -> Result<()> {
        let n = self.group.world_size() as f32;
        let mut at = 0;
        for &i in &self.buckets[b] {
            let p = &self.params[i].1;
            let len = p.numel();
            let mean: Vec<f32> = sums[at..at + len].iter().map(|&s| s / n).collect();
            at += len;
            p.set_grad(Some(tensor_like(p, &mean)?));
        }
        Ok(())
    }
}

/// One synced backward pass: which parameters are done, which buckets are
/// in flight.
struct Pass {
    reducer: Reducer,
    params: Vec<Tensor>,
    buckets: Rc<Vec<Vec<usize>>>,
    bucket_of: Rc<Vec<usize>>,
    index: Rc<FxHashMap<u64, usize>>,
    reached: Vec<bool>,
    missing: Vec<usize>,
    /// The next bucket to start: buckets start in order on every rank
    /// (MPI matches collectives by order), even when backward finishes a
    /// later one first.
    next: usize,
    in_flight: Vec<PendingReduce>,
}

impl Pass {
    fn new(ddp: &DistributedDataParallel) -> Pass {
        Pass {
            reducer: ddp.group.reducer(),
            params: ddp.params.iter().map(|(_, p)| p.clone()).collect(),
            buckets: ddp.buckets.clone(),
            bucket_of: ddp.bucket_of.clone(),
            index: ddp.index.clone(),
            reached: vec![false; ddp.params.len()],
            missing: ddp.buckets.iter().map(Vec::len).collect(),
            next: 0,
            in_flight: Vec::with_capacity(ddp.buckets.len()),
        }
    }

    /// Backward finished `leaf`'s gradient.
    fn reached(&mut self, leaf: &Tensor) {
        let Some(&i) = self.index.get(&leaf.id()) else { return };
        if std::mem::replace(&mut self.reached[i], true) {
            return;
        }
        self.missing[self.bucket_of[i]] -= 1;
        self.start_ready();
    }

    /// Starts the buckets, in order, whose gradients are all there.
    fn start_ready(&mut self) {
        while self.next < self.buckets.len() && self.missing[self.next] == 0 {
            self.start(self.next);
            self.next += 1;
        }
    }

    /// Copies bucket `b`'s gradients into one flat tensor, starts its
    /// readback (submitting the work recorded so far) and queues its sum.
    fn start(&mut self, b: usize) {
        let grads: Vec<Tensor> = self.buckets[b]
            .iter()
            .map(|&i| {
                let p = &self.params[i];
                p.grad().unwrap_or_else(|| Tensor::zeros(&p.shape(), &p.device()))
            })
            .collect();
        let flat = flatten(&grads.iter().collect::<Vec<_>>());
        self.in_flight.push(self.reducer.all_reduce_async(flat.to_vec_async().into()));
    }

    /// After backward: the parameters it did not reach are an error, or
    /// (find_unused_parameters) contribute zeros; then every bucket is started.
    fn reach_unused(&mut self, ddp: &DistributedDataParallel) -> Result<()> {
        let unused: Vec<usize> = (0..self.params.len()).filter(|&i| !self.reached[i]).collect();
        if !unused.is_empty() && !ddp.options.find_unused_parameters {
            let names: Vec<&str> = unused.iter().take(8).map(|&i| ddp.params[i].0.as_str()).collect();
            let more = if unused.len() > 8 { ", ..." } else { "" };
            return Err(DistError::UnusedParameters {
                rank: ddp.group.rank(),
                count: unused.len(),
                names: format!("{}{more}", names.join(", ")),
            });
        }
        for i in unused {
            self.reached[i] = true;
            self.missing[self.bucket_of[i]] -= 1;
        }
        self.start_ready();
        Ok(())
    }

    /// Every bucket's sums, in bucket order, and the seconds MPI spent on them.
    fn wait(self, ddp: &DistributedDataParallel) -> Result<(Vec<Vec<f32>>, f64)> {
        debug_assert_eq!(self.in_flight.len(), ddp.buckets.len());
        let mut seconds = 0.0;
        let mut out = Vec::with_capacity(self.in_flight.len());
        for p in self.in_flight {
            let (sums, s) = p.wait()?;
            seconds += s;
            out.push(sums);
        }
        Ok((out, seconds))
    }
}

impl DataParallel for DistributedDataParallel<'_> {
    fn rank(&self) -> usize {
        self.group.rank()
    }

    fn world_size(&self) -> usize {
        self.group.world_size()
    }

    fn backward(&mut self, loss: &Tensor, sync: bool) -> Result<(), BoxError> {
        if sync {
            DistributedDataParallel::backward(self, loss)?;
        } else {
            self.backward_no_sync(loss);
        }
        Ok(())
    }

    fn all_gather(&self, values: &[f64]) -> Result<Vec<Vec<f64>>, BoxError> {
        Ok(self.group.all_gather_f64(values)?)
    }
}

/// An error unless every rank's model has rank 0's tensors (names and
/// shapes), compared through a checksum of their description.
fn check_same_model(group: &ProcessGroup, described: &[(&str, Vec<usize>)]) -> Result<()> {
    if group.world_size() == 1 {
        return Ok(());
    }
    let text: String = described.iter().map(|(n, s)| format!("{n}{s:?};")).collect();
    // FNV-1a, cut to 48 bits so that it is exact in an f64.
    let hash = text.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
    let mine = [described.len() as f64, (hash >> 16) as f64];
    let all = group.all_gather_f64(&mine)?;
    match all.iter().position(|a| a[..] != mine[..]) {
        None => Ok(()),
        Some(r) => Err(group.mismatch(format!(
            "its model ({} tensors) differs from rank {r}'s ({} tensors) in names or shapes",
            described.len(),
            all[r][0]
        ))),
    }
}

/// `tensors`' values one after the other in one f32 tensor on their device
/// (one launch, so that one readback copies them all).
fn flatten(tensors: &[&Tensor]) -> Tensor {
    no_grad(|| {
        let flat: Vec<Tensor> = tensors.iter().map(|t| t.float().reshape(&[t.numel()])).collect();
        match &flat[..] {
            [one] => one.clone(),
            _ => Tensor::cat(&flat.iter().collect::<Vec<_>>(), 0),
        }
    })
}

/// Replaces `tensors` on every rank with rank 0's, in one readback and
/// one broadcast.
fn broadcast_all(group: &ProcessGroup, tensors: &[&Tensor]) -> Result<()> {
    if group.world_size() == 1 || tensors.is_empty() {
        return Ok(());
    }
    let values = flatten(tensors).to_vec();
    let mut bytes = bytes_of_f32(&values);
    group.broadcast_bytes(&mut bytes, 0)?;
    let mut floats = f32_of_bytes(&bytes).into_iter();
    for t in tensors {
        let v: Vec<f32> = floats.by_ref().take(t.numel()).collect();
        let value = tensor_like(t, &v)?;
        no_grad(|| t.assign(&value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgrad_autograd::Device;
    use wgrad_nn::{Init, Linear, Module, ModuleFields, ReLU, Sequential};

    fn mlp(dev: &Device) -> Sequential {
        let mut init = Init::new(dev, 3);
        Sequential::new()
            .add(Linear::builder(4, 8).build(&mut init))
            .add(ReLU)
            .add(Linear::builder(8, 2).build(&mut init))
    }

    #[test]
    fn on_one_rank_the_gradients_are_backwards_own() {
        let dev = Device::cpu();
        let (model, twin) = (mlp(&dev), mlp(&dev));
        let group = ProcessGroup::single();
        // A tiny first bucket: several buckets, started from the hook.
        let mut ddp =
            DistributedDataParallel::new(&model, &group, DdpOptions::default().first_bucket_mb(1e-5)).unwrap();
        assert!(ddp.buckets().len() >= 2, "{:?}", ddp.buckets());
        let x = Tensor::randn(&[5, 4], 7, &dev);
        ddp.backward(&model.forward(&x).sum_all()).unwrap();
        twin.forward(&x).sum_all().backward();
        for (p, q) in model.parameters().iter().zip(twin.parameters()) {
            assert_eq!(p.grad().unwrap().to_vec(), q.grad().unwrap().to_vec());
        }
        let s = ddp.stats();
        assert_eq!((s.steps, s.buckets), (1, ddp.buckets().len() as u64));
        assert_eq!(s.bytes, 4 * (4 * 8 + 8 + 8 * 2 + 2));
    }

    #[test]
    fn an_unused_parameter_is_named_unless_asked_for() {
        let dev = Device::cpu();
        let model = mlp(&dev);
        let group = ProcessGroup::single();
        let x = Tensor::randn(&[3, 4], 1, &dev);
        // Only the first layer takes part.
        let first = |m: &Sequential| m.children()[0].1.forward(&x).sum_all();
        let mut ddp = DistributedDataParallel::new(&model, &group, DdpOptions::default()).unwrap();
        let err = ddp.backward(&first(&model)).unwrap_err().to_string();
        assert!(err.contains("2 parameter(s)") && err.contains("2.weight") && err.contains("2.bias"), "{err}");
        model.zero_grad();
        let mut lenient =
            DistributedDataParallel::new(&model, &group, DdpOptions::default().find_unused_parameters(true)).unwrap();
        lenient.backward(&first(&model)).unwrap();
        let last = &model.parameters()[3];
        assert!(last.grad().unwrap().to_vec().iter().all(|&g| g == 0.0));
    }

    #[test]
    fn a_shared_parameter_is_reduced_once() {
        let dev = Device::cpu();
        let layer = Linear::builder(3, 3).build(&mut Init::new(&dev, 1));
        let twin = Linear { weight: layer.weight.clone(), bias: layer.bias.clone() };
        let model = Sequential::new().add(layer).add(twin);
        let group = ProcessGroup::single();
        let mut ddp = DistributedDataParallel::new(&model, &group, DdpOptions::default()).unwrap();
        assert_eq!(ddp.buckets().concat(), ["0.bias", "0.weight"]);
        ddp.backward(&model.forward(&Tensor::randn(&[2, 3], 2, &dev)).sum_all()).unwrap();
    }

    #[test]
    fn a_group_of_one_reduces_to_itself() {
        let dev = Device::cpu();
        let g = ProcessGroup::single();
        assert_eq!((g.rank(), g.world_size(), g.is_main()), (0, 1, true));
        let t = Tensor::from_vec(&[1.0, -2.0], &[2], &dev);
        assert_eq!(g.all_reduce(&t, crate::ReduceOp::Mean).unwrap().to_vec(), vec![1.0, -2.0]);
        assert_eq!(g.all_gather_f64(&[3.0]).unwrap(), vec![vec![3.0]]);
        assert!(g.any(true).unwrap() && !g.any(false).unwrap());
        assert!(g.broadcast_bytes(&mut [1, 2], 1).is_err());
        g.finalize().unwrap();
    }
}
