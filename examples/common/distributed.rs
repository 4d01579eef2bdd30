//! `--distributed` in the examples: data-parallel training over MPI
//! (`mpirun -np N`, built with `--features mpi`; docs/distributed.md).
//! Every rank trains a replica on its own shard of each batch; rank 0
//! prints and writes the run folder, the others print only errors.
//! Included with `#[path]`.

use anyhow::Result;
use wgrad::distributed::{DdpOptions, DistributedDataParallel, ProcessGroup};
use wgrad::nn::ModuleExt;

/// This process's group: MPI's world when `mpirun` started it, else a
/// group of one. Under `mpirun` the example must be asked for
/// `--distributed` (several copies of a plain run would write one folder).
pub fn group(distributed: bool) -> Result<ProcessGroup> {
    let group = ProcessGroup::from_env()?;
    if group.world_size() > 1 && !distributed {
        group.abort("started by mpirun with several ranks: pass --distributed");
    }
    if !group.is_main() {
        silence_stdout();
    }
    Ok(group)
}

/// The model's replica on this rank (rank 0's parameters on every rank),
/// when `--distributed`.
pub fn replica<'g, M: ModuleExt + ?Sized>(
    distributed: bool,
    model: &M,
    group: &'g ProcessGroup,
) -> Result<Option<DistributedDataParallel<'g>>> {
    Ok(match distributed {
        true => Some(DistributedDataParallel::new(model, group, DdpOptions::default())?),
        false => None,
    })
}

/// Ends the rank: MPI_Finalize after a run that worked; after an error,
/// the error naming the rank and the job aborted (the other ranks would
/// wait for this one forever), unless this is the only rank.
pub fn finish(group: ProcessGroup, result: Result<()>) -> Result<()> {
    match result {
        Ok(()) => Ok(group.finalize()?),
        Err(e) if group.world_size() > 1 => group.abort(&format!("{e:#}")),
        Err(e) => {
            let _ = group.finalize();
            Err(e)
        }
    }
}

/// Ranks other than 0 print nothing on stdout (their progress and
/// metrics are rank 0's); stderr still shows their errors.
fn silence_stdout() {
    use std::os::fd::AsRawFd;
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto stdout's descriptor; both descriptors are open.
        unsafe {
            libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO);
        }
    }
}
