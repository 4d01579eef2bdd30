//! Resuming in a fresh process is exact: N steps, save, then a NEW process
//! loads the checkpoint and trains M more; its losses equal steps N+1..N+M of
//! an uninterrupted run, bit for bit. The test re-runs its own binary as the
//! two child processes (selected by an environment variable), each running
//! only this test.

use std::process::Command;

use wgrad_autograd::{Device, Generator, Tensor};
use wgrad_gpu_core::DeviceSpec;
use wgrad_nn::checkpoint::TrainingCheckpoint;
use wgrad_nn::loss::MSELoss;
use wgrad_nn::optim::{Adam, Optimizer};
use wgrad_nn::{Init, Linear, Module, ModuleExt, ReLU, Sequential};

const N: usize = 5;
const M: usize = 4;

fn device(spec: &str) -> Device {
    Device::from_spec(&DeviceSpec::parse(spec).unwrap()).unwrap()
}

fn model(dev: &Device) -> Sequential {
    let mut init = Init::new(dev, 7);
    Sequential::new()
        .add(Linear::builder(6, 12).build(&mut init))
        .add(ReLU)
        .add(Linear::builder(12, 2).build(&mut init))
}

/// One step on a batch drawn from `data` (a generator, so the data stream is
/// part of the saved state); returns the loss bits.
fn step(m: &Sequential, opt: &mut Adam, data: &mut Generator, dev: &Device) -> u32 {
    let x = data.normal(&[16, 6], 0.0, 1.0, dev);
    let y = x.sum(&[1], true).sin().expand(&[16, 2]).contiguous();
    let loss = MSELoss::default().forward(&m.forward(&x), &y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    loss.item().to_bits()
}

/// Runs in a child process: `save` trains N steps and writes the checkpoint,
/// `resume` loads it and prints the next M losses' bits.
fn child(phase: &str, spec: &str, path: &str) {
    let dev = device(spec);
    let m = model(&dev);
    let mut opt = Adam::new(m.parameters(), 1e-2);
    let mut data = Generator::new(99);
    if phase == "save" {
        for _ in 0..N {
            step(&m, &mut opt, &mut data, &dev);
        }
        let mut ck = TrainingCheckpoint::capture(&m, &opt);
        ck.step = N as u64;
        ck.rng.insert("data".into(), data);
        ck.save(path).unwrap();
    } else {
        let ck = TrainingCheckpoint::load(path, &dev).unwrap();
        ck.restore(&m, &mut opt).unwrap();
        data = ck.rng["data"];
        let losses: Vec<String> = (0..M).map(|_| step(&m, &mut opt, &mut data, &dev).to_string()).collect();
        println!("LOSSES {}", losses.join(","));
    }
}

/// This test's name in the test binary, which the children run alone.
const TEST: &str = "resume_process::resuming_in_a_fresh_process_is_bit_exact";

#[test]
fn resuming_in_a_fresh_process_is_bit_exact() {
    if let (Ok(phase), Ok(spec), Ok(path)) =
        (std::env::var("WGRAD_RESUME_PHASE"), std::env::var("WGRAD_RESUME_DEVICE"), std::env::var("WGRAD_RESUME_PATH"))
    {
        return child(&phase, &spec, &path);
    }
    let mut specs = vec!["cpu"];
    if wgrad_gpu_core::testing::gpu_or_skip("resuming_in_a_fresh_process_is_bit_exact").is_some() {
        specs.push("gpu");
    }
    for spec in specs {
        // The uninterrupted run, here.
        let dev = device(spec);
        let m = model(&dev);
        let mut opt = Adam::new(m.parameters(), 1e-2);
        let mut data = Generator::new(99);
        let all: Vec<u32> = (0..N + M).map(|_| step(&m, &mut opt, &mut data, &dev)).collect();
        let want: Vec<String> = all[N..].iter().map(|b| b.to_string()).collect();

        let path = std::env::temp_dir().join(format!("wgrad-resume-{}-{spec}.safetensors", std::process::id()));
        let run = |phase: &str| {
            let out = Command::new(std::env::current_exe().unwrap())
                .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
                .env("WGRAD_RESUME_PHASE", phase)
                .env("WGRAD_RESUME_DEVICE", spec)
                .env("WGRAD_RESUME_PATH", &path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{phase} child failed:\n{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        run("save");
        let stdout = run("resume");
        // libtest prints "test NAME ... " before the child's own output, on the same line.
        let line =
            stdout.split("LOSSES ").nth(1).and_then(|s| s.lines().next()).expect("the resume child prints its losses");

        assert_eq!(line.split(',').collect::<Vec<_>>(), want, "losses after resuming in a fresh process on {spec}");
        let _ = std::fs::remove_file(&path);
        let _ = Tensor::zeros(&[1], &dev); // keep the device alive until the end
    }
}
