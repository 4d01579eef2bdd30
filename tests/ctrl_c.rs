//! The examples' shared run control (examples/common/control.rs): the first
//! Ctrl-C lets the step finish and the loop save a resumable checkpoint and
//! exit successfully; a second one exits at once; out-of-memory inside a
//! guarded step becomes an error naming the flag to lower.
//!
//! The children are this test binary re-run on `sigint_child` with
//! `WGRAD_SIGINT_CHILD` naming a folder (and `WGRAD_SIGINT_IGNORE` set for a
//! loop that never checks the flag); without the variable it does nothing.
#![cfg(unix)]

#[path = "../examples/common/control.rs"]
mod control;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use wgrad::nn::checkpoint::TrainingCheckpoint;
use wgrad::nn::optim::{Optimizer, Sgd};
use wgrad::nn::Linear;
use wgrad::prelude::*;

const CHILD_ENV: &str = "WGRAD_SIGINT_CHILD";

/// A training loop shaped like the examples': step, then check the flag.
#[test]
fn sigint_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = PathBuf::from(dir);
    let ignore = std::env::var_os("WGRAD_SIGINT_IGNORE").is_some();
    let stop = control::Stop::install();
    let dev = Device::cpu();
    let model = Linear::new(32, 32, true, &mut Generator::new(0), &dev);
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

fn spawn(dir: &Path, ignore: bool) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["sigint_child", "--exact", "--nocapture"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if ignore {
        cmd.env("WGRAD_SIGINT_IGNORE", "1");
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
