//! The MPI thread: owns MPI (rsmpi's communicators cannot cross threads)
//! and runs the collectives the process group hands it, in order. Only
//! this thread calls MPI, apart from `MPI_Abort` on the way out.

use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use crate::error::{DistError, Result};
use crate::process_group::HostValues;

/// Where this process stands in the job, read once MPI started.
pub(crate) struct Info {
    pub rank: usize,
    pub size: usize,
    pub local_rank: usize,
    pub local_size: usize,
}

type Reply<T> = Sender<Result<T>>;

pub(crate) enum Request {
    AllReduce(HostValues, Reply<(Vec<f32>, f64)>),
    AllReduceF64(Vec<f64>, Reply<Vec<f64>>),
    AllGatherF64(Vec<f64>, Reply<Vec<f64>>),
    Broadcast(Vec<u8>, usize, Reply<Vec<u8>>),
    Barrier(Reply<()>),
    /// Ends the thread (MPI_Finalize) even while handles to the queue live
    /// on (a SyncBatchNorm guard, a retained graph).
    Shutdown,
}

/// The handle of the MPI thread.
pub(crate) struct Service {
    requests: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

fn gone() -> DistError {
    DistError::Mpi("the MPI thread ended".into())
}

impl Service {
    /// Starts MPI on a thread of its own and installs the panic hook that
    /// aborts the job.
    pub(crate) fn start() -> Result<(Service, Info)> {
        let (requests, inbox) = channel::<Request>();
        let (ready, started) = channel::<Result<Info>>();
        let thread = std::thread::Builder::new()
            .name("wgrad-mpi".into())
            .spawn(move || {
                // Multiple: the panic hook may call MPI_Abort from any thread.
                let Some((universe, _level)) = mpi::initialize_with_threading(mpi::Threading::Multiple) else {
                    let _ = ready.send(Err(DistError::Mpi("MPI was already initialised in this process".into())));
                    return;
                };
                let world = universe.world();
                let local = world.split_shared(world.rank());
                let info = Info {
                    rank: world.rank() as usize,
                    size: world.size() as usize,
                    local_rank: local.rank() as usize,
                    local_size: local.size() as usize,
                };
                let _ = ready.send(Ok(info));
                serve(&world, inbox);
                // `universe` drops here: MPI_Finalize.
            })
            .map_err(|e| DistError::Mpi(format!("starting the MPI thread: {e}")))?;
        let info = started.recv().map_err(|_| gone())??;
        install_abort_on_panic(info.rank, info.size);
        Ok((Service { requests: Some(requests), thread: Some(thread) }, info))
    }

    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
        let (send, reply) = channel();
        self.requests.as_ref().ok_or_else(gone)?.send(make(send)).map_err(|_| gone())?;
        reply.recv().map_err(|_| gone())?
    }

    /// The queue, for a [`Reducer`](crate::process_group::Reducer).
    pub(crate) fn sender(&self) -> Option<Sender<Request>> {
        self.requests.clone()
    }

    pub(crate) fn all_reduce_f64(&self, values: Vec<f64>) -> Result<Vec<f64>> {
        self.ask(|r| Request::AllReduceF64(values, r))
    }

    pub(crate) fn all_gather_f64(&self, values: Vec<f64>) -> Result<Vec<f64>> {
        self.ask(|r| Request::AllGatherF64(values, r))
    }

    pub(crate) fn broadcast(&self, bytes: Vec<u8>, root: usize) -> Result<Vec<u8>> {
        self.ask(|r| Request::Broadcast(bytes, root, r))
    }

    pub(crate) fn barrier(&self) -> Result<()> {
        self.ask(Request::Barrier)
    }

    /// Stops the thread after the requests queued so far, and waits for it to finalise MPI.
    pub(crate) fn finalize(mut self) -> Result<()> {
        if let Some(r) = self.requests.take() {
            let _ = r.send(Request::Shutdown);
        }
        let thread = self.thread.take().ok_or_else(gone)?;
        thread.join().map_err(|_| DistError::Mpi("the MPI thread panicked".into()))
    }
}

/// Queues a sum of `values`; its result (or the MPI thread's absence)
/// arrives on `reply`.
pub(crate) fn all_reduce(requests: Option<&Sender<Request>>, values: HostValues, reply: Reply<(Vec<f32>, f64)>) {
    let Some(requests) = requests else {
        let _ = reply.send(Err(gone()));
        return;
    };
    if let Err(e) = requests.send(Request::AllReduce(values, reply)) {
        if let Request::AllReduce(_, reply) = e.0 {
            let _ = reply.send(Err(gone()));
        }
    }
}

/// Runs requests until the queue closes or asks it to stop.
fn serve(world: &SimpleCommunicator, inbox: std::sync::mpsc::Receiver<Request>) {
    let rank = world.rank() as usize;
    for request in inbox {
        match request {
            Request::AllReduce(values, reply) => {
                // A rank that cannot read its values must not leave the
                // others in the collective: the job ends.
                let values = match values.wait() {
                    Ok(v) => v,
                    Err(e) => fail(rank, &format!("reading gradients for an all-reduce: {e}")),
                };
                let start = Instant::now();
                let mut sums = vec![0f32; values.len()];
                world.all_reduce_into(&values[..], &mut sums[..], SystemOperation::sum());
                let _ = reply.send(Ok((sums, start.elapsed().as_secs_f64())));
            }
            Request::AllReduceF64(values, reply) => {
                let mut sums = vec![0f64; values.len()];
                world.all_reduce_into(&values[..], &mut sums[..], SystemOperation::sum());
                let _ = reply.send(Ok(sums));
            }
            Request::AllGatherF64(values, reply) => {
                let mut all = vec![0f64; values.len() * world.size() as usize];
                world.all_gather_into(&values[..], &mut all[..]);
                let _ = reply.send(Ok(all));
            }
            Request::Broadcast(mut bytes, root, reply) => {
                world.process_at_rank(root as i32).broadcast_into(&mut bytes[..]);
                let _ = reply.send(Ok(bytes));
            }
            Request::Barrier(reply) => {
                world.barrier();
                let _ = reply.send(Ok(()));
            }
            Request::Shutdown => break,
        }
    }
}

fn fail(rank: usize, what: &str) -> ! {
    crate::process_group::say(format_args!("wgrad: rank {rank} failed: {what}"));
    abort_job(1)
}

/// Ends every rank of the job (`MPI_Abort` on the world).
pub(crate) fn abort_job(code: i32) -> ! {
    // SAFETY: MPI is initialised with MPI_THREAD_MULTIPLE, so any thread may
    // call MPI_Abort; it does not return.
    unsafe {
        mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, code);
    }
    std::process::exit(code)
}

/// A panic on any thread of a rank prints as usual, then names the rank
/// and aborts the job: the other ranks would otherwise wait for it in
/// their next collective forever.
fn install_abort_on_panic(rank: usize, size: usize) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        if wgrad_autograd::caught_by_try_run() {
            return; // an Err for the caller, who decides
        }
        crate::process_group::say(format_args!("wgrad: rank {rank} of {size} panicked; aborting the job"));
        abort_job(1);
    }));
}
