// Own binary: it re-runs itself as child processes and SIGKILLs them at timed moments; other tests would load the cores and shift those moments.
//! Crash safety of checkpoints: a training process that writes a checkpoint
//! after every step is killed with SIGKILL at seeded random moments, many
//! times over, some of them in the middle of a write. After every kill the
//! checkpoint at the target path must load (never a partial file; the
//! killed writer's temporary file is left beside it and ignored), and a run
//! resumed from it must reach exactly (bit for bit) the parameters of an
//! uninterrupted run of the same number of steps.
//!
//! The child process is this test binary itself, re-run on
//! `training_child` with `WGRAD_CRASH_CHILD` naming the run folder; without
//! that variable `training_child` does nothing.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wgrad::autograd::HostRng;
use wgrad::nn::checkpoint::TrainingCheckpoint;
use wgrad::nn::optim::{Adam, Optimizer};
use wgrad::nn::{Dropout, Linear, ReLU, Sequential};
use wgrad::prelude::*;

const CHILD_ENV: &str = "WGRAD_CRASH_CHILD";
/// Steps a resumed run takes before it is compared with the uninterrupted one.
const MORE: u64 = 3;

/// A model big enough (~1.6 MB of weights, ~5 MB of checkpoint with Adam's
/// moments) that writing a checkpoint takes a good share of each step, so
/// random kills land mid-write; with dropout, so its stream must survive too.
struct Run {
    model: Sequential,
    opt: Adam,
    step: u64,
}

impl Run {
    fn new(dev: &Device) -> Run {
        let mut init = Init::new(dev, 11);
        let model = Sequential::new()
            .add(Linear::builder(256, 768).build(&mut init))
            .add(ReLU)
            .add(Dropout::builder(0.2).build(&mut init))
            .add(Linear::builder(768, 256).build(&mut init));
        let opt = Adam::new(model.parameters(), 1e-3);
        Run { model, opt, step: 0 }
    }

    /// One step on data that depends only on the step number, as an
    /// epoch-seeded loader's would.
    fn step(&mut self, dev: &Device) {
        let x = Tensor::randn(&[8, 256], 1000 + self.step, dev);
        let y = Tensor::randn(&[8, 256], 5000 + self.step, dev);
        let d = self.model.forward(&x) - y;
        (&d * &d).mean_all().backward();
        self.opt.step();
        self.opt.zero_grad();
        self.step += 1;
    }

    fn checkpoint(&self) -> TrainingCheckpoint {
        let mut ck = TrainingCheckpoint::capture(&self.model, &self.opt);
        ck.step = self.step;
        ck
    }

    fn resume(ck: &TrainingCheckpoint, dev: &Device) -> Run {
        let mut run = Run::new(dev);
        ck.restore(&run.model, &mut run.opt).unwrap();
        run.step = ck.step;
        run
    }

    fn bits(&self) -> Vec<u32> {
        self.model.parameters().iter().flat_map(|p| p.to_vec()).map(f32::to_bits).collect()
    }
}

/// The child: resumes from the folder's checkpoint if there is one, then
/// trains and checkpoints after every step until it is killed.
#[test]
fn training_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dev = Device::cpu();
    let path = PathBuf::from(dir).join("last.safetensors");
    let mut run = match path.exists() {
        true => Run::resume(&TrainingCheckpoint::load(&path, &dev).unwrap(), &dev),
        false => Run::new(&dev),
    };
    // Bounded, in case the parent dies without killing us.
    for _ in 0..100_000 {
        run.step(&dev);
        run.checkpoint().save(&path).unwrap();
    }
}

fn temporaries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect()
}

#[test]
fn sigkill_during_checkpointing_leaves_a_loadable_checkpoint_that_resumes_exactly() {
    let started = Instant::now();
    let dev = Device::cpu();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("crash-safety-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("last.safetensors");

    let mut reference = Run::new(&dev);
    let mut rng = HostRng::new(0xC0FFEE);
    let (mut last_step, mut rounds, mut mid_write) = (0, 0, 0);
    // At least 12 kills, and more (up to 40) until three have hit a write.
    while rounds < 12 || (mid_write < 3 && rounds < 40) {
        rounds += 1;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["training_child", "--exact", "--nocapture"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + rng.next_u64() % 400));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "round {rounds}: the child ended by itself ({status}) instead of being killed"
        );

        let temps = temporaries(&dir);
        if !temps.is_empty() {
            mid_write += 1;
        }
        if !path.exists() {
            assert_eq!(last_step, 0, "round {rounds}: the checkpoint vanished");
            continue;
        }
        let ck = TrainingCheckpoint::load(&path, &dev).unwrap_or_else(|e| {
            panic!("round {rounds}: the checkpoint does not load ({} temporaries beside it): {e}", temps.len())
        });
        assert!(ck.step >= last_step, "round {rounds}: step went back from {last_step} to {}", ck.step);
        last_step = ck.step;

        let mut resumed = Run::resume(&ck, &dev);
        for _ in 0..MORE {
            resumed.step(&dev);
        }
        while reference.step < resumed.step {
            reference.step(&dev);
        }
        let (a, b) = (resumed.bits(), reference.bits());
        let first = a.iter().zip(&b).position(|(x, y)| x != y);
        assert!(
            first.is_none(),
            "round {rounds}: resumed at step {} then diverged at parameter value {first:?}",
            ck.step
        );
    }
    // The killed writers' temporaries are garbage: the next save deletes them.
    reference.checkpoint().save(&path).unwrap();
    assert_eq!(temporaries(&dir), Vec::<PathBuf>::new(), "a save leaves no stale temporary behind");
    eprintln!("{rounds} kills, {mid_write} during a write, reached step {last_step}, in {:.1?}", started.elapsed());
    assert!(last_step > 0, "no child ever finished a step: the kill delays are too short");
    assert!(mid_write > 0, "no kill landed during a write, so the test did not exercise one");
    std::fs::remove_dir_all(&dir).unwrap();
}
