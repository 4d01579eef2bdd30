//! Module plumbing: PyTorch names and order, parameter counts, modes, summary.

use wgrad_autograd::{Device, Tensor};
use wgrad_gpu_core::testing::assert_close;
use wgrad_nn::*;

fn mlp(dev: &Device) -> Sequential {
    let mut init = Init::new(dev, 0);
    Sequential::new()
        .add(Linear::builder(4, 8).build(&mut init))
        .add(ReLU)
        .add(Sequential::new().add(Linear::builder(8, 8).bias(false).build(&mut init)).add(Tanh))
        .add(Linear::builder(8, 2).build(&mut init))
}

#[test]
fn parameters_have_pytorch_names_in_order() {
    let m = mlp(&Device::cpu());
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.0.weight", "3.weight", "3.bias"]);
    assert_eq!(m.num_parameters(), 4 * 8 + 8 + 8 * 8 + 8 * 2 + 2);
    assert!(m.parameters().iter().all(|p| p.requires_grad()));
}

#[test]
fn summary_lists_layers_shapes_and_counts() {
    let dev = Device::cpu();
    let m = mlp(&dev);
    let s = m.summary(&Tensor::zeros(&[3, 4], &dev));
    assert!(s.contains("Linear(in_features=4, out_features=8, bias=true)"), "{s}");
    assert!(s.contains("[3, 8]") && s.contains("[3, 2]"), "{s}");
    assert!(s.contains(&format!("Total params: {}", m.num_parameters())), "{s}");
    assert!(s.contains("    0: Linear(in_features=8"), "nested children are indented:\n{s}");
}

#[test]
fn linear_default_init_follows_pytorch_bounds() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 3);
    let l = Linear::builder(400, 300).build(&mut init);
    let bound = 1.0 / 400f32.sqrt();
    let w = l.weight.to_vec();
    assert!(w.iter().all(|v| v.abs() <= bound));
    // Uniform(-b, b) has variance b²/3.
    let var = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
    assert!((var - bound * bound / 3.0).abs() < 0.05 * bound * bound / 3.0, "variance {var}");
    assert!(l.bias.unwrap().to_vec().iter().all(|v| v.abs() <= bound));
}

#[test]
fn same_seed_same_model() {
    let dev = Device::cpu();
    let a = mlp(&dev).parameters();
    let b = mlp(&dev).parameters();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.to_vec(), y.to_vec());
    }
}

#[test]
fn activations_forward_like_their_tensor_methods() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 0);
    let x = Tensor::from_vec(&[-1.0, 0.5], &[2], &dev);
    assert_eq!(ReLU.forward(&x).to_vec(), vec![0.0, 0.5]);
    assert_eq!(LeakyReLU(0.1).forward(&x).to_vec(), vec![-0.1, 0.5]);
    assert_eq!(Identity.forward(&x).to_vec(), x.to_vec());
    assert_eq!(Flatten::default().forward(&Tensor::zeros(&[2, 3, 4], &dev)).shape(), vec![2, 12]);
    let p = PReLU::builder(1).build(&mut init);
    assert_eq!(p.forward(&x).to_vec(), vec![-0.25, 0.5]);
}

/// `nn.PReLU(2)` with slopes 0.25 and -0.5 on `[1, 2, 3]`, against
/// PyTorch 2.x: outputs and both gradients for an upstream gradient of 1
/// and of +inf (x's gradient is exactly g or a·g; the slopes' gradient sums
/// x·g over x <= 0, so 0·inf makes it NaN in PyTorch too).
#[test]
fn prelu_forward_and_gradients_are_pytorchs() {
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    for dev in wgrad_gpu_core::testing::backends("prelu_forward_and_gradients_are_pytorchs") {
        let mut init = Init::new(&dev, 0);
        let p = PReLU::builder(2).build(&mut init);
        p.weight.assign(&Tensor::from_vec(&[0.25, -0.5], &[2], &dev));
        let x = Tensor::from_vec(&[-2.0, 0.0, 3.0, 1.5, -1.0, 0.0], &[1, 2, 3], &dev).requires_grad_();
        for (g, dx, da) in [
            (1.0, [0.25, 0.25, 1.0, 1.0, -0.5, -0.5], [-2.0, -1.0]),
            (inf, [inf, inf, inf, inf, -inf, -inf], [nan, nan]),
        ] {
            x.zero_grad();
            p.weight.zero_grad();
            let y = p.forward(&x);
            assert_eq!(y.to_vec(), [-0.5, 0.0, 3.0, 1.5, 0.5, -0.0], "forward on {}", dev.name());
            y.backward_with(&Tensor::full(&[1, 2, 3], g, &dev));
            assert_eq!(x.grad().unwrap().to_vec(), dx, "x's gradient for upstream {g} on {}", dev.name());
            let got = p.weight.grad().unwrap().to_vec();
            let same = got.iter().zip(da).all(|(a, b): (&f32, f32)| if b.is_nan() { a.is_nan() } else { *a == b });
            assert!(same, "the slopes' gradient for upstream {g} on {}: {got:?}, PyTorch {da:?}", dev.name());
        }
    }
}

#[test]
fn train_and_eval_reach_nested_dropout_and_batch_norm() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 9);
    let mut m = Sequential::new()
        .add(Sequential::new().add(Dropout::builder(0.5).build(&mut init)))
        .add(BatchNorm1d::builder(4).build(&mut init));
    let x = Tensor::ones(&[64, 4], &dev);
    m.train();
    let y = m.get(0).forward(&x).to_vec();
    let dropped = y.iter().filter(|&&v| v == 0.0).count();
    assert!(dropped > 64 && dropped < 192, "about half dropped in training: {dropped}");
    assert!(y.iter().all(|&v| v == 0.0 || v == 2.0), "kept values scaled by 1/(1-p)");
    m.forward(&x);
    assert_eq!(m.named_buffers()[2].1.item(), 1.0, "num_batches_tracked counts training batches");
    m.eval();
    assert_eq!(m.get(0).forward(&x).to_vec(), x.to_vec(), "dropout is the identity in eval");
    let names: Vec<String> = m.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["1.running_mean", "1.running_var", "1.num_batches_tracked"]);
}

#[test]
fn batch_norm_counts_batches_without_a_kernel_per_step() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 0);
    let bn = BatchNorm1d::builder(3).build(&mut init);
    let x = Tensor::randn(&[8, 3], 1, &dev);
    bn.forward(&x);
    let before = dev.stats().dispatches;
    bn.forward(&x);
    let one_step = dev.stats().dispatches - before;
    // The counter is read: the two pending batches become one add.
    assert_eq!(bn.num_batches_tracked().item(), 2.0);
    let before = dev.stats().dispatches;
    for _ in 0..3 {
        bn.forward(&x);
    }
    assert_eq!(dev.stats().dispatches - before, 3 * one_step, "no counter kernel per training step");
    assert_eq!(bn.named_buffers()[2].1.item(), 5.0, "visiting the buffers folds the pending count in");
    // Writing the buffer (as loading a state dict does) sets the count.
    bn.num_batches_tracked().assign(&Tensor::scalar(40.0, &dev));
    bn.forward(&x);
    assert_eq!(bn.num_batches_tracked().item(), 41.0);
}

#[test]
fn dropout_stream_can_be_saved_and_restored() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 0);
    let d = Dropout::builder(0.5).build(&mut init);
    let x = Tensor::ones(&[256], &dev);
    let saved = d.generator();
    let first = d.forward(&x).to_vec();
    assert_ne!(d.generator(), saved, "the stream advances per mask");
    d.set_generator(saved);
    assert_eq!(d.forward(&x).to_vec(), first, "restoring the stream repeats the mask");
}

/// PyTorch's distinct classes are distinct types over one implementation:
/// each builds its own kind, with the shared type's names and behaviour.
#[test]
fn distinct_classes_build_their_own_kind() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 1);
    let kinds = [
        (RNN::builder(3, 4).build(&mut init).kind(), RecurrentKind::RnnTanh),
        (RNN::builder(3, 4).relu(true).build(&mut init).kind(), RecurrentKind::RnnRelu),
        (LSTM::builder(3, 4).build(&mut init).kind(), RecurrentKind::Lstm),
        (GRU::builder(3, 4).build(&mut init).kind(), RecurrentKind::Gru),
    ];
    for (got, want) in kinds {
        assert_eq!(got, want);
    }
    let (lstm, shared) = (
        LSTM::builder(3, 4).build(&mut Init::new(&dev, 2)),
        Recurrent::builder(RecurrentKind::Lstm, 3, 4).build(&mut Init::new(&dev, 2)),
    );
    fn names(m: &(dyn Module + 'static)) -> Vec<(String, Vec<f32>)> {
        m.named_parameters().into_iter().map(|(n, t)| (n, t.to_vec())).collect()
    }
    assert_eq!(names(&lstm), names(&shared), "the same names and values as the shared type");
    assert_eq!(lstm.describe(), shared.describe());
    let x = Tensor::ones(&[2, 3], &dev);
    let (h, c) = LSTMCell::builder(3, 4).build(&mut init).step(&x, None);
    assert_eq!(
        (h.shape().to_vec(), c.map(|c| c.shape().to_vec())),
        (vec![2, 4], Some(vec![2, 4])),
        "an LSTM cell has a cell state"
    );
    assert!(GRUCell::builder(3, 4).build(&mut init).step(&x, None).1.is_none(), "a GRU cell has none");
    assert_eq!(
        BatchNorm2d::builder(3).build(&mut init).forward(&Tensor::ones(&[2, 3, 2, 2], &dev)).shape(),
        vec![2, 3, 2, 2]
    );
    let bn1 = BatchNorm1d::builder(3).build(&mut init);
    let wrong = std::panic::catch_unwind(|| bn1.forward(&Tensor::ones(&[2, 3, 2, 2], &Device::cpu())));
    assert!(wrong.is_err(), "BatchNorm1d rejects [N, C, H, W] input, as PyTorch's does");
}

/// A Linear or Conv2d followed by ReLU in a Sequential runs as one launch,
/// the ReLU in the product's store (the fuser's doing, not the layers'):
/// the same values and gradients, bit for bit, as on a GPU that does not
/// fuse, and one launch fewer per pair.
#[test]
fn sequential_fuses_relu_into_the_layer_before_it() {
    for dev in cpu_and_fresh_gpu("sequential_fuses_relu_into_the_layer_before_it") {
        let mut init = Init::new(&dev, 3);
        let m = Sequential::new()
            .add(Conv2d::builder(2, 4, 3).padding(1).build(&mut init))
            .add(ReLU)
            .add(Flatten::default())
            .add(Linear::builder(4 * 5 * 5, 6).build(&mut init))
            .add(ReLU)
            .add(Linear::builder(6, 3).build(&mut init));
        let x = Tensor::randn(&[2, 2, 5, 5], 7, &dev);
        let (fused, plain) = (Pass::run(&m, &x, true, true), Pass::run(&m, &x, false, false));
        assert!(fused.out.iter().any(|&v| v != 0.0), "{}: a non-trivial output", dev.name());
        assert_eq!((&fused.out, &fused.grads), (&plain.out, &plain.grads), "{}: values and gradients", dev.name());
        if dev.is_gpu() {
            assert_eq!(fused.forward + 2, plain.forward, "two ReLUs fused into their layers");
        }
    }
}

/// The CPU backend, and a GPU of the test's own (launches are counted).
fn cpu_and_fresh_gpu(test: &str) -> Vec<Device> {
    let mut devs = vec![Device::cpu()];
    devs.extend(wgrad_gpu_core::testing::fresh_gpu_or_skip(test));
    devs
}

/// One pass of a `Sequential` forward and backward (of the output's sum of
/// squares): whole or layer by layer; on a GPU, with the
/// fuser on or off.
struct Pass {
    out: Vec<f32>,
    /// The parameters' gradients, then the input's if it takes one.
    grads: Vec<Vec<f32>>,
    forward: u64,
}

impl Pass {
    fn run(m: &Sequential, x: &Tensor, whole: bool, fuse: bool) -> Pass {
        let dev = x.device();
        dev.set_fusion(fuse).unwrap();
        m.zero_grad();
        x.zero_grad();
        dev.synchronize().unwrap();
        let before = dev.stats().dispatches;
        let y = if whole { m.forward(x) } else { (0..m.len()).fold(x.clone(), |h, i| m.get(i).forward(&h)) };
        let out = y.to_vec();
        let forward = dev.stats().dispatches - before;
        y.square().sum_all().backward();
        let mut grads: Vec<Vec<f32>> = m.parameters().iter().map(|p| p.grad().expect("gradient").to_vec()).collect();
        if x.requires_grad() {
            grads.push(x.grad().expect("input gradient").to_vec());
        }
        dev.set_fusion(true).unwrap();
        Pass { out, grads, forward }
    }
}

/// Any other activation layer after a Linear goes into its store (the
/// fuser's tails): values and gradients as on a GPU that does not fuse (the
/// op evaluated by the store instead of its own kernel, so within f32
/// rounding), one forward launch fewer per fused pair; an activation after
/// a layer that is no product runs alone.
#[test]
fn sequential_fuses_other_activations_into_a_linear_before_them() {
    for dev in cpu_and_fresh_gpu("sequential_fuses_other_activations_into_a_linear_before_them") {
        let mut init = Init::new(&dev, 5);
        let m = Sequential::new()
            .add(Linear::builder(7, 9).build(&mut init))
            .add(GELU::default())
            .add(Linear::builder(9, 8).build(&mut init))
            .add(LeakyReLU(0.2))
            .add(LayerNorm::builder(&[8]).build(&mut init))
            .add(Tanh)
            .add(Linear::builder(8, 3).build(&mut init));
        let x = Tensor::randn(&[5, 7], 9, &dev);
        let (fused, plain) = (Pass::run(&m, &x, true, true), Pass::run(&m, &x, false, false));
        let what = dev.name();
        assert!(fused.out.iter().any(|&v| v != 0.0), "{what}: a non-trivial output");
        assert_close(&format!("{what}: values"), &fused.out, &plain.out, 1e-5, 1e-6);
        assert_close(&format!("{what}: gradients"), &fused.grads.concat(), &plain.grads.concat(), 1e-5, 1e-6);
        if dev.is_gpu() {
            assert_eq!(fused.forward + 2, plain.forward, "{what}: GELU and LeakyReLU fused, Tanh after LayerNorm not");
        }
    }
}

/// A ReLU followed by MaxPool2d needs nothing of the layers: on a GPU the
/// fuser merges the ReLU into the convolution's store and its gradient into
/// the pooling backward's (no ReLU gradient runs as a launch of its own),
/// with the same values and gradients, bit for bit, as a GPU that does not
/// fuse and as the CPU backend's.
#[test]
fn a_relu_before_max_pooling_merges_both_ways() {
    for dev in cpu_and_fresh_gpu("a_relu_before_max_pooling_merges_both_ways") {
        let mut init = Init::new(&dev, 4);
        // MNIST's CNN in small, and a chain that starts with the ReLU.
        let cnn = Sequential::new()
            .add(Conv2d::builder(1, 4, 3).build(&mut init))
            .add(ReLU)
            .add(MaxPool2d::new(2))
            .add(Conv2d::builder(4, 6, 3).build(&mut init))
            .add(ReLU)
            .add(MaxPool2d::new(2))
            .add(Flatten::default())
            .add(Linear::builder(6 * 2 * 2, 3).build(&mut init));
        let head = Sequential::new().add(ReLU).add(MaxPool2d::new(2)).add(Flatten::default());
        for m in [&cnn, &head] {
            let x = Tensor::randn(&[2, 1, 14, 14], 8, &dev).requires_grad_();
            let (fused, plain) = (Pass::run(m, &x, true, true), Pass::run(m, &x, true, false));
            let what = format!("{} on {}", m.describe(), dev.name());
            assert!(fused.out.iter().any(|&v| v != 0.0), "{what}: a non-trivial output");
            assert_eq!((&fused.out, &fused.grads), (&plain.out, &plain.grads), "{what}: values and gradients");
            if dev.is_gpu() {
                let y = m.forward(&x);
                let (_, profile) = dev.profile(|| y.square().sum_all().backward()).unwrap();
                let ops = profile.by_op();
                let merged = |n: &str| n.split('+').any(|part| part == "relu backward");
                assert!(ops.iter().any(|(n, _)| merged(n)), "{what}: a ReLU gradient in\n{profile}");
                assert!(ops.iter().all(|(n, _)| n != "relu backward"), "{what}: a ReLU gradient alone in\n{profile}");
            }
        }
    }
}
