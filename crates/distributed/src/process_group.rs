//! [`ProcessGroup`]: the ranks of a data-parallel run and the collectives
//! between them, on MPI (feature `mpi`) or, for a process started on its
//! own, a group of one.

use std::sync::mpsc::Receiver;
use std::time::Instant;

use wgrad_autograd::{DType, PendingVec, Tensor};

use crate::error::{DistError, Result};

/// Variables that MPI launchers (Open MPI, MPICH/Hydra, PMIx) set in the
/// processes they start: one of them means "started by mpirun".
const LAUNCHER_VARS: [&str; 4] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"];

/// The processes of one training run, each training a replica of the
/// model on its own shard of the data.
///
/// Rank 0 is the main rank (it prints and writes checkpoints). The
/// collectives are blocking and must be called by every rank in the same
/// order with the same lengths, as MPI requires. On MPI they run on a
/// thread of their own (rsmpi's communicators cannot cross threads), which
/// also lets a gradient reduction proceed while backward goes on
/// ([`all_reduce_async`](Self::all_reduce_async)).
///
/// A rank that panics aborts the whole job (`MPI_Abort`, naming itself),
/// so the others stop instead of waiting for it forever; end a run with
/// [`finalize`](Self::finalize), or [`abort`](Self::abort) on an error.
pub struct ProcessGroup {
    rank: usize,
    size: usize,
    local_rank: usize,
    local_size: usize,
    comm: Comm,
}

enum Comm {
    Single,
    #[cfg(feature = "mpi")]
    Mpi(crate::mpi_service::Service),
}

/// Reduction of [`ProcessGroup::all_reduce`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// The element-wise sum over ranks.
    Sum,
    /// The sum divided by the world size.
    Mean,
}

/// An [`all_reduce_async`](ProcessGroup::all_reduce_async) in flight.
#[must_use = "the sums are only read when waited for"]
pub struct PendingReduce {
    reply: Receiver<Result<(Vec<f32>, f64)>>,
}

impl PendingReduce {
    /// Blocks until the sums are there; also returns the seconds the
    /// reduction took once its values were on the host.
    pub fn wait(self) -> Result<(Vec<f32>, f64)> {
        self.reply.recv().map_err(|_| DistError::Mpi("the MPI thread ended".into()))?
    }
}

impl ProcessGroup {
    /// The group this process belongs to: MPI's world when an MPI launcher
    /// started it (`mpirun -np N`), else a group of one. Called once per
    /// process (MPI is initialised once).
    ///
    /// # Errors
    /// Under a launcher without the `mpi` feature, or when MPI fails to start.
    pub fn from_env() -> Result<ProcessGroup> {
        let launcher = LAUNCHER_VARS.iter().copied().find(|v| std::env::var_os(v).is_some());
        match launcher {
            None => Ok(Self::single()),
            #[cfg(feature = "mpi")]
            Some(_) => {
                let (service, info) = crate::mpi_service::Service::start()?;
                Ok(ProcessGroup {
                    rank: info.rank,
                    size: info.size,
                    local_rank: info.local_rank,
                    local_size: info.local_size,
                    comm: Comm::Mpi(service),
                })
            }
            #[cfg(not(feature = "mpi"))]
            Some(variable) => Err(DistError::NoMpi { variable }),
        }
    }

    /// A group of one process (rank 0 of 1): every collective is the identity.
    pub fn single() -> ProcessGroup {
        ProcessGroup { rank: 0, size: 1, local_rank: 0, local_size: 1, comm: Comm::Single }
    }

    /// This process's rank, `0..world_size()`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of processes.
    pub fn world_size(&self) -> usize {
        self.size
    }

    /// This process's rank among those on its machine: which GPU it opens
    /// (`Device::from_env` reads the launcher's variable for it).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// The number of processes on this machine.
    pub fn local_size(&self) -> usize {
        self.local_size
    }

    /// Whether this is rank 0, the one that prints and writes files.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// Sums (or averages) `values` element-wise over the ranks, in place.
    pub fn all_reduce_f32(&self, values: &mut [f32], op: ReduceOp) -> Result<()> {
        if self.size > 1 {
            let (sums, _) = self.all_reduce_async(Ready(values.to_vec())).wait()?;
            values.copy_from_slice(&sums);
        }
        if op == ReduceOp::Mean {
            let n = self.size as f32;
            values.iter_mut().for_each(|v| *v /= n);
        }
        Ok(())
    }

    /// Starts summing values over the ranks and returns at once: the MPI
    /// thread waits for `values` (a device readback still in flight, or
    /// values on the host) and reduces them, in the order of the calls.
    pub fn all_reduce_async(&self, values: impl Into<HostValues>) -> PendingReduce {
        self.reducer().all_reduce_async(values.into())
    }

    /// A handle that starts sums from anywhere on this thread (a gradient
    /// hook); the group outlives it.
    pub(crate) fn reducer(&self) -> Reducer {
        match &self.comm {
            Comm::Single => Reducer::Single,
            #[cfg(feature = "mpi")]
            Comm::Mpi(s) => Reducer::Mpi(s.sender()),
        }
    }

    /// Sums `values` (f64, for metrics' counts and sums) over the ranks, in place.
    pub fn all_reduce_f64(&self, values: &mut [f64]) -> Result<()> {
        match &self.comm {
            // The sums over one rank are its values.
            Comm::Single => {
                let _ = values;
                Ok(())
            }
            #[cfg(feature = "mpi")]
            Comm::Mpi(s) => {
                let sums = s.all_reduce_f64(values.to_vec())?;
                values.copy_from_slice(&sums);
                Ok(())
            }
        }
    }

    /// Every rank's `values`, in rank order (each rank must give the same length).
    pub fn all_gather_f64(&self, values: &[f64]) -> Result<Vec<Vec<f64>>> {
        match &self.comm {
            Comm::Single => Ok(vec![values.to_vec()]),
            #[cfg(feature = "mpi")]
            Comm::Mpi(s) => {
                let all = s.all_gather_f64(values.to_vec())?;
                Ok(all.chunks(values.len().max(1)).take(self.size).map(<[f64]>::to_vec).collect())
            }
        }
    }

    /// Replaces `bytes` with rank `root`'s (every rank must pass the same length).
    pub fn broadcast_bytes(&self, bytes: &mut [u8], root: usize) -> Result<()> {
        if root >= self.size {
            return Err(self.mismatch(format!("broadcast from rank {root} of {}", self.size)));
        }
        match &self.comm {
            // Rank 0's bytes are already these.
            Comm::Single => {
                let _ = bytes;
                Ok(())
            }
            #[cfg(feature = "mpi")]
            Comm::Mpi(s) => {
                let out = s.broadcast(bytes.to_vec(), root)?;
                bytes.copy_from_slice(&out);
                Ok(())
            }
        }
    }

    /// Waits until every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        match &self.comm {
            Comm::Single => Ok(()),
            #[cfg(feature = "mpi")]
            Comm::Mpi(s) => s.barrier(),
        }
    }

    /// Whether `flag` is set on any rank (a stop request seen by one).
    pub fn any(&self, flag: bool) -> Result<bool> {
        let mut v = [f64::from(u8::from(flag))];
        self.all_reduce_f64(&mut v)?;
        Ok(v[0] > 0.0)
    }

    /// Sums or averages a tensor over the ranks (f16 tensors are reduced as
    /// f32 on the host and rounded once); the result is a new tensor on the
    /// same device, with the same shape and dtype.
    pub fn all_reduce(&self, t: &Tensor, op: ReduceOp) -> Result<Tensor> {
        let mut v = t.to_vec();
        self.all_reduce_f32(&mut v, op)?;
        tensor_like(t, &v)
    }

    /// Rank `root`'s values of `t`, written into `t` on every rank (its
    /// identity kept, as optimizers update parameters: a parameter stays
    /// the optimizer's). Checks that the shapes agree first.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        self.check_same_shape(t)?;
        let mut bytes = match t.dtype() {
            DType::U32 => bytes_of_u32(&t.to_vec_u32()),
            _ => bytes_of_f32(&t.to_vec()),
        };
        self.broadcast_bytes(&mut bytes, root)?;
        let value = match t.dtype() {
            DType::U32 => Tensor::from_u32(&u32_of_bytes(&bytes), &t.shape(), &t.device()),
            _ => tensor_like(t, &f32_of_bytes(&bytes))?,
        };
        wgrad_autograd::no_grad(|| t.assign(&value));
        Ok(())
    }

    /// An error unless every rank's `t` has the shape of rank 0's.
    fn check_same_shape(&self, t: &Tensor) -> Result<()> {
        let shape: Vec<f64> = t.shape().iter().map(|&d| d as f64).collect();
        let mut all = vec![shape.len() as f64];
        self.all_reduce_f64(&mut all)?;
        if all[0] != (shape.len() * self.size) as f64 {
            return Err(self.mismatch(format!("tensor of rank {} differs in rank between processes", shape.len())));
        }
        let gathered = self.all_gather_f64(&shape)?;
        match gathered.iter().position(|s| *s != shape) {
            None => Ok(()),
            Some(r) => Err(self.mismatch(format!("shape {:?} differs from rank {r}'s {:?}", t.shape(), gathered[r]))),
        }
    }

    pub(crate) fn mismatch(&self, what: String) -> DistError {
        DistError::Mismatch { rank: self.rank, what }
    }

    /// Ends this rank's part of the run (MPI_Finalize on MPI): every rank
    /// calls it once, after its last collective.
    pub fn finalize(mut self) -> Result<()> {
        match std::mem::replace(&mut self.comm, Comm::Single) {
            Comm::Single => Ok(()),
            #[cfg(feature = "mpi")]
            Comm::Mpi(s) => s.finalize(),
        }
    }

    /// Ends the whole job after an error on this rank: prints `message`
    /// naming the rank, then (on MPI) aborts every rank, so that none waits
    /// for this one. On a group of one, exits the process with status 1.
    pub fn abort(&self, message: &str) -> ! {
        say(format_args!("wgrad: rank {} of {} failed: {message}", self.rank, self.size));
        match &self.comm {
            Comm::Single => std::process::exit(1),
            #[cfg(feature = "mpi")]
            Comm::Mpi(_) => crate::mpi_service::abort_job(1),
        }
    }
}

impl Drop for ProcessGroup {
    /// A rank leaving without [`finalize`](ProcessGroup::finalize) (an early
    /// return on an error, a panic) must not leave the others waiting for
    /// it in a collective: it aborts the job.
    fn drop(&mut self) {
        #[cfg(feature = "mpi")]
        if let Comm::Mpi(_) = &self.comm {
            say(format_args!(
                "wgrad: rank {} of {} is leaving without ProcessGroup::finalize (an error?); aborting the job",
                self.rank, self.size
            ));
            crate::mpi_service::abort_job(1);
        }
    }
}

/// Starts all-reduces; see [`ProcessGroup::all_reduce_async`].
pub(crate) enum Reducer {
    Single,
    #[cfg(feature = "mpi")]
    Mpi(Option<std::sync::mpsc::Sender<crate::mpi_service::Request>>),
}

impl Reducer {
    pub(crate) fn all_reduce_async(&self, values: HostValues) -> PendingReduce {
        let (send, reply) = std::sync::mpsc::channel();
        match self {
            Reducer::Single => {
                let start = Instant::now();
                let r = values.wait().map(|v| (v, start.elapsed().as_secs_f64()));
                let _ = send.send(r);
            }
            #[cfg(feature = "mpi")]
            Reducer::Mpi(requests) => crate::mpi_service::all_reduce(requests.as_ref(), values, send),
        }
        PendingReduce { reply }
    }
}

/// Values on their way to the host: a device readback or values already there.
pub enum HostValues {
    /// Already on the host.
    Ready(Vec<f32>),
    /// A device readback in flight ([`Tensor::to_vec_async`]).
    Pending(PendingVec),
}

pub use HostValues::Ready;

impl HostValues {
    /// The values (blocks on a readback).
    pub fn wait(self) -> Result<Vec<f32>> {
        match self {
            HostValues::Ready(v) => Ok(v),
            HostValues::Pending(p) => Ok(p.try_wait()?),
        }
    }
}

impl From<Vec<f32>> for HostValues {
    fn from(v: Vec<f32>) -> Self {
        HostValues::Ready(v)
    }
}

impl From<PendingVec> for HostValues {
    fn from(p: PendingVec) -> Self {
        HostValues::Pending(p)
    }
}

/// A new tensor shaped like `t`, with its dtype, holding `values`.
pub(crate) fn tensor_like(t: &Tensor, values: &[f32]) -> Result<Tensor> {
    let (shape, dev) = (t.shape(), t.device());
    Ok(match t.dtype() {
        DType::F32 => Tensor::from_vec(values, &shape, &dev),
        DType::F16 => {
            let halves: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
            Tensor::from_f16(&halves, &shape, &dev)
        }
        DType::U32 => Tensor::from_u32(&values.iter().map(|&v| v as u32).collect::<Vec<_>>(), &shape, &dev),
    })
}

/// Little-endian bytes of `v` (what MPI broadcasts).
pub(crate) fn bytes_of_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The f32s of little-endian `b`.
pub(crate) fn f32_of_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn bytes_of_u32(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn u32_of_bytes(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Writes `line` and a newline to stderr in one write. `eprintln!` writes
/// a formatted line piece by piece (stderr is unbuffered), and under
/// mpirun a rank's stderr is forwarded in the chunks it was written in:
/// the abort that follows a rank's last words prints mpirun's banner,
/// which then landed inside them ("wgrad: rank " ... banner ... "1 of 2
/// failed"), cutting the failing rank's name from its message.
pub(crate) fn say(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(format!("{line}\n").as_bytes());
}
