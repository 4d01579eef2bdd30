// Own binary: it compiles the examples in (`#[path]`), re-runs itself as each example's process, and sends those children SIGINT.
//! Every example run as a user runs it, with each flag it documents: the
//! example × flag matrix ([`RUNS`]), and the check that the README's and
//! docs' example commands and each example's `--help` agree with it.
//!
//! The examples' code is compiled into this one test binary (`#[path]`), so
//! it is always the current code and CI links one binary for all six. Each
//! run is a child process (this binary re-run on `example_child` with
//! `WGRAD_EXAMPLE` holding the example's name and arguments, one per
//! line), because exit status, Ctrl-C and `--help`'s exit belong to a
//! process. Sizes are tiny (a few batches); what a row checks is that the
//! run ends with status 0, writes the files the docs promise and reports
//! finite losses, not what it learns (tests/main/mnist_end_to_end.rs does that).
#![cfg(unix)]
// Each example brings its own copy of examples/common/*, as its binary does.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../examples/char_lstm.rs"]
mod char_lstm;
#[allow(dead_code)]
#[path = "../examples/cifar10_resnet.rs"]
mod cifar10_resnet;
#[allow(dead_code)]
#[path = "../examples/devices.rs"]
mod devices;
#[allow(dead_code)]
#[path = "../examples/mnist.rs"]
mod mnist;
#[allow(dead_code)]
#[path = "../examples/tiny_gpt.rs"]
mod tiny_gpt;
#[allow(dead_code)]
#[path = "../examples/vae.rs"]
mod vae;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use wgrad::gpu_core::testing::gpu_or_skip;
use wgrad::nn::train::History;
use wgrad::prelude::DeviceSpec;

const CHILD_ENV: &str = "WGRAD_EXAMPLE";

/// The examples, by the name `cargo run --example` takes.
const EXAMPLES: [&str; 6] = ["mnist", "cifar10_resnet", "vae", "char_lstm", "tiny_gpt", "devices"];

/// How a row runs its example.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Once, to the end.
    Plain,
    /// Stopped by Ctrl-C once its first epoch (or round of `--eval-every`
    /// steps) is summarised, then continued with the same flags plus
    /// `--resume` (and a budget that ends soon after the stop), which must
    /// finish the run.
    InterruptThenResume,
}

/// One row of the matrix: an example, the device, its flags, and the files
/// its run folder must hold afterwards.
struct Run {
    example: &'static str,
    /// `WGRAD_DEVICE` for the run: `cpu`, or `gpu` (lavapipe in CI).
    device: &'static str,
    /// The flags, split at whitespace. `{mnist}`, `{cifar}`, `{text}` and
    /// `{eval_text}` become tiny local datasets the test writes; every
    /// training run also gets `--out-dir` (a fresh folder) and `--quiet`.
    args: &'static str,
    mode: Mode,
    /// Files the run folder must hold (non-empty) at the end.
    files: &'static [&'static str],
}

/// What every training run's folder holds (docs: README "The two commands").
const TRAINED: &[&str] = &["history.csv", "curves.png", "last.safetensors", "best.safetensors"];
const PROFILED: &[&str] = &["history.csv", "curves.png", "last.safetensors", "best.safetensors", "profile.json"];
const TEXT: &[&str] = &["history.csv", "curves.png", "last.safetensors", "best.safetensors", "vocab.txt"];
const TEXT_PROFILED: &[&str] =
    &["history.csv", "curves.png", "last.safetensors", "best.safetensors", "vocab.txt", "profile.json"];
const VAE: &[&str] =
    &["history.csv", "curves.png", "last.safetensors", "best.safetensors", "reconstructions.png", "samples.png"];
const AE: &[&str] = &["history.csv", "curves.png", "last.safetensors", "best.safetensors", "reconstructions.png"];
const VAE_PROFILED: &[&str] = &[
    "history.csv",
    "curves.png",
    "last.safetensors",
    "best.safetensors",
    "reconstructions.png",
    "samples.png",
    "profile.json",
];

use Mode::*;

/// The example × flag matrix: every flag an example takes appears in at
/// least one of its rows (checked by `every_flag_an_example_takes_is_in_the_matrix`).
/// `--profile` rows train at least 10 steps (the profiled step is the tenth).
#[rustfmt::skip]
const RUNS: &[Run] = &[
    // mnist: the README's main job.
    Run { example: "mnist", device: "cpu", mode: Plain, files: PROFILED,
          args: "--model mlp --limit 320 --epochs 1 --workers 0 --profile" },
    Run { example: "mnist", device: "cpu", mode: Plain, files: TRAINED,
          args: "--model cnn --limit 96 --epochs 1 --amp --workers 2" },
    Run { example: "mnist", device: "cpu", mode: Plain, files: TRAINED,
          args: "--model lenet --data-dir {mnist} --epochs 2 --batch-size 16 --lr 0.01 --seed 3 --no-tensorboard \
                 --export-onnx {out}/model.onnx" },
    Run { example: "mnist", device: "gpu", mode: Plain, files: TRAINED,
          args: "--model cnn --limit 64 --epochs 1 --amp" },
    Run { example: "mnist", device: "gpu", mode: Plain, files: TRAINED,
          args: "--model mlp --limit 256 --epochs 1 --compile" },
    Run { example: "mnist", device: "cpu", mode: InterruptThenResume, files: TRAINED,
          args: "--model mlp --data-dir {mnist} --epochs 50 --batch-size 2" },
    // cifar10_resnet: one CIFAR depth and the ImageNet ResNet-18, both schedules.
    Run { example: "cifar10_resnet", device: "cpu", mode: Plain, files: PROFILED,
          args: "--synthetic --synthetic-size 40 --batch-size 4 --epochs 1 --model resnet20 --schedule cosine \
                 --warmup 1 --no-decay-bn-bias --workers 0 --profile" },
    Run { example: "cifar10_resnet", device: "cpu", mode: Plain, files: TRAINED,
          args: "--synthetic --synthetic-size 32 --batch-size 8 --epochs 1 --model resnet18 --schedule step --amp \
                 --workers 2" },
    Run { example: "cifar10_resnet", device: "cpu", mode: Plain, files: TRAINED,
          args: "--data-dir {cifar} --limit 12 --batch-size 4 --epochs 2 --model resnet20 --lr 0.05 --momentum 0.8 \
                 --weight-decay 5e-4 --seed 4 --no-tensorboard --export-onnx {out}/model.onnx" },
    Run { example: "cifar10_resnet", device: "gpu", mode: Plain, files: TRAINED,
          args: "--synthetic --synthetic-size 16 --batch-size 8 --epochs 1 --model resnet20 --amp" },
    Run { example: "cifar10_resnet", device: "gpu", mode: Plain, files: TRAINED,
          args: "--synthetic --synthetic-size 40 --batch-size 8 --epochs 1 --model resnet20 --compile" },
    Run { example: "cifar10_resnet", device: "cpu", mode: Plain, files: TRAINED,
          args: "--synthetic --synthetic-size 16 --batch-size 8 --epochs 1 --model resnet20 --compile --amp" },
    // --distributed alone is a group of one (under mpirun: .ci/run, docs/distributed.md).
    Run { example: "cifar10_resnet", device: "cpu", mode: Plain, files: TRAINED,
          args: "--synthetic --synthetic-size 16 --batch-size 8 --epochs 1 --model resnet20 --distributed \
                 --sync-bn" },
    Run { example: "cifar10_resnet", device: "cpu", mode: InterruptThenResume, files: TRAINED,
          args: "--data-dir {cifar} --batch-size 2 --epochs 50 --model resnet20" },
    // vae: the three models.
    Run { example: "vae", device: "cpu", mode: Plain, files: VAE_PROFILED,
          args: "--model vae --limit 320 --batch-size 32 --epochs 1 --latent 8 --workers 0 --profile" },
    Run { example: "vae", device: "cpu", mode: Plain, files: AE,
          args: "--model ae --limit 64 --batch-size 32 --epochs 1 --lr 0.01 --seed 1 --workers 2 --no-tensorboard" },
    Run { example: "vae", device: "cpu", mode: Plain, files: AE,
          args: "--model conv-ae --data-dir {mnist} --batch-size 16 --epochs 1" },
    Run { example: "vae", device: "cpu", mode: InterruptThenResume, files: VAE,
          args: "--model vae --data-dir {mnist} --batch-size 2 --epochs 50" },
    // char_lstm: the bundled corpus once (large batches keep its evaluation short), local texts otherwise.
    Run { example: "char_lstm", device: "cpu", mode: Plain, files: TEXT,
          args: "--steps 2 --eval-every 2 --batch 64 --seq-len 64 --hidden 16 --embed 8 --layers 1 --sample-len 10" },
    Run { example: "char_lstm", device: "cpu", mode: Plain, files: TEXT_PROFILED,
          args: "--text {text} --eval-text {eval_text} --steps 10 --eval-every 5 --batch 4 --seq-len 16 --hidden 32 \
                 --embed 16 --layers 2 --dropout 0.1 --lr 0.01 --clip 0.5 --sample-len 20 --temperature 0 --top-k 3 \
                 --prompt ab --seed 2 --profile" },
    Run { example: "char_lstm", device: "cpu", mode: Plain, files: TEXT,
          args: "--text {text} --steps 4 --eval-every 2 --batch 4 --seq-len 16 --hidden 32 --embed 16 --clip 0 --amp \
                 --no-tensorboard" },
    Run { example: "char_lstm", device: "gpu", mode: Plain, files: TEXT,
          args: "--text {text} --steps 2 --eval-every 2 --batch 4 --seq-len 8 --hidden 16 --embed 8 --layers 1 --amp" },
    Run { example: "char_lstm", device: "cpu", mode: InterruptThenResume, files: TEXT,
          args: "--text {text} --steps 1000 --eval-every 2 --batch 2 --seq-len 8 --hidden 16 --embed 8 --layers 1" },
    // tiny_gpt
    Run { example: "tiny_gpt", device: "cpu", mode: Plain, files: TEXT,
          args: "--steps 2 --eval-every 2 --batch 64 --seq-len 64 --width 16 --heads 2 --layers 1 --sample-len 10" },
    Run { example: "tiny_gpt", device: "cpu", mode: Plain, files: TEXT_PROFILED,
          args: "--text {text} --eval-text {eval_text} --steps 10 --eval-every 5 --batch 4 --seq-len 16 --width 32 \
                 --heads 2 --layers 2 --tie-weights --warmup 2 --weight-decay 0.1 --dropout 0.1 --lr 3e-3 \
                 --clip 0.5 --sample-len 20 --temperature 0.5 --top-k 5 --prompt ab --seed 5 --profile" },
    Run { example: "tiny_gpt", device: "cpu", mode: Plain, files: TEXT,
          args: "--text {text} --steps 4 --eval-every 2 --batch 4 --seq-len 16 --width 32 --heads 2 --amp \
                 --no-tensorboard" },
    Run { example: "tiny_gpt", device: "gpu", mode: Plain, files: TEXT,
          args: "--text {text} --steps 2 --eval-every 2 --batch 4 --seq-len 8 --width 16 --heads 2 --layers 1 --amp" },
    Run { example: "tiny_gpt", device: "gpu", mode: Plain, files: TEXT,
          args: "--text {text} --steps 6 --eval-every 6 --batch 4 --seq-len 8 --width 16 --heads 2 --layers 1 \
                 --dropout 0.1 --amp --compile" },
    Run { example: "tiny_gpt", device: "cpu", mode: Plain, files: TEXT,
          args: "--text {text} --steps 2 --eval-every 2 --batch 4 --seq-len 8 --width 16 --heads 2 --layers 1 \
                 --distributed" },
    Run { example: "tiny_gpt", device: "cpu", mode: InterruptThenResume, files: TEXT,
          args: "--text {text} --steps 1000 --eval-every 2 --batch 2 --seq-len 8 --width 16 --heads 2 --layers 1" },
    // devices: lists adapters and runs one kernel on the chosen device.
    Run { example: "devices", device: "cpu", mode: Plain, files: &[], args: "" },
    Run { example: "devices", device: "gpu", mode: Plain, files: &[], args: "" },
];

/// The example named by `WGRAD_EXAMPLE` (name, then one argument a line),
/// parsed and run as its `main` does; without the variable it does nothing.
#[test]
fn example_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let mut words = spec.lines();
    let name = words.next().expect("WGRAD_EXAMPLE names an example");
    let argv: Vec<&str> = std::iter::once(name).chain(words).collect();
    let result = match name {
        "mnist" => mnist::run(mnist::Args::parse_from(argv)),
        "cifar10_resnet" => cifar10_resnet::run(cifar10_resnet::Args::parse_from(argv)),
        "vae" => vae::run(vae::Args::parse_from(argv)),
        "char_lstm" => char_lstm::run(char_lstm::Args::parse_from(argv)),
        "tiny_gpt" => tiny_gpt::run(tiny_gpt::Args::parse_from(argv)),
        "devices" => devices::run(devices::Args::parse_from(argv)),
        other => panic!("no example {other:?}"),
    };
    if let Err(e) = result {
        eprintln!("{e:#}");
        std::process::exit(1);
    }
}

/// An example's command-line interface, as its `--help` shows it.
fn command(example: &str) -> clap::Command {
    match example {
        "mnist" => mnist::Args::command(),
        "cifar10_resnet" => cifar10_resnet::Args::command(),
        "vae" => vae::Args::command(),
        "char_lstm" => char_lstm::Args::command(),
        "tiny_gpt" => tiny_gpt::Args::command(),
        "devices" => devices::Args::command(),
        other => panic!("no example {other:?}"),
    }
}

/// The long flags an example takes (`--help` and `--version` aside).
fn flags(example: &str) -> BTreeSet<String> {
    command(example).get_arguments().filter_map(|a| a.get_long()).map(|l| format!("--{l}")).collect()
}

/// A child process running `example` with `args` on `WGRAD_DEVICE=device`.
fn child(example: &str, args: &[String], device: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    let spec = std::iter::once(example.to_string()).chain(args.iter().cloned()).collect::<Vec<_>>().join("\n");
    cmd.args(["example_child", "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, spec)
        .env("WGRAD_DEVICE", device)
        .stdin(Stdio::null());
    cmd
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn succeeded(what: &str, out: Output) -> String {
    assert!(out.status.success(), "{}", describe(what, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh folder for one test's files, removed when the test passes (a
/// failing test leaves it for inspection; every run made one per example
/// under target/tmp, tens of MB each, that no run removed).
fn folder(name: &str) -> Folder {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("examples-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Folder(dir)
}

/// See [`folder`].
struct Folder(PathBuf);

impl std::ops::Deref for Folder {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Tiny local datasets for `--data-dir` and `--text`, in the formats the
/// real ones use (IDX for MNIST, CIFAR-10's binary batches, UTF-8 text).
struct Data {
    mnist: PathBuf,
    cifar: PathBuf,
    text: PathBuf,
    eval_text: PathBuf,
}

impl Data {
    fn write(dir: &Path) -> Data {
        let mnist = dir.join("mnist");
        std::fs::create_dir_all(&mnist).unwrap();
        for (prefix, n) in [("train", 48u32), ("t10k", 16)] {
            let mut images = vec![0, 0, 8, 3];
            for v in [n, 28, 28] {
                images.extend(v.to_be_bytes());
            }
            images.extend((0..n * 784).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
            let mut labels = vec![0, 0, 8, 1];
            labels.extend(n.to_be_bytes());
            labels.extend((0..n).map(|i| (i % 10) as u8));
            std::fs::write(mnist.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
            std::fs::write(mnist.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
        }
        // `--data-dir` is the cache folder that holds the extracted archive.
        let cifar = dir.join("cifar");
        let batches = cifar.join("cifar-10-batches-bin");
        std::fs::create_dir_all(&batches).unwrap();
        let record = |i: u32| -> Vec<u8> {
            std::iter::once((i % 10) as u8)
                .chain((0..3072u32).map(|p| ((p ^ i).wrapping_mul(40_503) >> 8) as u8))
                .collect()
        };
        for file in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"] {
            let seed = file.len() as u32 * 31 + file.as_bytes()[file.len() - 1] as u32;
            let bytes: Vec<u8> = (0..4).flat_map(|i| record(seed * 7 + i)).collect();
            std::fs::write(batches.join(format!("{file}.bin")), bytes).unwrap();
        }
        let text = dir.join("text.txt");
        let line = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.\n";
        std::fs::write(&text, line.repeat(20)).unwrap();
        let eval_text = dir.join("eval.txt");
        std::fs::write(&eval_text, "The slings and arrows of outrageous fortune.\n").unwrap();
        Data { mnist, cifar, text, eval_text }
    }

    /// A row's flags with the placeholders filled in.
    fn args(&self, row: &str) -> Vec<String> {
        row.split_whitespace()
            .map(|w| match w {
                "{mnist}" => self.mnist.display().to_string(),
                "{cifar}" => self.cifar.display().to_string(),
                "{text}" => self.text.display().to_string(),
                "{eval_text}" => self.eval_text.display().to_string(),
                w => w.to_string(),
            })
            .collect()
    }
}

/// The run folder holds `files`, and its history has `epochs` rows of finite losses.
fn check_run_folder(what: &str, out: &Path, files: &[&str], epochs: Option<usize>) {
    for f in files {
        let len = std::fs::metadata(out.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{what}: no {f} in {}", out.display());
    }
    let history = History::load_csv(out.join("history.csv")).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(!history.is_empty(), "{what}: empty history.csv");
    if let Some(n) = epochs {
        assert_eq!(history.len(), n, "{what}: epochs in history.csv");
    }
    for r in &history.records {
        let losses = [Some(r.train_loss), r.val_loss];
        assert!(losses.iter().flatten().all(|l| l.is_finite()), "{what}: a loss is not finite: {r:?}");
    }
}

/// Rounds of training a row asks for: `--epochs`, or `--steps / --eval-every`.
fn rounds(args: &[String]) -> Option<usize> {
    let value = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].parse::<usize>().unwrap());
    value("--epochs").or_else(|| Some(value("--steps")?.div_ceil(value("--eval-every")?)))
}

/// `args` with `flag`'s value replaced by `value`.
fn with_value(args: &[String], flag: &str, value: usize) -> Vec<String> {
    let mut args = args.to_vec();
    let i = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} missing in {args:?}"));
    args[i + 1] = value.to_string();
    args
}

/// The number after `word` in `text` ("... after batch 3 of epoch 2; ...").
fn number_after(text: &str, word: &str) -> Option<usize> {
    let rest = &text[text.find(word)? + word.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).find(|w| !w.is_empty())?.parse().ok()
}

/// Runs `cmd`, sends it Ctrl-C once its first epoch's summary line is out
/// and `before_signal` has returned, and waits for it to exit: its status,
/// stdout and stderr.
fn interrupted(mut cmd: Command, before_signal: impl FnOnce()) -> (ExitStatus, String, String) {
    let mut run = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        // "epoch  1/50  train loss ..." (the number padded to the total's width).
        let first = line.strip_prefix("epoch").is_some_and(|rest| rest.trim_start().starts_with("1/"));
        seen.push(line);
        if first {
            before_signal();
            // SAFETY: plain kill(2) on our own child's id.
            assert_eq!(unsafe { libc::kill(run.id() as libc::pid_t, libc::SIGINT) }, 0);
            break;
        }
    }
    seen.extend(lines.map(|l| l.unwrap()));
    let out = run.wait_with_output().unwrap();
    (out.status, seen.join("\n"), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs `example` with `args` (a budget far longer than the test waits
/// for), stops it with Ctrl-C after its first epoch's summary line, then
/// continues it with `--resume` and a budget one epoch (or two rounds of
/// `--eval-every` steps) past where it stopped, which it must finish.
/// Returns the resumed run's arguments and output.
fn interrupt_then_resume(what: &str, example: &str, args: &[String], device: &str) -> (Vec<String>, String) {
    let (status, stdout, stderr) = interrupted(child(example, args, device), || {});
    assert!(status.success(), "{what} (interrupted): {status}\n{stdout}\n{stderr}");
    let hint = stdout.lines().find(|l| l.contains("stopped by Ctrl-C")).unwrap_or_else(|| {
        panic!("{what}: the run was not interrupted:\n{stdout}");
    });
    assert!(hint.contains("--resume"), "{what}: the stop does not say how to continue: {hint}");
    let mut resumed = match (number_after(hint, " of epoch "), number_after(hint, "after step ")) {
        (Some(epoch), _) => with_value(args, "--epochs", epoch + 1),
        (None, Some(step)) => {
            let every = number_after(&args.join(" "), "--eval-every ").expect("text rows pass --eval-every");
            with_value(args, "--steps", (step / every + 2) * every)
        }
        _ => panic!("{what}: where did the run stop? {hint}"),
    };
    resumed.push("--resume".into());
    let out = succeeded(&format!("{what} --resume"), child(example, &resumed, device).output().unwrap());
    (resumed, out)
}

/// Runs every row of `example` (GPU rows only where a GPU adapter exists,
/// and required to exist under `WGRAD_REQUIRE_GPU=1`).
fn run_matrix(example: &str) {
    let dir = folder(example);
    let data = Data::write(&dir);
    let has_gpu = RUNS.iter().any(|r| r.example == example && r.device == "gpu")
        && gpu_or_skip(&format!("{example} matrix rows on WGRAD_DEVICE=gpu")).is_some();

    // `--help` prints the flags and the device text select.rs defines, and exits 0.
    let help = succeeded(&format!("{example} --help"), child(example, &["--help".into()], "cpu").output().unwrap());
    assert!(help.contains("Usage:") && help.contains(DeviceSpec::HELP), "{example} --help:\n{help}");
    for flag in flags(example) {
        assert!(help.contains(&flag), "{example} --help does not list {flag}:\n{help}");
    }

    for (i, row) in RUNS.iter().enumerate().filter(|(_, r)| r.example == example) {
        if row.device == "gpu" && !has_gpu {
            continue;
        }
        let out = dir.join(format!("run{i}"));
        // `{out}` is the row's run folder.
        let mut args: Vec<String> =
            data.args(row.args).into_iter().map(|a| a.replace("{out}", &out.display().to_string())).collect();
        let trains = example != "devices";
        if trains {
            args.extend(["--out-dir".to_string(), out.display().to_string(), "--quiet".into()]);
        }
        let what = format!("{example} {} (WGRAD_DEVICE={})", row.args, row.device);
        let started = Instant::now();
        let (args, stdout) = match row.mode {
            Plain => {
                let out = succeeded(&what, child(example, &args, row.device).output().unwrap());
                (args, out)
            }
            InterruptThenResume => interrupt_then_resume(&what, example, &args, row.device),
        };
        println!("{what}: {:.1} s", started.elapsed().as_secs_f64());
        if trains {
            check_run_folder(&what, &out, row.files, rounds(&args));
            // TensorBoard's event files beside history.csv, unless turned off.
            let events = std::fs::read_dir(&out)
                .unwrap()
                .filter(|f| f.as_ref().unwrap().file_name().to_string_lossy().starts_with("events.out.tfevents."))
                .count();
            match row.args.contains("--no-tensorboard") {
                true => assert_eq!(events, 0, "{what}: --no-tensorboard wrote event files"),
                false => assert!(events > 0, "{what}: no TensorBoard event file in {}", out.display()),
            }
        } else {
            assert!(stdout.contains("kernel check:") && stdout.contains("ok"), "{what}:\n{stdout}");
        }
        if row.args.contains("--profile") {
            assert!(stdout.contains("profile of training step 10"), "{what}: no profile table:\n{stdout}");
        }
        if row.args.contains("--export-onnx") {
            check_onnx_export(&what, &out.join("model.onnx"), &stdout);
        }
    }
}

/// `--export-onnx`: the file decodes as an ONNX model whose image input
/// has a symbolic batch dim and whose weights are initializers (ONNX
/// Runtime runs these models in crates/onnx/tests/onnxruntime.rs).
fn check_onnx_export(what: &str, path: &Path, stdout: &str) {
    use prost::Message;
    use wgrad::onnx::proto::{tensor_shape_proto::dimension::Value, type_proto, ModelProto};
    assert!(stdout.contains("best model as ONNX"), "{what}: no export line:\n{stdout}");
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{what}: {}: {e}", path.display()));
    let model =
        ModelProto::decode(&bytes[..]).unwrap_or_else(|e| panic!("{what}: {} does not decode: {e}", path.display()));
    let graph = model.graph.expect("a graph");
    let Some(type_proto::Value::TensorType(input)) = graph.input[0].r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        panic!("{what}: the input has no tensor type")
    };
    let batch = &input.shape.as_ref().unwrap().dim[0].value;
    assert_eq!(batch, &Some(Value::DimParam("batch".into())), "{what}: the batch dim is not symbolic");
    assert!(
        graph
            .initializer
            .iter()
            .any(|i| i.name.as_deref() == Some("0.weight") || i.name.as_deref() == Some("conv1.weight")),
        "{what}: no weight initializer under its state-dict name"
    );
}

#[test]
fn mnist_runs_with_every_flag() {
    run_matrix("mnist");
}

#[test]
fn cifar10_resnet_runs_with_every_flag() {
    run_matrix("cifar10_resnet");
}

#[test]
fn vae_runs_with_every_flag() {
    run_matrix("vae");
}

#[test]
fn char_lstm_runs_with_every_flag() {
    run_matrix("char_lstm");
}

#[test]
fn tiny_gpt_runs_with_every_flag() {
    run_matrix("tiny_gpt");
}

#[test]
fn devices_runs_on_each_backend() {
    run_matrix("devices");
}

/// `--out-dir` and `--quiet` are on every training row (added by `run_matrix`).
const ALWAYS_PASSED: [&str; 2] = ["--out-dir", "--quiet"];

#[test]
fn every_flag_an_example_takes_is_in_the_matrix() {
    for example in EXAMPLES {
        let rows = || RUNS.iter().filter(|r| r.example == example);
        let mut used: BTreeSet<String> = rows()
            .flat_map(|r| r.args.split_whitespace().filter(|w| w.starts_with("--")).map(str::to_string))
            .collect();
        if example != "devices" {
            used.extend(ALWAYS_PASSED.map(String::from));
        }
        if rows().any(|r| r.mode == InterruptThenResume) {
            used.insert("--resume".into());
        }
        let takes = flags(example);
        let untested: Vec<_> = takes.difference(&used).collect();
        assert!(untested.is_empty(), "{example} takes {untested:?} but no row of RUNS passes it");
        let unknown: Vec<_> = used.difference(&takes).collect();
        assert!(unknown.is_empty(), "RUNS passes {example} {unknown:?}, which it does not take");
        for mode in [Plain, InterruptThenResume] {
            let has = RUNS.iter().any(|r| r.example == example && r.mode == mode);
            let wants = mode == Plain || (example != "devices");
            assert_eq!(has, wants, "{example}: a {mode:?} row");
        }
    }
    for example in ["mnist", "cifar10_resnet", "char_lstm", "tiny_gpt"] {
        let amp =
            |device: &str| RUNS.iter().any(|r| r.example == example && r.device == device && r.args.contains("--amp"));
        assert!(amp("cpu") && amp("gpu"), "{example}: --amp on the CPU backend and on the GPU");
    }
}

/// The documents a user reads; dated history under docs/history/ is exempt.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// cargo's own flags, which documented commands carry beside an example's.
const CARGO_FLAGS: [&str; 6] = ["--release", "--example", "--bench", "--test", "--workspace", "--nocapture"];

/// The `--flag` words of `text`.
fn flag_words(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| w.len() > 2 && w.starts_with("--") && w.as_bytes()[2].is_ascii_lowercase())
        .collect()
}

/// An example command in the docs: `cargo run ... --example NAME [-- ARGS]`
/// or `NAME --flag ...` (as prose quotes a run). `None` for other code.
fn example_command(code: &str) -> Option<(&str, Vec<&str>)> {
    let code = &code[..code.find([';', '#', '|', '&']).unwrap_or(code.len())];
    if let Some(at) = code.find("--example ") {
        let mut words = code[at + "--example ".len()..].split_whitespace();
        let name = words.next()?;
        return Some((name, words.skip_while(|w| *w != "--").skip(1).collect()));
    }
    let mut words = code.split_whitespace();
    let name = words.next()?;
    let args: Vec<&str> = words.collect();
    (EXAMPLES.contains(&name) && args.first().is_some_and(|a| a.starts_with("--"))).then_some((name, args))
}

/// A piece of a document: a prose paragraph, a table row or a line of a
/// code block, with the example commands in it and the rest of its text.
struct Piece<'a> {
    commands: Vec<(&'a str, Vec<&'a str>)>,
    prose: String,
    line: usize,
}

impl<'a> Piece<'a> {
    /// Markdown text: its inline code spans are the commands' candidates.
    fn inline(body: &'a str, line: usize) -> Piece<'a> {
        let (mut commands, mut prose) = (Vec::new(), String::new());
        for (i, part) in body.split('`').enumerate() {
            match (i % 2 == 1).then(|| example_command(part)).flatten() {
                Some(c) => commands.push(c),
                None => prose.push_str(part),
            }
        }
        Piece { commands, prose, line }
    }

    /// A line of a code block: a command, or text.
    fn code(code: &'a str, line: usize) -> Piece<'a> {
        match example_command(code) {
            Some(c) => Piece { commands: vec![c], prose: String::new(), line },
            None => Piece { commands: Vec::new(), prose: code.to_string(), line },
        }
    }
}

/// Splits markdown into [`Piece`]s.
fn pieces<'t>(text: &'t str) -> Vec<Piece<'t>> {
    let lines: Vec<&str> = text.lines().collect();
    let offset = |n: usize| lines[n].as_ptr() as usize - text.as_ptr() as usize;
    let mut out = Vec::new();
    let (mut para, mut fenced): (Option<usize>, bool) = (None, false);
    let end_para = |para: &mut Option<usize>, end: usize, out: &mut Vec<Piece<'t>>| {
        if let Some(first) = para.take() {
            out.push(Piece::inline(&text[offset(first)..offset(end - 1) + lines[end - 1].len()], first));
        }
    };
    for (n, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if t.starts_with("```") || fenced || t.starts_with('|') || t.is_empty() {
            end_para(&mut para, n, &mut out);
        }
        if t.starts_with("```") {
            fenced = !fenced;
        } else if fenced {
            out.push(Piece::code(line, n));
        } else if t.starts_with('|') {
            out.push(Piece::inline(line, n));
        } else if !t.is_empty() && para.is_none() {
            para = Some(n);
        }
    }
    end_para(&mut para, lines.len(), &mut out);
    out
}

/// Every example command in the README and docs (`cargo run --example
/// NAME -- ARGS`, or `NAME --flags` quoted in prose) parses with that
/// example's flags, and every other flag in a paragraph, table row or code
/// line about one example is one it takes. With
/// `every_flag_an_example_takes_is_in_the_matrix`, what is documented is
/// what the matrix runs.
#[test]
fn documented_commands_and_flags_agree_with_the_examples() {
    let mut checked = 0;
    for path in documents() {
        let text = std::fs::read_to_string(&path).unwrap();
        for piece in pieces(&text) {
            let place = format!("{}:{}", path.display(), piece.line + 1);
            for (name, args) in &piece.commands {
                assert!(EXAMPLES.contains(name), "{place}: no example {name:?}");
                if args.iter().any(|a| a.contains(['<', '['])) {
                    continue; // a usage pattern such as `[-- --help]`, not a command
                }
                let parsed = command(name).try_get_matches_from(std::iter::once(*name).chain(args.iter().copied()));
                if let Err(e) = parsed {
                    assert!(
                        e.kind() == clap::error::ErrorKind::DisplayHelp,
                        "{place}: `{name} {}` does not parse: {e}",
                        args.join(" ")
                    );
                }
                checked += 1;
            }
            let named: BTreeSet<&str> = piece.commands.iter().map(|(n, _)| *n).collect();
            let [name] = named.into_iter().collect::<Vec<_>>()[..] else { continue };
            let takes = flags(name);
            for flag in flag_words(&piece.prose) {
                assert!(
                    takes.contains(flag) || CARGO_FLAGS.contains(&flag) || flag == "--help",
                    "{place}: {flag} is documented beside `{name}`, which does not take it:\n{}",
                    piece.prose
                );
            }
        }
    }
    assert!(checked >= 10, "found only {checked} example commands in the docs");
}

/// `mnist` stopped by Ctrl-C in the middle of an epoch and continued with
/// `--resume` ends exactly where an uninterrupted run with the same flags
/// ends: the same validation loss and accuracy to the last digit in
/// history.csv, so the same weights. CPU backend, the small MLP.
#[test]
fn mnist_interrupted_mid_epoch_and_resumed_matches_an_uninterrupted_run() {
    let mnist = |out: &Path, resume: bool| {
        let mut args: Vec<String> =
            ["--model", "mlp", "--limit", "2048", "--epochs", "2", "--seed", "7", "--quiet"].map(String::from).to_vec();
        args.extend(["--out-dir".into(), out.display().to_string()]);
        if resume {
            args.push("--resume".into());
        }
        child("mnist", &args, "cpu")
    };
    let validation = |dir: &Path| -> Vec<(Option<f64>, Option<f64>)> {
        History::load_csv(dir.join("history.csv")).unwrap().records.iter().map(|r| (r.val_loss, r.val_acc)).collect()
    };
    let whole = folder("resume-whole");
    succeeded("the uninterrupted run", mnist(&whole, false).output().unwrap());
    let want = validation(&whole);
    assert_eq!(want.len(), 2, "two epochs: {want:?}");

    // Ctrl-C once the first epoch's summary is out: the run stops at the end
    // of a step of the second epoch and saves.
    let split = folder("resume-split");
    // 50 ms after the first epoch's files (curves.png is written last, just
    // before the epoch-end check of the flag, which would stop the run at
    // the boundary): inside epoch 2, whose 64 steps take 0.2 s or more. (A
    // quarter of epoch 1's time, which includes the warm-up, once outlasted
    // a whole epoch 2 on a loaded host.)
    let (status, stdout, _) = interrupted(mnist(&split, false), || {
        let t = Instant::now();
        while !split.join("curves.png").exists() {
            assert!(t.elapsed() < Duration::from_secs(60), "epoch 1 wrote no curves.png");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(50));
    });
    assert!(status.success(), "the interrupted run failed:\n{stdout}");
    assert!(
        stdout.contains("stopped by Ctrl-C after batch")
            && stdout.contains(" of epoch 2;")
            && stdout.contains("--resume"),
        "the run stopped inside the second epoch and said how to continue:\n{stdout}"
    );
    assert_eq!(validation(&split).len(), 1, "only epoch 1 finished before the stop");

    let resumed = succeeded("the resumed run", mnist(&split, true).output().unwrap());
    assert!(resumed.contains("final test accuracy"), "the resumed run finished:\n{resumed}");
    assert_eq!(validation(&split), want, "resumed history differs from the uninterrupted run");
}
