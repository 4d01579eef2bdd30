// Own binary: it re-runs itself as children that install a SIGINT handler and are sent SIGINT, on a timing other tests would disturb.
//! The examples' shared run control (examples/common/control.rs): the first
//! Ctrl-C lets the step finish and the loop save a resumable checkpoint and
//! exit successfully; a second one exits at once; out-of-memory inside a
//! guarded step becomes an error naming the flag to lower.
//!
//! The children are this test binary re-run on `sigint_child` with
//! `WGRAD_SIGINT_CHILD` naming a folder (and `WGRAD_SIGINT_IGNORE` set for a
//! loop that never checks the flag, `WGRAD_SIGINT_TRAINER` for the
//! examples' own path: `Trainer::stop_flag` with a run folder); without the
//! variable it does nothing.
#![cfg(unix)]

#[path = "../examples/common/control.rs"]
mod control;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use wgrad::nn::checkpoint::TrainingCheckpoint;
use wgrad::nn::optim::{Optimizer, Sgd};
use wgrad::nn::train::{Outcome, RunDir, StepOutput, Trainer};
use wgrad::nn::Linear;
use wgrad::prelude::*;

const CHILD_ENV: &str = "WGRAD_SIGINT_CHILD";

/// A training loop shaped like the examples': step, then check the flag.
#[test]
fn sigint_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = PathBuf::from(dir);
    if std::env::var_os("WGRAD_SIGINT_TRAINER").is_some() {
        return trainer_child(&dir);
    }
    let ignore = std::env::var_os("WGRAD_SIGINT_IGNORE").is_some();
    let stop = control::Stop::install();
    let dev = Device::cpu();
    let model = Linear::builder(32, 32).build(&mut Init::new(&dev, 0));
    let mut opt = Sgd::new(model.parameters(), 1e-2);
    std::fs::write(dir.join("ready"), b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut step = 0;
    while Instant::now() < deadline {
        let x = Tensor::randn(&[8, 32], step, &dev);
        model.forward(&x).square().mean_all().backward();
        opt.step();
        opt.zero_grad();
        step += 1;
        if !ignore && stop.requested() {
            let mut ck = TrainingCheckpoint::capture(&model, &opt);
            ck.step = step;
            ck.save(dir.join("last.safetensors")).unwrap();
            println!("{}", control::resume_hint(&format!("step {step}")));
            return;
        }
    }
    panic!("no Ctrl-C arrived");
}

/// Batches a Trainer epoch reads in `trainer_child` (more than it reaches).
const EPOCH: usize = 1 << 20;

/// The examples' path: a Trainer run with a run folder and the Ctrl-C flag
/// (`max_steps` bounds it when resumed, or when no Ctrl-C comes).
fn trainer_run(dir: &Path, resume: bool, max_steps: u64, ready: impl Fn()) -> (wgrad::nn::train::Fit, Linear) {
    let stop = control::Stop::install();
    let dev = Device::cpu();
    let mut model = Linear::builder(32, 32).build(&mut Init::new(&dev, 0));
    let mut opt = Sgd::new(model.parameters(), 1e-2);
    let fit = Trainer::new(&mut model, &mut opt, |m: &Linear, x: Tensor| {
        ready();
        StepOutput::new(m.forward(&x).square().mean_all(), 8)
    })
    .run_dir(RunDir::create(dir).unwrap())
    .resume(resume)
    .stop_flag(stop.flag())
    .max_steps(max_steps)
    .quiet()
    .fit(EPOCH, |_, skip| (skip..EPOCH).map(|i| Ok::<_, std::io::Error>(Tensor::randn(&[8, 32], i as u64, &dev))))
    .unwrap();
    (fit, model)
}

fn trainer_child(dir: &Path) {
    let ready = || {
        if !dir.join("ready").exists() {
            std::fs::write(dir.join("ready"), b"").unwrap();
        }
    };
    let (fit, _) = trainer_run(dir, false, 1 << 40, ready);
    assert!(matches!(fit.outcome, Outcome::Interrupted { epoch: 1, .. }), "{:?}", fit.outcome);
    println!("{}", control::resume_hint(&format!("step {}", fit.steps)));
}

fn spawn(dir: &Path, ignore: bool) -> Child {
    spawn_with(dir, if ignore { Some("WGRAD_SIGINT_IGNORE") } else { None })
}

fn spawn_with(dir: &Path, var: Option<&str>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["sigint_child", "--exact", "--nocapture"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(var) = var {
        cmd.env(var, "1");
    }
    let child = cmd.spawn().unwrap();
    let t = Instant::now();
    while !dir.join("ready").exists() {
        assert!(t.elapsed() < Duration::from_secs(20), "the child never started its loop");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100)); // a few steps in
    child
}

fn sigint(child: &Child) {
    // SAFETY: plain kill(2) on our own child's id.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
}

fn wait(mut child: Child) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if t.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("the child did not stop after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ctrl-c-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn first_ctrl_c_finishes_the_step_saves_and_exits_successfully() {
    let dir = folder("once");
    let child = spawn(&dir, false);
    sigint(&child);
    let status = wait(child);
    assert!(status.success(), "exit status {status}");
    let ck = TrainingCheckpoint::load(dir.join("last.safetensors"), &Device::cpu()).expect("a checkpoint was written");
    assert!(ck.step > 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn first_ctrl_c_stops_a_trainer_run_at_the_end_of_a_step_and_it_resumes() {
    let dir = folder("trainer");
    let child = spawn_with(&dir, Some("WGRAD_SIGINT_TRAINER"));
    sigint(&child);
    let status = wait(child);
    assert!(status.success(), "exit status {status}");
    let dev = Device::cpu();
    let ck = TrainingCheckpoint::load(dir.join("last.safetensors"), &dev).expect("a checkpoint was written");
    assert!(ck.step > 0);
    // Mid-epoch, after whole steps: the batch position is the step count.
    assert_eq!((ck.epoch, ck.extra.meta["trainer.batch"].parse::<u64>().unwrap()), (0, ck.step));

    // Resumed for 3 more steps, it equals a run of them all uninterrupted.
    let (fit, resumed) = trainer_run(&dir, true, ck.step + 3, || {});
    assert_eq!((fit.outcome, fit.steps), (Outcome::Completed, ck.step + 3));
    let whole_dir = folder("trainer-whole");
    let (_, whole) = trainer_run(&whole_dir, false, ck.step + 3, || {});
    assert_eq!(resumed.weight.to_vec(), whole.weight.to_vec());
    for d in [dir, whole_dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn second_ctrl_c_exits_at_once() {
    let dir = folder("twice");
    let child = spawn(&dir, true);
    sigint(&child);
    std::thread::sleep(Duration::from_millis(50));
    sigint(&child);
    let status = wait(child);
    assert_eq!(status.code(), Some(130), "exit status {status}");
    assert!(!dir.join("last.safetensors").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn out_of_memory_in_a_guarded_step_names_the_flag_to_lower() {
    let dev = Device::cpu();
    dev.set_memory_budget(Some(dev.stats().bytes_live + (1 << 20)));
    let err = control::guard("training step", &[("--batch-size", 4096)], || {
        Tensor::randn(&[4096, 1024], 0, &dev).sum_all().item()
    })
    .expect_err("4096x1024 floats are past a 1 MiB budget");
    let msg = err.to_string();
    assert!(msg.contains("out of device memory") && msg.contains("--batch-size (now 4096)"), "{msg}");
    // Within the budget the guard is transparent.
    let v = control::guard("training step", &[("--batch-size", 4)], || Tensor::ones(&[4, 4], &dev).sum_all().item());
    assert_eq!(v.unwrap(), 16.0);
}
