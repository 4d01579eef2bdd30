// Own binary: it is started again under mpirun as each rank (its main() is the driver; harness = false, feature mpi).
//! Data-parallel training under `mpirun -np 2`, on the CPU backend and on
//! the GPU adapter (lavapipe in CI). This binary is both sides: run by
//! `cargo test` it is the driver, which starts itself under `mpirun` with
//! `WGRAD_MPI_SCENARIO` set and checks what the ranks wrote; under
//! `mpirun` each process is a rank running that scenario.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use wgrad_autograd::{AutocastGuard, CrossEntropyOptions, Device, Tensor};
use wgrad_data::{DataLoader, Dataset, DistributedSampler};
use wgrad_distributed::{DdpOptions, DistributedDataParallel, ProcessGroup};
use wgrad_nn::amp::GradScaler;
use wgrad_nn::optim::{Adam, Optimizer};
use wgrad_nn::train::{RunDir, StepOutput, Trainer};
use wgrad_nn::{BatchNorm1d, Init, Linear, Module, ModuleExt, ReLU, Sequential};

const FEATURES: usize = 6;
const CLASSES: usize = 3;
const SAMPLES: usize = 96;

fn main() {
    match std::env::var("WGRAD_MPI_SCENARIO") {
        Ok(scenario) => rank_main(&scenario),
        Err(_) => driver(),
    }
}

// ---------------------------------------------------------------- ranks

/// Where a rank writes its results (the driver's temporary folder).
fn out_dir() -> PathBuf {
    PathBuf::from(std::env::var("WGRAD_MPI_OUT").expect("WGRAD_MPI_OUT"))
}

fn arg(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn rank_main(scenario: &str) {
    let group = ProcessGroup::from_env().expect("starting MPI");
    let result = match scenario {
        "train" => train(&group),
        "sampler" => sampler(&group),
        "trainer" => trainer(&group),
        other => Err(format!("unknown scenario {other:?}")),
    };
    match result {
        Ok(()) => group.finalize().expect("MPI_Finalize"),
        Err(e) => group.abort(&e),
    }
}

fn model(dev: &Device) -> Sequential {
    // Different seeds per rank: DistributedDataParallel::new must make them equal.
    let rank = std::env::var("OMPI_COMM_WORLD_RANK").unwrap_or_default().parse::<u64>().unwrap_or(0);
    let mut init = Init::new(dev, 11 + rank);
    // BN=1: a batch norm after the first layer (SyncBatchNorm's test),
    // which then has no bias: batch norm cancels it, and Adam would turn
    // its rounding-noise gradient into steps.
    let bn = std::env::var("BN").as_deref() == Ok("1");
    let first = Sequential::new().add(Linear::builder(FEATURES, 16).bias(!bn).build(&mut init));
    let first = if bn { first.add(BatchNorm1d::builder(16).build(&mut init)) } else { first };
    first
        .add(ReLU)
        .add(Linear::builder(16, 16).build(&mut init))
        .add(ReLU)
        .add(Linear::builder(16, CLASSES).build(&mut init))
}

/// The whole dataset, the same on every rank.
fn data() -> (Vec<f32>, Vec<u32>) {
    let x: Vec<f32> = (0..SAMPLES * FEATURES).map(|i| ((i * 7919 % 997) as f32 / 997.0 - 0.5) * 2.0).collect();
    let y: Vec<u32> = (0..SAMPLES).map(|i| ((i * 31 + i / 5) % CLASSES) as u32).collect();
    (x, y)
}

/// Items `from..from + n` of the dataset as tensors.
fn batch(dev: &Device, from: usize, n: usize) -> (Tensor, Tensor) {
    let (x, y) = data();
    let x = Tensor::from_vec(&x[from * FEATURES..(from + n) * FEATURES], &[n, FEATURES], dev);
    let y = Tensor::from_u32(&y[from..from + n], &[n], dev);
    (x, y)
}

/// A checksum of the parameters' bits, exact in an f64.
fn checksum(model: &Sequential) -> f64 {
    let mut h = 0xcbf29ce484222325u64;
    for p in model.parameters() {
        for v in p.to_vec() {
            h = (h ^ u64::from(v.to_bits())).wrapping_mul(0x100000001b3);
        }
    }
    (h >> 16) as f64
}

fn write_params(model: &Sequential, path: &Path) {
    let bytes: Vec<u8> = model.parameters().iter().flat_map(|p| p.to_vec()).flat_map(f32::to_le_bytes).collect();
    std::fs::write(path, bytes).unwrap();
}

/// `STEPS` steps of Adam, each rank on its `BATCH` items of every global
/// batch of `BATCH * world` items, in `ACCUM` micro-batches (the first
/// ones without synchronising); parameters checked equal on every rank
/// after every step.
fn train(group: &ProcessGroup) -> Result<(), String> {
    let dev = Device::from_env().map_err(|e| e.to_string())?;
    let (steps, per_rank, accum) = (
        arg("STEPS").parse::<usize>().unwrap(),
        arg("BATCH").parse::<usize>().unwrap(),
        arg("ACCUM").parse::<usize>().unwrap(),
    );
    let amp = arg("AMP") == "1";
    let (rank, world) = (group.rank(), group.world_size());
    let model = model(&dev);
    let mut ddp = DistributedDataParallel::new(&model, group, DdpOptions::default().first_bucket_mb(0.0005))
        .map_err(|e| e.to_string())?;
    if world > 1 && ddp.buckets().len() < 2 {
        return Err(format!("expected several buckets, got {:?}", ddp.buckets()));
    }
    let mut opt = Adam::new(model.parameters(), 1e-2);
    let mut scaler = GradScaler::new();
    let _sync = (std::env::var("SYNC").as_deref() == Ok("1")).then(|| group.sync_batch_norm());
    let micro = per_rank / accum;
    for s in 0..steps {
        let global = s * per_rank * world % (SAMPLES - per_rank * world + 1);
        for m in 0..accum {
            let (x, y) = batch(&dev, global + rank * per_rank + m * micro, micro);
            let loss = {
                let _guard = AutocastGuard::new(amp);
                model.forward(&x).float().cross_entropy(&y, &CrossEntropyOptions::default())
            };
            let loss = loss.mul_scalar(1.0 / accum as f32);
            let scaled = if amp { scaler.scale(&loss) } else { loss };
            if m + 1 < accum {
                ddp.backward_no_sync(&scaled);
            } else {
                ddp.backward(&scaled).map_err(|e| e.to_string())?;
            }
        }
        if amp {
            scaler.step(&mut opt);
            scaler.update();
        } else {
            opt.step();
        }
        opt.zero_grad();
        let sums = group.all_gather_f64(&[checksum(&model)]).map_err(|e| e.to_string())?;
        if sums.iter().any(|c| c[0] != sums[0][0]) {
            return Err(format!("step {s}: parameters differ between ranks: {sums:?}"));
        }
    }
    if rank == 0 {
        write_params(&model, &out_dir().join("params.bin"));
        let buffers: Vec<u8> =
            model.named_buffers().iter().flat_map(|(_, b)| b.to_vec()).flat_map(f32::to_le_bytes).collect();
        std::fs::write(out_dir().join("buffers.bin"), buffers).unwrap();
        let st = ddp.stats();
        std::fs::write(out_dir().join("stats.txt"), format!("{} {} {}", st.steps, st.buckets, st.bytes)).unwrap();
    }
    Ok(())
}

/// Every rank's shard of two epochs, gathered on rank 0 and written out.
fn sampler(group: &ProcessGroup) -> Result<(), String> {
    let len = arg("LEN").parse::<usize>().unwrap();
    let mut lines = Vec::new();
    for epoch in 0..2 {
        let mine: Vec<f64> = DistributedSampler::new(len, group.rank(), group.world_size())
            .seed(5)
            .indices(epoch)
            .iter()
            .map(|&i| i as f64)
            .collect();
        let all = group.all_gather_f64(&mine).map_err(|e| e.to_string())?;
        lines.push(all.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" | "));
    }
    if group.is_main() {
        std::fs::write(out_dir().join("shards.txt"), lines.join("\n")).unwrap();
    }
    Ok(())
}

/// The items of [`data`] as a dataset, for the Trainer scenario's loader.
struct Items;

impl Dataset for Items {
    type Item = usize;
    fn len(&self) -> usize {
        SAMPLES
    }
    fn get(&self, index: usize) -> Result<usize, wgrad_data::DataError> {
        Ok(index)
    }
}

/// The Trainer with data-parallel, a sharded loader and a run folder:
/// `EPOCHS` epochs in all, resuming the folder when `RESUME=1`; rank 1
/// panics in the middle of epoch `FAIL_EPOCH` when set.
fn trainer(group: &ProcessGroup) -> Result<(), String> {
    let dev = Device::from_env().map_err(|e| e.to_string())?;
    let epochs = arg("EPOCHS").parse::<usize>().unwrap();
    let fail_epoch = std::env::var("FAIL_EPOCH").ok().and_then(|v| v.parse::<usize>().ok());
    let mut model = model(&dev);
    let mut ddp = DistributedDataParallel::new(&model, group, DdpOptions::default()).map_err(|e| e.to_string())?;
    let mut opt = Adam::new(model.parameters(), 1e-2);
    let (rank, world) = (group.rank(), group.world_size());
    let global_batch = 16;
    let dev2 = dev.clone();
    // FAIL_MODE=error: rank 1's 3rd batch of epoch FAIL_EPOCH is an error.
    let fail_at = match (std::env::var("FAIL_MODE").as_deref(), fail_epoch) {
        (Ok("error"), Some(e)) if rank == 1 => Some((e - 1) * (SAMPLES / global_batch) + 3),
        _ => None,
    };
    let collated = std::sync::atomic::AtomicUsize::new(0);
    let loader =
        DataLoader::with_collate(std::sync::Arc::new(Items), global_batch / world, move |items: Vec<usize>| {
            let n = collated.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if fail_at == Some(n) {
                let what = "rank 1's batch fails on purpose".to_string();
                return Err(wgrad_data::DataError::Format { path: "synthetic".into(), what });
            }
            let (x, y) = data();
            let xs: Vec<f32> = items.iter().flat_map(|&i| x[i * FEATURES..(i + 1) * FEATURES].to_vec()).collect();
            let ys: Vec<u32> = items.iter().map(|&i| y[i]).collect();
            Ok((Tensor::from_vec(&xs, &[items.len(), FEATURES], &dev2), Tensor::from_u32(&ys, &[items.len()], &dev2)))
        })
        .seed(3)
        .workers(0)
        .shard(rank, world);
    let run = RunDir::create(out_dir().join("run")).map_err(|e| e.to_string())?;
    let batches = loader.num_batches();
    let fit = Trainer::new(&mut model, &mut opt, |m: &Sequential, (x, y): (Tensor, Tensor)| {
        let n = x.shape()[0];
        StepOutput::new(m.forward(&x).cross_entropy(&y, &CrossEntropyOptions::default()), n)
    })
    .epochs(epochs)
    .quiet()
    .run_dir(run)
    .resume(arg("RESUME") == "1")
    .on_batch_end(|b| {
        if fail_epoch == Some(b.epoch) && rank == 1 && b.batch == 2 && fail_at.is_none() {
            if std::env::var("FAIL_MODE").as_deref() == Ok("die") {
                // Dies without a word, as a killed process does.
                std::process::abort();
            }
            panic!("rank 1 fails on purpose in epoch {}", b.epoch);
        }
    })
    .data_parallel(&mut ddp)
    .fit(batches, |epoch, skip| loader.epoch_from(epoch, skip))
    .map_err(|e| e.to_string())?;
    let losses: Vec<String> = fit.history.records.iter().map(|r| format!("{} {:.9}", r.epoch, r.train_loss)).collect();
    std::fs::write(out_dir().join(format!("history-{rank}.txt")), losses.join("\n")).unwrap();
    if rank == 0 {
        write_params(&model, &out_dir().join("params.bin"));
    }
    Ok(())
}

// ---------------------------------------------------------------- driver

struct Run {
    dir: PathBuf,
    output: Output,
    seconds: f64,
}

impl Run {
    fn params(&self) -> Vec<f32> {
        Run::params_of(&self.dir)
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn expect_ok(self) -> Run {
        assert!(
            self.output.status.success(),
            "mpirun failed ({}):\n{}\n{}",
            self.output.status,
            String::from_utf8_lossy(&self.output.stdout),
            self.stderr()
        );
        self
    }
}

/// Runs `scenario` on `np` ranks with `env`, in `dir` (created when missing).
fn mpirun(np: usize, scenario: &str, env: &[(&str, &str)], dir: &Path) -> Run {
    std::fs::create_dir_all(dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("mpirun");
    cmd.args(["-np", &np.to_string(), "--oversubscribe", "--allow-run-as-root", "--bind-to", "none"])
        .arg(exe)
        .env("WGRAD_MPI_SCENARIO", scenario)
        .env("WGRAD_MPI_OUT", dir)
        // Each rank one CPU thread: two ranks share this machine's cores.
        .env("WGRAD_CPU_THREADS", "1")
        .env("RUST_BACKTRACE", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let output = cmd.output().expect("mpirun (Open MPI: apt-get install openmpi-bin libopenmpi-dev)");
    Run { dir: dir.to_path_buf(), output, seconds: start.elapsed().as_secs_f64() }
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + x.abs().max(y.abs()))).fold(0.0, f32::max)
}

fn train_env<'a>(device: &'a str, batch: &'a str, accum: &'a str, amp: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("WGRAD_DEVICE", device), ("STEPS", "20"), ("BATCH", batch), ("ACCUM", accum), ("AMP", amp)]
}

fn two_ranks_match_one_rank_with_twice_the_batch(tmp: &Path, device: &str) {
    for amp in ["0", "1"] {
        let d = tmp.join(format!("match-{device}-{amp}"));
        let two = mpirun(2, "train", &train_env(device, "8", "1", amp), &d.join("two")).expect_ok();
        let again = mpirun(2, "train", &train_env(device, "8", "1", amp), &d.join("again")).expect_ok();
        let one = mpirun(1, "train", &train_env(device, "16", "1", amp), &d.join("one")).expect_ok();
        let (p2, p2b, p1) = (two.params(), again.params(), one.params());
        assert!(p2.iter().zip(&p2b).all(|(a, b)| a.to_bits() == b.to_bits()), "two 2-rank runs differ (amp {amp})");
        // f32 sums in another order; AMP's f16 products round differently.
        let tol = if amp == "1" { 2e-2 } else { 1e-4 };
        let diff = max_rel_diff(&p2, &p1);
        assert!(diff < tol, "{device} amp {amp}: 2 ranks x 8 vs 1 rank x 16 differ by {diff}");
        let stats = std::fs::read_to_string(two.dir.join("stats.txt")).unwrap();
        assert!(stats.starts_with("20 "), "stats: {stats}");
        println!("    {device} amp={amp}: max relative difference {diff:.2e} ({:.1} s)", two.seconds);
    }
}

fn sync_batch_norm_matches_one_rank_with_the_whole_batch(tmp: &Path) {
    let d = tmp.join("syncbn");
    let env = |batch: &'static str, sync: &'static str| {
        let mut e = train_env("cpu", batch, "1", "0");
        e.extend([("BN", "1"), ("SYNC", sync)]);
        e
    };
    let synced = mpirun(2, "train", &env("8", "1"), &d.join("synced")).expect_ok();
    let local = mpirun(2, "train", &env("8", "0"), &d.join("local")).expect_ok();
    let whole = mpirun(1, "train", &env("16", "1"), &d.join("whole")).expect_ok();
    let plain = mpirun(1, "train", &env("16", "0"), &d.join("plain")).expect_ok();
    let buffers = |r: &Run| Run::floats(&r.dir.join("buffers.bin"));
    // One rank: the synchronised layer is batch norm itself.
    let same = max_rel_diff(&whole.params(), &plain.params());
    assert!(same < 1e-4, "SyncBatchNorm on one rank differs from BatchNorm by {same}");
    let diff = max_rel_diff(&synced.params(), &whole.params());
    let stats = max_rel_diff(&buffers(&synced), &buffers(&whole));
    assert!(diff < 1e-4 && stats < 1e-4, "2 synced ranks x 8 vs 1 rank x 16: parameters {diff}, running stats {stats}");
    // Without synchronisation each rank normalises its own half: the test can fail.
    let apart = max_rel_diff(&local.params(), &whole.params());
    assert!(apart > 1e-3, "per-rank batch norm should differ from the whole batch's ({apart})");
    println!("    synced {diff:.1e} (running stats {stats:.1e}), unsynced {apart:.1e}");
}

fn no_sync_accumulation_equals_one_big_step(tmp: &Path) {
    let d = tmp.join("accum");
    let whole = mpirun(2, "train", &train_env("cpu", "8", "1", "0"), &d.join("whole")).expect_ok();
    let parts = mpirun(2, "train", &train_env("cpu", "8", "2", "0"), &d.join("parts")).expect_ok();
    let diff = max_rel_diff(&whole.params(), &parts.params());
    assert!(diff < 1e-4, "no_sync accumulation differs from one step by {diff}");
}

fn sampler_shards_are_disjoint_and_cover(tmp: &Path) {
    for (np, len) in [(2usize, 10usize), (3, 10)] {
        let d = tmp.join(format!("sampler-{np}"));
        let len_s = len.to_string();
        mpirun(np, "sampler", &[("LEN", &len_s)], &d).expect_ok();
        let text = std::fs::read_to_string(d.join("shards.txt")).unwrap();
        let epochs: Vec<&str> = text.lines().collect();
        assert_eq!(epochs.len(), 2);
        assert_ne!(epochs[0], epochs[1], "set_epoch must reshuffle");
        for line in epochs {
            let shards: Vec<Vec<usize>> = line
                .split(" | ")
                .map(|s| {
                    s.trim_matches(|c| c == '[' || c == ']')
                        .split(", ")
                        .map(|v| v.parse::<f64>().unwrap() as usize)
                        .collect()
                })
                .collect();
            assert_eq!(shards.len(), np);
            let per = len.div_ceil(np);
            assert!(shards.iter().all(|s| s.len() == per), "{shards:?}");
            let mut all: Vec<usize> = shards.concat();
            all.sort();
            all.dedup();
            assert_eq!(all, (0..len).collect::<Vec<_>>(), "{shards:?}");
            assert_eq!(per * np - len, per * np - all.len(), "only padding may repeat");
        }
    }
}

fn history(dir: &Path, rank: usize) -> String {
    std::fs::read_to_string(dir.join(format!("history-{rank}.txt"))).unwrap()
}

fn rank0_checkpoint_resumes_on_two_ranks_and_on_one(tmp: &Path) {
    let straight = tmp.join("ck-straight");
    mpirun(2, "trainer", &[("WGRAD_DEVICE", "cpu"), ("EPOCHS", "3"), ("RESUME", "0")], &straight).expect_ok();
    assert_eq!(history(&straight, 0), history(&straight, 1), "ranks disagree on the metrics");
    // 1 epoch, then resumed on 2 ranks up to 3: the same run, bit for bit.
    let split = tmp.join("ck-split");
    mpirun(2, "trainer", &[("WGRAD_DEVICE", "cpu"), ("EPOCHS", "1"), ("RESUME", "0")], &split).expect_ok();
    mpirun(2, "trainer", &[("WGRAD_DEVICE", "cpu"), ("EPOCHS", "3"), ("RESUME", "1")], &split).expect_ok();
    let (a, b) = (Run::params_of(&straight), Run::params_of(&split));
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "resumed 2-rank run differs from a straight one"
    );
    assert_eq!(history(&straight, 0), history(&split, 0));
    // The same checkpoint, resumed on one rank (batch 16 on it alone).
    let single = tmp.join("ck-single");
    std::fs::create_dir_all(single.join("run")).unwrap();
    for f in std::fs::read_dir(split.join("run")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, single.join("run").join(f.file_name().unwrap())).unwrap();
    }
    mpirun(2, "trainer", &[("WGRAD_DEVICE", "cpu"), ("EPOCHS", "1"), ("RESUME", "0")], &single).expect_ok();
    mpirun(1, "trainer", &[("WGRAD_DEVICE", "cpu"), ("EPOCHS", "3"), ("RESUME", "1")], &single).expect_ok();
    let h = history(&single, 0);
    let epochs: Vec<&str> = h.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(epochs, ["1", "2", "3"], "history after a 1-rank resume: {h}");
    assert_eq!(h.lines().next(), history(&straight, 0).lines().next(), "epoch 1 comes from the checkpoint");
}

impl Run {
    fn params_of(dir: &Path) -> Vec<f32> {
        Run::floats(&dir.join("params.bin"))
    }

    fn floats(path: &Path) -> Vec<f32> {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }
}

fn a_failing_rank_ends_the_job_and_leaves_a_whole_checkpoint(tmp: &Path) {
    for (mode, named) in
        [("panic", "rank 1 of 2 panicked"), ("die", "process rank 1"), ("error", "rank 1 of 2 failed: reading batch")]
    {
        let d = tmp.join(format!("fail-{mode}"));
        let env = [("WGRAD_DEVICE", "cpu"), ("EPOCHS", "3"), ("RESUME", "0"), ("FAIL_EPOCH", "2"), ("FAIL_MODE", mode)];
        let run = mpirun(2, "trainer", &env, &d);
        assert!(!run.output.status.success(), "{mode}: the job must fail");
        assert!(run.seconds < 60.0, "{mode}: the job took {:.0} s to end", run.seconds);
        let err = run.stderr();
        assert!(err.contains(named), "{mode}: the failing rank is not named:\n{err}");
        epoch_one_checkpoint_is_whole(&d);
    }
}

/// Epoch 1's checkpoint in `d`'s run folder is whole, and no temporary file is left.
fn epoch_one_checkpoint_is_whole(d: &Path) {
    // Epoch 1's checkpoint is whole: a resume on one rank reads it.
    let dev = Device::cpu();
    let ck = wgrad_nn::checkpoint::TrainingCheckpoint::load(d.join("run").join("last.safetensors"), &dev)
        .expect("epoch 1's checkpoint must load");
    assert_eq!(ck.epoch, 1);
    let leftovers: Vec<String> = std::fs::read_dir(d.join("run"))
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn driver() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let tmp = std::env::temp_dir().join(format!("wgrad-mpirun-{}", std::process::id()));
    type Case = (&'static str, Box<dyn Fn(&Path)>);
    let cases: Vec<Case> = vec![
        (
            "two_ranks_match_one_rank_with_twice_the_batch_cpu",
            Box::new(|t| two_ranks_match_one_rank_with_twice_the_batch(t, "cpu")),
        ),
        (
            "two_ranks_match_one_rank_with_twice_the_batch_gpu",
            Box::new(|t| two_ranks_match_one_rank_with_twice_the_batch(t, "gpu")),
        ),
        (
            "sync_batch_norm_matches_one_rank_with_the_whole_batch",
            Box::new(sync_batch_norm_matches_one_rank_with_the_whole_batch),
        ),
        ("no_sync_accumulation_equals_one_big_step", Box::new(no_sync_accumulation_equals_one_big_step)),
        ("sampler_shards_are_disjoint_and_cover", Box::new(sampler_shards_are_disjoint_and_cover)),
        (
            "rank0_checkpoint_resumes_on_two_ranks_and_on_one",
            Box::new(rank0_checkpoint_resumes_on_two_ranks_and_on_one),
        ),
        (
            "a_failing_rank_ends_the_job_and_leaves_a_whole_checkpoint",
            Box::new(a_failing_rank_ends_the_job_and_leaves_a_whole_checkpoint),
        ),
    ];
    let selected: Vec<&Case> =
        cases.iter().filter(|(n, _)| filters.is_empty() || filters.iter().any(|f| n.contains(f.as_str()))).collect();
    println!("\nrunning {} tests", selected.len());
    let (mut passed, mut failed) = (0, Vec::new());
    let start = Instant::now();
    for (name, case) in selected {
        let t = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&tmp)));
        let took = Duration::from_secs_f64(t.elapsed().as_secs_f64());
        match r {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.1} s)", took.as_secs_f64());
            }
            Err(_) => {
                failed.push(*name);
                println!("test {name} ... FAILED");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let status = if failed.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {status}. {passed} passed; {} failed; 0 ignored; 0 measured; 0 filtered out; finished in {:.2}s\n",
        failed.len(),
        start.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
