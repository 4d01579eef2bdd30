//! Optimizers on the textbook toy problems, state-dict round trips,
//! gradient clipping, and the execution model of a step (one kernel per
//! parameter, no readback, no submission), on every backend.

use wgrad_autograd::{Device, Tensor};
use wgrad_gpu_core::testing::{assert_close, backends, fresh_gpu_or_skip, gpu_or_skip};
use wgrad_nn::optim::*;
use wgrad_nn::state::StateDict;

fn param(v: &[f32], dev: &Device) -> Tensor {
    Tensor::from_vec(v, &[v.len()], dev).requires_grad_()
}

/// Runs `steps` steps of `opt` on J(θ) = θ² (any shape: the sum of squares).
fn minimise_square(opt: &mut dyn Optimizer, theta: &Tensor, steps: usize) {
    for _ in 0..steps {
        opt.zero_grad();
        theta.square().sum_all().backward();
        opt.step();
    }
}

#[test]
fn gradient_descent_on_an_elliptic_bowl() {
    // f(x, y) = x² + 2y², ∇f = (2x, 4y), from (3, 3) with lr 0.1.
    for dev in backends("gradient_descent_on_an_elliptic_bowl") {
        let xy = param(&[3.0, 3.0], &dev);
        let mut opt = Sgd::new(vec![xy.clone()], 0.1);
        let weights = Tensor::from_vec(&[1.0, 2.0], &[2], &dev);
        let mut seen = vec![];
        for _ in 0..2 {
            opt.zero_grad();
            (&xy.square() * &weights).sum_all().backward();
            opt.step();
            seen.push(xy.to_vec());
        }
        assert_close("step 1", &seen[0], &[2.4, 1.8], 0.0, 1e-6);
        assert_close("step 2", &seen[1], &[1.92, 1.08], 0.0, 1e-6);
    }
}

/// AdaGrad on J = θ² in f64, as written with eps inside (`√(s + eps)`,
/// textbook) or outside (`√s + eps`, PyTorch) the root: the reference for
/// the placement test.
fn adagrad_on_square(theta: f64, lr: f64, eps: f64, eps_inside_sqrt: bool, steps: usize) -> f64 {
    let (mut t, mut s) = (theta, 0.0);
    for _ in 0..steps {
        let g = 2.0 * t;
        s += g * g;
        t -= lr * g / if eps_inside_sqrt { (s + eps).sqrt() } else { s.sqrt() + eps };
    }
    t
}

#[test]
fn ten_steps_on_theta_squared() {
    // J(θ) = θ² from θ = 1, 10 steps: the worked values of the textbooks.
    for dev in backends("ten_steps_on_theta_squared") {
        let run = |opt: &mut dyn Optimizer, theta: &Tensor| {
            minimise_square(opt, theta, 10);
            theta.item()
        };
        let t = param(&[1.0], &dev);
        assert_close("GD", &[run(&mut Sgd::new(vec![t.clone()], 0.1), &t)], &[0.1073742], 0.0, 1e-6);

        let t = param(&[1.0], &dev);
        let opts = SgdOptions { momentum: 0.9, ..Default::default() };
        let v = run(&mut Sgd::with_options(vec![t.clone()], 0.1, opts), &t);
        assert_close("momentum", &[v], &[0.0043999], 0.0, 1e-6);

        // The textbook AdaGrad (eps inside the root, eps = 1e-7).
        let t = param(&[1.0], &dev);
        let opts = AdaGradOptions { eps: 1e-7, eps_inside_sqrt: true, ..Default::default() };
        let v = run(&mut AdaGrad::with_options(vec![t.clone()], 0.1, opts), &t);
        assert_close("AdaGrad (textbook)", &[v], &[0.5537312], 0.0, 1e-6);

        // Lion moves every coordinate by exactly lr while the gradient keeps its sign.
        let t = param(&[1.0], &dev);
        let v = run(&mut Lion::new(vec![t.clone()], 0.05), &t);
        assert_close("Lion", &[v], &[0.5], 0.0, 1e-6);

        // Adam's first step is lr · sign(g) (bias-corrected m/√v = g/|g|).
        let t = param(&[1.0, -2.0], &dev);
        let mut adam = Adam::new(vec![t.clone()], 0.01);
        minimise_square(&mut adam, &t, 1);
        assert_close("Adam step 1", &t.to_vec(), &[0.99, -1.99], 0.0, 1e-6);
    }
}

#[test]
fn adagrad_eps_placement_matches_its_formula() {
    // With a large eps the two placements differ visibly; each matches its formula.
    for dev in backends("adagrad_eps_placement_matches_its_formula") {
        for inside in [false, true] {
            let t = param(&[1.0], &dev);
            let opts = AdaGradOptions { eps: 0.5, eps_inside_sqrt: inside, ..Default::default() };
            minimise_square(&mut AdaGrad::with_options(vec![t.clone()], 0.1, opts), &t, 10);
            let want = adagrad_on_square(1.0, 0.1, 0.5, inside, 10) as f32;
            assert_close(&format!("eps inside: {inside}"), &[t.item()], &[want], 1e-6, 0.0);
        }
        assert!(
            (adagrad_on_square(1.0, 0.1, 0.5, true, 10) - adagrad_on_square(1.0, 0.1, 0.5, false, 10)).abs() > 0.01
        );
    }
}

/// Every optimizer, in a variant that keeps every kind of state buffer.
fn all_optimizers(params: &[Tensor]) -> Vec<Box<dyn Optimizer>> {
    let groups = || {
        vec![ParamGroup::new(vec![params[0].clone()], 0.05, 0.01), ParamGroup::new(vec![params[1].clone()], 0.1, 0.0)]
    };
    vec![
        Box::new(Sgd::with_groups(groups(), SgdOptions { momentum: 0.9, nesterov: true, ..Default::default() })),
        Box::new(AdaGrad::with_groups(
            groups(),
            AdaGradOptions { lr_decay: 0.01, initial_accumulator_value: 0.1, ..Default::default() },
        )),
        Box::new(RmsProp::with_groups(
            groups(),
            RmsPropOptions { momentum: 0.5, centered: true, ..Default::default() },
        )),
        Box::new(Adam::with_groups(groups(), AdamOptions { amsgrad: true, ..Default::default() })),
        Box::new(AdamW::with_groups(groups(), AdamWOptions::default())),
        Box::new(Lion::with_groups(groups(), LionOptions::default())),
    ]
}

fn fresh_params(dev: &Device) -> Vec<Tensor> {
    vec![
        Tensor::from_vec(&[0.5, -1.0, 2.0, 0.25, -0.75, 1.5], &[2, 3], dev).requires_grad_(),
        param(&[1.0, -0.5, 0.3], dev),
    ]
}

/// A loss whose gradients change from step to step: Σ (w·c)⁴ + Σ b³ over fixed c.
fn train(opt: &mut dyn Optimizer, params: &[Tensor], steps: usize) {
    let dev = params[0].device();
    let c = Tensor::from_vec(&[1.0, 0.5, -0.25, 2.0, 1.0, 0.5], &[2, 3], &dev);
    for _ in 0..steps {
        opt.zero_grad();
        let loss = (&params[0] * &c).powf(4.0).sum_all() + params[1].powf(3.0).sum_all();
        loss.backward();
        opt.step();
    }
}

fn snapshot(params: &[Tensor]) -> Vec<Vec<f32>> {
    params.iter().map(|p| p.to_vec()).collect()
}

#[test]
fn state_dict_round_trips_and_resumes_exactly() {
    for dev in backends("state_dict_round_trips_and_resumes_exactly") {
        let (pa, pb) = (fresh_params(&dev), fresh_params(&dev));
        for (mut a, mut b) in all_optimizers(&pa).into_iter().zip(all_optimizers(&pb)) {
            train(a.as_mut(), &pa, 3);
            let sd = a.state_dict();
            let kind = sd.meta["kind"].clone();
            assert_eq!(sd.meta["state.0.step"], "3", "{kind}");
            assert_eq!(sd.meta["param_groups.1.params"], "1", "{kind}");
            assert_eq!(sd.meta["param_groups.0.lr"], "0.05", "{kind}");
            // Bring b's parameters to a's values, then give b a's state.
            for (p, q) in pa.iter().zip(&pb) {
                q.assign(&Tensor::from_vec(&p.to_vec(), &p.shape(), &dev));
            }
            b.load_state_dict(&sd).unwrap();
            let again = b.state_dict();
            assert_eq!(again.meta, sd.meta, "{kind}: metadata after a round trip");
            assert_eq!(again.tensors.keys().collect::<Vec<_>>(), sd.tensors.keys().collect::<Vec<_>>(), "{kind}");
            for (k, t) in &sd.tensors {
                assert_eq!(again.tensors[k].to_vec(), t.to_vec(), "{kind}: {k}");
            }
            // The saved state is a copy: training on does not change it.
            let saved: Vec<Vec<f32>> = sd.tensors.values().map(|t| t.to_vec()).collect();
            train(a.as_mut(), &pa, 3);
            train(b.as_mut(), &pb, 3);
            assert_eq!(snapshot(&pa), snapshot(&pb), "{kind}: resumed run differs");
            assert_eq!(
                sd.tensors.values().map(|t| t.to_vec()).collect::<Vec<_>>(),
                saved,
                "{kind}: state dict aliased"
            );
        }
    }
}

#[test]
fn state_dict_names_follow_pytorch() {
    let dev = Device::cpu();
    let p = fresh_params(&dev);
    let mut opt = Adam::with_options(p.clone(), 0.01, AdamOptions { amsgrad: true, ..Default::default() });
    // Only the first parameter gets a gradient: the second has no state.
    p[0].sum_all().backward();
    opt.step();
    let sd = opt.state_dict();
    let names: Vec<&str> = sd.tensors.keys().map(|s| s.as_str()).collect();
    assert_eq!(names, ["state.0.exp_avg", "state.0.exp_avg_sq", "state.0.max_exp_avg_sq"]);
    assert_eq!(sd.tensors["state.0.exp_avg"].shape(), vec![2, 3]);
    assert_eq!(sd.meta["kind"], "Adam");
    assert_eq!(sd.meta["options.beta2"], "0.999");
    assert_eq!(sd.meta["options.amsgrad"], "true");
    assert_eq!(sd.meta["param_groups.0.params"], "0,1");
    assert!(!sd.meta.contains_key("state.1.step"));
}

#[test]
fn loading_a_foreign_or_damaged_state_is_an_error() {
    let dev = Device::cpu();
    let p = fresh_params(&dev);
    let mut adam = Adam::new(p.clone(), 0.01);
    train(&mut adam, &p, 1);
    let sd = adam.state_dict();
    let err = |opt: &mut dyn Optimizer, sd: &StateDict| opt.load_state_dict(sd).unwrap_err().to_string();

    assert!(err(&mut Sgd::new(p.clone(), 0.1), &sd).contains("saved by a Adam optimizer, not a SGD"));
    let groups = vec![ParamGroup::new(vec![p[0].clone()], 0.1, 0.0), ParamGroup::new(vec![p[1].clone()], 0.1, 0.0)];
    assert!(err(&mut Adam::with_groups(groups, AdamOptions::default()), &sd).contains("1 parameter groups"));
    let mut missing = sd.clone();
    missing.tensors.remove("state.1.exp_avg_sq");
    assert!(err(&mut Adam::new(p.clone(), 0.01), &missing).contains("state.1.exp_avg_sq"));
    let mut misshaped = sd.clone();
    misshaped.tensors.insert("state.0.exp_avg".into(), Tensor::zeros(&[6], &dev));
    assert!(err(&mut Adam::new(p.clone(), 0.01), &misshaped).contains("[2, 3]"));
    let mut extra = sd.clone();
    extra.tensors.insert("state.7.exp_avg".into(), Tensor::zeros(&[1], &dev));
    assert!(err(&mut Adam::new(p.clone(), 0.01), &extra).contains("unexpected state entry"));
    // A failed load changes nothing.
    let mut fresh = Adam::new(p.clone(), 0.5);
    let _ = fresh.load_state_dict(&misshaped);
    assert_eq!(fresh.groups()[0].lr, 0.5);
    assert!(fresh.state_dict().tensors.is_empty());
}

#[test]
fn state_loads_across_devices() {
    let Some(gpu) = gpu_or_skip("state_loads_across_devices") else { return };
    let cpu = Device::cpu();
    let (pc, pg) = (fresh_params(&cpu), fresh_params(&gpu));
    let mut a = AdamW::new(pc.clone(), 0.01);
    let mut b = AdamW::new(pg.clone(), 0.01);
    train(&mut a, &pc, 2);
    train(&mut b, &pg, 2);
    // A state saved on the GPU resumes on the CPU backend.
    a.load_state_dict(&b.state_dict()).unwrap();
    for (p, q) in pc.iter().zip(&pg) {
        p.assign(&Tensor::from_vec(&q.to_vec(), &q.shape(), &cpu));
    }
    train(&mut a, &pc, 2);
    train(&mut b, &pg, 2);
    for (p, q) in pc.iter().zip(&pg) {
        assert_close("resumed on the CPU", &p.to_vec(), &q.to_vec(), 1e-5, 1e-6);
    }
}

#[test]
fn clip_grad_norm_scales_to_the_max_norm() {
    for dev in backends("clip_grad_norm_scales_to_the_max_norm") {
        let set_grads = || {
            let (a, b) = (param(&[0.0, 0.0], &dev), param(&[0.0], &dev));
            // Gradients (3, 4) and (12): total norm 13.
            (&(&a * &Tensor::from_vec(&[3.0, 4.0], &[2], &dev)).sum_all() + &(&b * 12.0).sum_all()).backward();
            vec![a, b]
        };
        let p = set_grads();
        let norm = clip_grad_norm_(&p, 6.5);
        assert_eq!(norm.shape(), Vec::<usize>::new());
        assert_close("norm", &[norm.item()], &[13.0], 1e-6, 0.0);
        assert_close("clipped a", &p[0].grad().unwrap().to_vec(), &[1.5, 2.0], 1e-6, 0.0);
        assert_close("clipped b", &p[1].grad().unwrap().to_vec(), &[6.0], 1e-6, 0.0);

        // Below the limit the gradients stay (scaled by min(1, …) = 1).
        let p = set_grads();
        assert_close("norm", &[clip_grad_norm_(&p, 20.0).item()], &[13.0], 1e-6, 0.0);
        assert_eq!(p[0].grad().unwrap().to_vec(), vec![3.0, 4.0]);

        // Parameters without gradients are skipped; none at all gives 0.
        let lone = param(&[1.0], &dev);
        assert_eq!(clip_grad_norm_(&[lone], 1.0).item(), 0.0);

        let p = set_grads();
        clip_grad_value_(&p, 3.5);
        assert_eq!(p[0].grad().unwrap().to_vec(), vec![3.0, 3.5]);
        assert_eq!(p[1].grad().unwrap().to_vec(), vec![3.5]);
    }
}

#[test]
fn a_step_is_one_kernel_per_parameter_without_readback() {
    let Some(dev) = fresh_gpu_or_skip("a_step_is_one_kernel_per_parameter_without_readback") else { return };
    let p = fresh_params(&dev);
    let q = param(&[1.0; 5], &dev); // never gets a gradient: skipped
    let mut all = p.clone();
    all.push(q);
    for mut opt in all_optimizers(&p).into_iter().chain([Box::new(Adam::new(all.clone(), 0.01)) as Box<dyn Optimizer>])
    {
        train(opt.as_mut(), &p, 2); // state exists, pipelines compiled
        opt.zero_grad();
        (p[0].square().sum_all() + p[1].square().sum_all()).backward();
        let before = dev.stats();
        opt.step();
        let d = dev.stats() - before;
        let kind = opt.state_dict().meta["kind"].clone();
        assert_eq!((d.readbacks, d.submissions, d.dispatches), (0, 0, 2), "{kind}");

        let before = dev.stats();
        let norm = clip_grad_norm_(&p, 1.0);
        let d = dev.stats() - before;
        assert_eq!((d.readbacks, d.submissions), (0, 0), "clip_grad_norm_");
        assert!(norm.item() > 0.0);
    }
}

#[test]
fn snapshots_keep_their_values_and_steps_are_in_place() {
    for dev in backends("snapshots_keep_their_values_and_steps_are_in_place") {
        let p = param(&[1.0, 2.0], &dev);
        let snapshot = p.detach(); // shares the parameter's buffer
        let mut opt = Sgd::new(vec![p.clone()], 0.25);
        minimise_square(&mut opt, &p, 1);
        assert_eq!(snapshot.to_vec(), vec![1.0, 2.0], "copy on write spared the snapshot");
        assert_eq!(p.to_vec(), vec![0.5, 1.0]);
    }
    // On the CPU backend with its pool emptied every allocation is counted:
    // the first step copies the shared buffer once (and makes the group's
    // buffer of step scalars), later steps write the parameter and the
    // scalars in place.
    let dev = Device::cpu();
    let p = param(&[1.0, 2.0], &dev);
    let _snapshot = p.detach();
    let mut opt = Sgd::new(vec![p.clone()], 0.25);
    let mut allocations = vec![];
    for _ in 0..3 {
        opt.zero_grad();
        p.square().sum_all().backward();
        dev.empty_cache();
        let before = dev.stats().buffers_created;
        opt.step();
        allocations.push(dev.stats().buffers_created - before);
    }
    assert_eq!(allocations, vec![2, 0, 0]);
    assert_eq!(p.to_vec(), vec![0.125, 0.25]);
}

#[test]
#[should_panic(expected = "appears more than once")]
fn a_parameter_in_two_groups_is_refused() {
    let p = param(&[1.0], &Device::cpu());
    Sgd::with_groups(
        vec![ParamGroup::new(vec![p.clone()], 0.1, 0.0), ParamGroup::new(vec![p], 0.1, 0.0)],
        SgdOptions::default(),
    );
}

#[test]
#[should_panic(expected = "Nesterov momentum requires")]
fn nesterov_without_momentum_is_refused() {
    Sgd::with_options(vec![], 0.1, SgdOptions { nesterov: true, ..Default::default() });
}

/// An optimizer step split into its host half (`prepare_step`, before the
/// gradients exist) and its device half (`apply_step`) updates the same
/// bits and keeps the same state as `step`, a parameter that requires a
/// gradient but never gets one included (not stepped, no state made).
#[test]
fn prepare_then_apply_is_step() {
    for dev in backends("prepare_then_apply_is_step") {
        let run = |split: bool| {
            let (p, unused) = (param(&[1.0, -2.0, 0.5], &dev), param(&[3.0], &dev));
            let mut opt = Adam::new(vec![p.clone(), unused.clone()], 0.1);
            for i in 0..3 {
                opt.groups_mut()[0].lr = 0.1 / (1.0 + i as f32);
                opt.zero_grad();
                if split {
                    opt.prepare_step();
                }
                p.square().sum_all().backward();
                if split {
                    opt.apply_step();
                } else {
                    opt.step();
                }
            }
            let sd = opt.state_dict();
            let mut meta: Vec<(String, String)> = sd.meta.into_iter().collect();
            meta.sort();
            (p.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>(), unused.to_vec(), meta)
        };
        let (eager, split) = (run(false), run(true));
        assert!(split == eager, "{}: {split:?} vs {eager:?}", dev.name());
        assert!(!eager.2.iter().any(|(k, _)| k.starts_with("state.1.")), "no state for the unused parameter");
    }
}
