//! GradScaler: defaults, the update rule, pass-through when disabled,
//! unscale_ idempotence and clipping in between, gradients that share a
//! buffer, one readback per step, `step_async` (the verdict applied on the
//! device) against `step`, misuse panics, state dict and training
//! checkpoint round trips. PyTorch parity is tests/main/grad_scaler_reference.rs.

use std::path::{Path, PathBuf};

use wgrad_autograd::{Device, Tensor};
use wgrad_gpu_core::testing::{fresh_gpu_or_skip, gpu_or_skip};
use wgrad_nn::amp::{GradScaler, GradScalerOptions};
use wgrad_nn::checkpoint::TrainingCheckpoint;
use wgrad_nn::optim::{clip_grad_norm_, Optimizer, Sgd, SgdOptions};
use wgrad_nn::state::StateDict;
use wgrad_nn::{Init, Linear, ModuleExt};

fn backends(test: &str) -> Vec<Device> {
    let mut v = vec![Device::cpu(), Device::cpu_reference()];
    v.extend(gpu_or_skip(test));
    v
}

fn param(v: &[f32], dev: &Device) -> Tensor {
    Tensor::from_vec(v, &[v.len()], dev).requires_grad_()
}

/// loss = Σ p·c: the gradient of `p` is exactly `c` (times the scale).
fn linear_loss(p: &Tensor, c: &[f32]) -> Tensor {
    (p * &Tensor::from_vec(c, &[c.len()], &p.device())).sum_all()
}

fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("grad_scaler").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn defaults_are_pytorchs() {
    let s = GradScaler::new();
    let o = s.options();
    assert_eq!((o.init_scale, o.growth_factor, o.backoff_factor, o.growth_interval), (65536.0, 2.0, 0.5, 2000));
    assert!(s.is_enabled() && o.enabled);
    assert_eq!(s.get_scale(), 65536.0);
    assert_eq!(s.growth_tracker(), 0);
    assert_eq!(*GradScaler::default().options(), GradScalerOptions::default());
}

#[test]
fn the_scale_backs_off_on_overflow_and_grows_after_the_interval() {
    for dev in backends("the_scale_backs_off_on_overflow_and_grows_after_the_interval") {
        let p = param(&[1.0, 2.0], &dev);
        let mut opt = Sgd::new(vec![p.clone()], 0.1);
        let mut s = GradScaler::with_options(GradScalerOptions::default().init_scale(8.0).growth_interval(2));
        let mut iterate = |c: &[f32]| {
            opt.zero_grad();
            s.scale(&linear_loss(&p, c)).backward();
            let stepped = s.step(&mut opt);
            s.update();
            (stepped, s.get_scale(), s.growth_tracker())
        };
        assert_eq!(iterate(&[1.0, 1.0]), (true, 8.0, 1));
        assert_eq!(iterate(&[1.0, 1.0]), (true, 16.0, 0), "grows after 2 clean steps");
        assert_eq!(iterate(&[f32::NAN, 1.0]), (false, 8.0, 0), "backs off");
        assert_eq!(iterate(&[1.0, 1.0]), (true, 8.0, 1));
        assert_eq!(iterate(&[1.0, f32::NEG_INFINITY]), (false, 4.0, 0), "the tracker restarts");
        assert_eq!(iterate(&[1.0, 1.0]), (true, 4.0, 1));
        assert_eq!(iterate(&[1.0, 1.0]), (true, 8.0, 0));
        // 5 clean steps of 0.1 · 1 each; the skipped ones left p alone.
        let want = [1.0 - 0.5, 2.0 - 0.5];
        let got = p.to_vec();
        assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6), "{got:?} on {}", dev.name());
    }
}

#[test]
fn the_scale_never_grows_to_infinity() {
    let dev = Device::cpu();
    let p = param(&[1.0], &dev);
    let mut opt = Sgd::new(vec![p.clone()], 0.0);
    let mut s = GradScaler::with_options(GradScalerOptions::default().init_scale(3.0e38).growth_interval(1));
    opt.zero_grad();
    s.scale(&linear_loss(&p, &[1e-30])).backward();
    assert!(s.step(&mut opt));
    s.update();
    assert_eq!((s.get_scale(), s.growth_tracker()), (3.0e38, 0), "growth skipped, tracker reset");
}

#[test]
fn a_disabled_scaler_passes_everything_through() {
    let dev = Device::cpu();
    let p = param(&[1.0, 2.0], &dev);
    let mut opt = Sgd::new(vec![p.clone()], 0.5);
    let mut s = GradScaler::with_options(GradScalerOptions::default().enabled(false).growth_factor(0.0));
    assert!(!s.is_enabled());
    assert_eq!(s.get_scale(), 1.0);
    let loss = linear_loss(&p, &[1.0, f32::INFINITY]);
    let scaled = s.scale(&loss);
    assert_eq!(scaled.id(), loss.id(), "the loss itself");
    scaled.backward();
    s.unscale_(&mut opt);
    assert!(s.step(&mut opt), "steps even on inf gradients");
    s.update();
    assert_eq!(p.to_vec()[0], 0.5);
    assert!(p.to_vec()[1].is_infinite());
    assert!(s.state_dict().meta.is_empty(), "PyTorch's disabled state dict is empty");
    assert!(s.load_state_dict(&GradScaler::new().state_dict()).is_err());
}

#[test]
fn unscale_is_idempotent_and_clipping_sees_true_gradients() {
    for dev in backends("unscale_is_idempotent_and_clipping_sees_true_gradients") {
        let p = param(&[1.0, 2.0], &dev);
        let mut opt = Sgd::new(vec![p.clone()], 1.0);
        let mut s = GradScaler::new();
        s.scale(&linear_loss(&p, &[3.0, 4.0])).backward();
        assert_eq!(p.grad().unwrap().to_vec(), vec![3.0 * 65536.0, 4.0 * 65536.0], "scaled gradients");
        s.unscale_(&mut opt);
        s.unscale_(&mut opt); // no effect
        assert_eq!(p.grad().unwrap().to_vec(), vec![3.0, 4.0]);
        let norm = clip_grad_norm_(std::slice::from_ref(&p), 1.0);
        assert!((norm.item() - 5.0).abs() < 1e-5, "the true norm");
        assert!(s.step(&mut opt), "step does not unscale again");
        let got = p.to_vec();
        assert!((got[0] - 0.4).abs() < 1e-5 && (got[1] - 1.2).abs() < 1e-5, "{got:?} on {}", dev.name());
        s.update();
    }
}

#[test]
fn gradients_sharing_a_buffer_are_unscaled_once_each() {
    // Backward of `a + b` may hand one gradient buffer to both leaves.
    for dev in backends("gradients_sharing_a_buffer_are_unscaled_once_each") {
        let a = param(&[1.0, 2.0, 3.0], &dev);
        let b = param(&[4.0, 5.0, 6.0], &dev);
        let view = a.detach(); // shares a's buffer, must not change
        let mut opt = Sgd::new(vec![a.clone(), b.clone()], 0.0);
        let mut s = GradScaler::with_options(GradScalerOptions::default().init_scale(4.0));
        s.scale(&(&a + &b).sum_all()).backward();
        let ga = a.grad().unwrap();
        let keep = ga.detach(); // another holder of a's gradient buffer
        s.unscale_(&mut opt);
        assert_eq!(a.grad().unwrap().to_vec(), vec![1.0; 3], "on {}", dev.name());
        assert_eq!(b.grad().unwrap().to_vec(), vec![1.0; 3], "on {}", dev.name());
        assert_eq!(keep.to_vec(), vec![4.0; 3], "a snapshot of the scaled gradient is left alone");
        assert!(s.step(&mut opt));
        s.update();
        assert_eq!(view.to_vec(), vec![1.0, 2.0, 3.0]);
    }
}

#[test]
fn a_scaler_step_reads_back_once() {
    let mut devs = vec![Device::cpu()];
    devs.extend(fresh_gpu_or_skip("a_scaler_step_reads_back_once"));
    for dev in devs {
        let p = [param(&[1.0, 2.0], &dev), param(&[3.0; 5], &dev)];
        let mut opt = Sgd::with_options(p.to_vec(), 0.1, SgdOptions { momentum: 0.9, ..Default::default() });
        let mut s = GradScaler::with_options(GradScalerOptions::default().growth_interval(3));
        for it in 0..6 {
            opt.zero_grad();
            let loss = &linear_loss(&p[0], &[1.0, -1.0]) + &linear_loss(&p[1], &[0.5; 5]);
            s.scale(&loss).backward();
            let before = dev.stats();
            s.unscale_(&mut opt);
            let d = dev.stats() - before;
            assert_eq!((d.readbacks, d.submissions, d.dispatches), (0, 0, 2), "unscale_ on {}", dev.name());
            let before = dev.stats();
            assert!(s.step(&mut opt));
            s.update();
            let d = dev.stats() - before;
            let submissions = if dev.is_gpu() { 1 } else { 0 };
            assert_eq!(d.readbacks, 1, "iteration {it} on {}: one readback per step", dev.name());
            assert_eq!(d.submissions, submissions, "iteration {it} on {}", dev.name());
            // The two SGD updates (plus, at the first step, the fills that
            // create the momentum buffers) and the scale's update on the device.
            let fills = if it == 0 { 2 } else { 0 };
            assert_eq!(d.dispatches, 2 + fills + 1, "iteration {it} on {}: the SGD updates", dev.name());
        }
        assert_eq!(s.get_scale(), 4.0 * 65536.0, "grew twice");
    }
}

/// Adam (whose step counts feed its bias corrections) through 8 scaled
/// steps, two of which overflow (the first one among them), stepped by
/// `step` (the verdict read back) or `step_async` (the update skipped on
/// the device, the counts taken back at the next step): the same
/// parameters, optimizer state and scaler state, bit for bit; the async
/// steps read nothing back before the next step. A scaler whose factors
/// are not powers of two keeps its scale on the host and steps the same.
#[test]
fn step_async_trains_as_step() {
    use wgrad_nn::optim::Adam;
    let run = |dev: &Device, opts: GradScalerOptions, asynchronous: bool| {
        let p = [param(&[1.0, 2.0, -0.5], dev), param(&[3.0; 5], dev)];
        let mut opt = Adam::new(p.to_vec(), 0.05);
        let mut s = GradScaler::with_options(opts);
        for it in 0..8 {
            opt.zero_grad();
            let c = if it == 0 || it == 5 { f32::INFINITY } else { 1.0 + it as f32 };
            let loss = &linear_loss(&p[0], &[c, -1.0, 0.5]) + &linear_loss(&p[1], &[0.25; 5]);
            s.scale(&loss).backward();
            let before = dev.stats();
            if asynchronous {
                s.step_async(&mut opt);
            } else {
                s.step(&mut opt);
            }
            s.update();
            let d = dev.stats() - before;
            if asynchronous && s.scale_on_device() {
                // At most the last step's verdict, read by the optimizer.
                assert!(d.readbacks <= 1, "iteration {it} on {}: {} readbacks", dev.name(), d.readbacks);
            }
        }
        let sd = opt.state_dict();
        let bits: Vec<Vec<u32>> = p.iter().map(|t| t.to_vec().iter().map(|v| v.to_bits()).collect()).collect();
        let steps: Vec<String> = (0..2).map(|i| sd.meta[&format!("state.{i}.step")].clone()).collect();
        let moments: Vec<Vec<f32>> = (0..2).map(|i| sd.tensors[&format!("state.{i}.exp_avg_sq")].to_vec()).collect();
        (bits, steps, moments, s.get_scale(), s.growth_tracker())
    };
    let on_device = GradScalerOptions::default().growth_interval(3);
    let on_host = on_device.growth_factor(3.0);
    // A GPU of its own: the readbacks counted are this test's.
    let mut devs = vec![Device::cpu(), Device::cpu_reference()];
    devs.extend(fresh_gpu_or_skip("step_async_trains_as_step"));
    for dev in devs {
        for opts in [on_device, on_host] {
            let sync = run(&dev, opts, false);
            assert_eq!(sync.1, vec!["6".to_string(), "6".to_string()], "two of eight steps skipped");
            assert_eq!(run(&dev, opts, true), sync, "{} (growth {})", dev.name(), opts.growth_factor);
        }
    }
}

/// A step the device skipped leaves its mark in the optimizer's scalar
/// rows, which a step whose scalars are the last ones (SGD at a fixed
/// learning rate) does not rewrite otherwise: a plain step after it must
/// still update. Fails when the optimizer trusts rows a gate has marked.
#[test]
fn a_plain_step_after_a_skipped_one_updates() {
    for dev in backends("a_plain_step_after_a_skipped_one_updates") {
        let p = param(&[1.0, 2.0], &dev);
        let mut opt = Sgd::with_options(vec![p.clone()], 0.5, SgdOptions { momentum: 0.9, ..Default::default() });
        let mut s = GradScaler::default();
        for c in [1.0, 1.0, f32::INFINITY] {
            opt.zero_grad();
            s.scale(&linear_loss(&p, &[c, 1.0])).backward();
            s.step_async(&mut opt);
            s.update();
        }
        let before = p.to_vec();
        opt.zero_grad();
        linear_loss(&p, &[1.0, 1.0]).backward();
        opt.step();
        // Momentum after three steps of gradient 1: 1, 1.9, 2.71.
        let want: Vec<f32> = before.iter().map(|v| v - 0.5 * 2.71).collect();
        let got = p.to_vec();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{}: {got:?}, want {want:?} (before {before:?})", dev.name());
        }
    }
}

#[test]
#[should_panic(expected = "step() has already been called")]
fn stepping_twice_before_update_panics() {
    let dev = Device::cpu();
    let p = param(&[1.0], &dev);
    let mut opt = Sgd::new(vec![p.clone()], 0.1);
    let mut s = GradScaler::new();
    s.scale(&linear_loss(&p, &[1.0])).backward();
    s.step(&mut opt);
    s.step(&mut opt);
}

#[test]
#[should_panic(expected = "no inf checks were recorded prior to update")]
fn update_without_a_step_panics() {
    GradScaler::new().update();
}

#[test]
#[should_panic(expected = "growth factor must be > 1.0")]
fn a_shrinking_growth_factor_panics() {
    GradScaler::with_options(GradScalerOptions::default().growth_factor(0.5));
}

/// A scaler that has backed off once and counted two clean steps since.
fn trained_scaler(dev: &Device) -> GradScaler {
    let p = param(&[1.0], dev);
    let mut opt = Sgd::new(vec![p.clone()], 0.1);
    let mut s = GradScaler::with_options(
        GradScalerOptions::default().init_scale(1000.0).growth_factor(3.0).backoff_factor(0.25).growth_interval(5),
    );
    for c in [1.0, f32::INFINITY, 1.0, 1.0] {
        opt.zero_grad();
        s.scale(&linear_loss(&p, &[c])).backward();
        s.step(&mut opt);
        s.update();
    }
    assert_eq!((s.get_scale(), s.growth_tracker()), (250.0, 2));
    s
}

#[test]
fn the_state_dict_round_trips_with_pytorchs_keys() {
    let s = trained_scaler(&Device::cpu());
    let sd = s.state_dict();
    let keys: Vec<&str> = sd.meta.keys().map(String::as_str).collect();
    assert_eq!(keys, ["_growth_tracker", "backoff_factor", "growth_factor", "growth_interval", "scale"]);
    assert_eq!(sd.meta["scale"], "250.0");
    let mut fresh = GradScaler::new();
    fresh.load_state_dict(&sd).unwrap();
    assert_eq!((fresh.get_scale(), fresh.growth_tracker()), (250.0, 2));
    let o = fresh.options();
    assert_eq!((o.growth_factor, o.backoff_factor, o.growth_interval), (3.0, 0.25, 5));

    let mut bad = sd.clone();
    bad.meta.insert("scale".into(), "big".into());
    assert!(fresh.load_state_dict(&bad).unwrap_err().to_string().contains("malformed"));
    bad.meta.remove("scale");
    assert!(fresh.load_state_dict(&bad).unwrap_err().to_string().contains("\"scale\""));
    assert!(fresh.load_state_dict(&StateDict::new()).unwrap_err().to_string().contains("empty"));
    assert_eq!(fresh.get_scale(), 250.0, "a failed load changes nothing");
}

#[test]
fn a_training_checkpoint_carries_the_scaler() {
    for dev in backends("a_training_checkpoint_carries_the_scaler") {
        let dir = scratch(&format!("ck_{}", if dev.is_gpu() { "gpu" } else { "cpu" }));
        let model = Linear::builder(2, 1).build(&mut Init::new(&dev, 7));
        let mut opt = Sgd::new(model.parameters(), 0.1);
        let scaler = trained_scaler(&dev);
        let path = dir.join("last.safetensors");
        TrainingCheckpoint::capture(&model, &opt).with_scaler(&scaler).save(&path).unwrap();

        let ck = TrainingCheckpoint::load(&path, &dev).unwrap();
        assert_eq!(ck.scaler.meta["_growth_tracker"], "2");
        ck.restore(&model, &mut opt).unwrap();
        let mut resumed = GradScaler::new();
        ck.restore_scaler(&mut resumed).unwrap();
        assert_eq!((resumed.get_scale(), resumed.growth_tracker()), (250.0, 2));
        assert_eq!(resumed.state_dict().meta, scaler.state_dict().meta);

        // A checkpoint without a scaler: existing callers are unchanged, and
        // restoring a scaler from it is an error (unless it is disabled).
        let plain = dir.join("plain.safetensors");
        TrainingCheckpoint::capture(&model, &opt).save(&plain).unwrap();
        let ck = TrainingCheckpoint::load(&plain, &dev).unwrap();
        assert!(ck.scaler.meta.is_empty());
        let err = ck.restore_scaler(&mut GradScaler::new()).unwrap_err().to_string();
        assert!(err.contains("grad scaler") && err.contains("plain.safetensors"), "{err}");
        assert!(err.contains("saved without loss scaling") && err.contains("without `--amp`"), "{err}");
        ck.restore_scaler(&mut GradScaler::with_options(GradScalerOptions::default().enabled(false))).unwrap();

        // The other way round: a scaler's state into a disabled scaler.
        let ck = TrainingCheckpoint::load(&path, &dev).unwrap();
        let mut off = GradScaler::with_options(GradScalerOptions::default().enabled(false));
        let err = ck.restore_scaler(&mut off).unwrap_err().to_string();
        assert!(err.contains("saved with loss scaling") && err.contains("--amp"), "{err}");
        assert!(err.contains("disabled GradScaler"), "GradScaler's own words stay: {err}");
    }
}
