//! End to end, on the real example: `mnist` stopped by Ctrl-C in the
//! middle of an epoch and continued with `--resume` ends exactly where an
//! uninterrupted run with the same flags ends (same validation loss and
//! accuracy to the last digit in history.csv, so the same weights).
//!
//! The example's code is compiled into this test (`#[path]`), so it is
//! always the current one; each run is a child process (this test binary
//! re-run on `example_child` with `WGRAD_EXAMPLE_ARGS` set), because Ctrl-C
//! and the run's exit belong to a process. CPU backend, the small MLP: the
//! test takes seconds.
#![cfg(unix)]

#[allow(dead_code)]
#[path = "../examples/mnist.rs"]
mod mnist;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

const CHILD_ENV: &str = "WGRAD_EXAMPLE_ARGS";

/// The example run with the arguments in `WGRAD_EXAMPLE_ARGS` (one per
/// line); without the variable it does nothing.
#[test]
fn example_child() {
    let Ok(args) = std::env::var(CHILD_ENV) else { return };
    let args = mnist::Args::parse_from(std::iter::once("mnist").chain(args.lines()));
    if let Err(e) = mnist::run(args) {
        eprintln!("{e:#}");
        std::process::exit(1);
    }
}

fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("example-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child running the example: two epochs of 64 steps of the MLP, quiet.
fn mnist(out: &Path, resume: bool) -> Command {
    let mut args = vec!["--model", "mlp", "--limit", "2048", "--epochs", "2", "--seed", "7", "--quiet"];
    if resume {
        args.push("--resume");
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["example_child", "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, format!("{}\n--out-dir\n{}", args.join("\n"), out.display()))
        .env("WGRAD_DEVICE", "cpu");
    cmd
}

fn succeeded(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// history.csv's rows without the header.
fn history(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    text.lines().skip(1).map(str::to_string).collect()
}

/// Validation loss and accuracy of each row (the columns that depend on
/// the weights alone, not on how a split epoch's running means were kept).
fn validation(rows: &[String]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| {
            let c: Vec<&str> = r.split(',').collect();
            (c[3].to_string(), c[4].to_string())
        })
        .collect()
}

/// The duration at the end of an epoch summary line ("... 774 samples/s  2.6s").
fn epoch_seconds(line: &str) -> f64 {
    let last = line.split_whitespace().last().unwrap_or_default();
    last.strip_suffix('s').and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no epoch time in {line:?}"))
}

#[test]
fn mnist_interrupted_mid_epoch_and_resumed_matches_an_uninterrupted_run() {
    let whole = folder("whole");
    succeeded("the uninterrupted run", &mnist(&whole, false).output().unwrap());
    let want = history(&whole);
    assert_eq!(want.len(), 2, "two epochs: {want:?}");

    // Ctrl-C once the first epoch's summary is out: the run stops at the end
    // of a step of the second epoch and saves.
    let split = folder("split");
    let mut child = mnist(&split, false).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let first_epoch = line.starts_with("epoch 1/2").then(|| epoch_seconds(&line));
        seen.push(line);
        if let Some(secs) = first_epoch {
            // After the epoch's files (curves.png is written last), a quarter
            // of an epoch in: the stop lands inside epoch 2, not at its
            // boundary (where the run would stop before stepping).
            let t = Instant::now();
            while !split.join("curves.png").exists() {
                assert!(t.elapsed() < Duration::from_secs(60), "epoch 1 wrote no curves.png");
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_secs_f64(secs / 4.0));
            // SAFETY: plain kill(2) on our own child's id.
            assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
            break;
        }
    }
    seen.extend(lines.map(|l| l.unwrap()));
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "the interrupted run did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let said = seen.join("\n");
    assert!(status.success(), "Ctrl-C ends the run successfully:\n{said}");
    assert!(
        said.contains("stopped by Ctrl-C after batch") && said.contains(" of epoch 2;") && said.contains("--resume"),
        "the run stopped inside the second epoch and said how to continue:\n{said}"
    );
    assert_eq!(history(&split).len(), 1, "only the first epoch finished before the stop");

    let resumed = succeeded("the resumed run", &mnist(&split, true).output().unwrap());
    assert!(resumed.contains("final test accuracy"), "the resumed run finished:\n{resumed}");
    let got = history(&split);
    assert_eq!(got.len(), 2, "the resumed run appends the second epoch: {got:?}");
    assert_eq!(validation(&got), validation(&want), "resumed vs uninterrupted validation (same weights)");
}
