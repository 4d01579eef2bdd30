//! `#[derive(Module)]`: names, order, training mode and checkpoints of a
//! user-defined module, checked against what PyTorch does for the
//! equivalent `nn.Module`:
//!
//! ```python
//! class Block(nn.Module):
//!     def __init__(self, norm):
//!         super().__init__()
//!         self.conv = nn.Conv2d(2, 3, 3)
//!         self.bn = nn.BatchNorm2d(3) if norm else None
//!         self.drop = nn.Dropout(0.5)
//!
//! class Net(nn.Module):
//!     def __init__(self):
//!         super().__init__()
//!         self.weight = nn.Parameter(torch.ones(3))
//!         self.blocks = nn.ModuleList([Block(True), Block(False)])
//!         self.bias = nn.Parameter(torch.zeros(3))
//!         self.gate = None                      # an absent optional parameter
//!         self.register_buffer("step", torch.zeros(()))
//!         self.head = nn.Linear(3, 4)
//!         self.classifier = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2))
//! ```
//!
//! (`bias` is assigned after `blocks` but, as in PyTorch, a module's own
//! parameters come before its children's.)

use wgrad_autograd::{no_grad, Device, Tensor};
use wgrad_nn::checkpoint::{load_module, load_state_dict, save_module};
use wgrad_nn::*;

#[derive(Module)]
struct Block {
    #[module]
    conv: Conv2d,
    #[module]
    bn: Option<BatchNorm2d>,
    #[module]
    drop: Dropout,
}

#[derive(Module)]
struct Net {
    #[param(rename = "weight")]
    scale: Tensor,
    #[module]
    blocks: Vec<Block>,
    #[param]
    bias: Option<Tensor>,
    #[param]
    gate: Option<Tensor>,
    #[buffer]
    step: Tensor,
    #[module]
    head: Option<Linear>,
    #[module(rename = "classifier")]
    layers: Vec<Box<dyn Module>>,
    /// Scratch that is not state: stays out of the state dict.
    #[skip]
    cache: Tensor,
    #[training]
    training: bool,
    /// Plain data needs no attribute.
    label: String,
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.conv.forward(x);
        let h = match &self.bn {
            Some(bn) => bn.forward(&h),
            None => h,
        };
        self.drop.forward(&h)
    }
    fn describe(&self) -> String {
        "Block".into()
    }
}

impl Module for Net {
    fn forward(&self, x: &Tensor) -> Tensor {
        x * &self.scale
    }
    fn describe(&self) -> String {
        format!("Net({}, cache of {})", self.label, self.cache.numel())
    }
}

fn net(seed: u64, dev: &Device) -> Net {
    let mut init = Init::new(dev, seed);
    let init = &mut init;
    let block = |norm: bool, init: &mut Init| Block {
        conv: Conv2d::builder(2, 3, 3).build(init),
        bn: norm.then(|| BatchNorm2d::builder(3).build(init)),
        drop: Dropout::builder(0.5).build(init),
    };
    let blocks = vec![block(true, init), block(false, init)];
    let layers: Vec<Box<dyn Module>> = vec![
        Box::new(Linear::builder(4, 4).build(init)),
        Box::new(Dropout::builder(0.5).build(init)),
        Box::new(Linear::builder(4, 2).build(init)),
    ];
    Net {
        scale: init.generator().normal(&[3], 0.0, 1.0, dev).requires_grad_(),
        blocks,
        bias: Some(init.generator().normal(&[3], 0.0, 1.0, dev).requires_grad_()),
        gate: None,
        step: Tensor::full(&[], seed as f32, dev),
        head: Some(Linear::builder(3, 4).build(init)),
        layers,
        cache: Tensor::zeros(&[5], dev),
        training: true,
        label: "test".into(),
    }
}

fn names(v: Vec<(String, Tensor)>) -> Vec<String> {
    v.into_iter().map(|(n, _)| n).collect()
}

#[test]
fn names_and_order_are_pytorchs() {
    let dev = Device::cpu();
    let n = net(1, &dev);
    assert_eq!(
        names(n.named_parameters()),
        [
            "weight",
            "bias",
            "blocks.0.conv.weight",
            "blocks.0.conv.bias",
            "blocks.0.bn.weight",
            "blocks.0.bn.bias",
            "blocks.1.conv.weight",
            "blocks.1.conv.bias",
            "head.weight",
            "head.bias",
            "classifier.0.weight",
            "classifier.0.bias",
            "classifier.2.weight",
            "classifier.2.bias",
        ]
    );
    assert_eq!(
        names(n.named_buffers()),
        ["step", "blocks.0.bn.running_mean", "blocks.0.bn.running_var", "blocks.0.bn.num_batches_tracked"]
    );
    let kids: Vec<String> = n.children().into_iter().map(|(k, _)| k).collect();
    assert_eq!(kids, ["blocks.0", "blocks.1", "head", "classifier.0", "classifier.1", "classifier.2"]);
    // Nested prefixes compose: a derived module inside a Sequential.
    let seq = Sequential::new().add(Identity).add(net(2, &dev));
    assert_eq!(names(seq.named_parameters())[..3], ["1.weight", "1.bias", "1.blocks.0.conv.weight"]);
}

#[test]
fn set_training_reaches_every_nested_child() {
    let dev = Device::cpu();
    let mut n = net(3, &dev);
    let x = Tensor::ones(&[2, 3, 4, 4], &dev);
    let ones = Tensor::ones(&[64], &dev);
    let dropout_is_identity = |d: &Dropout| d.forward(&ones).to_vec() == ones.to_vec();

    n.eval();
    assert!(!n.training);
    for b in &n.blocks {
        assert!(dropout_is_identity(&b.drop));
    }
    assert_eq!(n.layers[1].forward(&ones).to_vec(), ones.to_vec());
    // BatchNorm in eval mode neither counts batches nor moves its statistics.
    let bn = n.blocks[0].bn.as_ref().unwrap();
    no_grad(|| bn.forward(&x));
    assert_eq!(bn.num_batches_tracked().item(), 0.0);

    n.train();
    assert!(n.training);
    assert!(n.blocks.iter().all(|b| !dropout_is_identity(&b.drop)));
    assert_ne!(n.layers[1].forward(&ones).to_vec(), ones.to_vec());
    let bn = n.blocks[0].bn.as_ref().unwrap();
    no_grad(|| bn.forward(&x));
    assert_eq!(bn.num_batches_tracked().item(), 1.0);
}

#[test]
fn state_dict_round_trips() {
    let dev = Device::cpu();
    let dir = std::env::temp_dir().join(format!("wgrad_derive_module_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("net.safetensors");

    let a = net(4, &dev);
    // Move the running statistics off their initial values first.
    no_grad(|| a.blocks[0].bn.as_ref().unwrap().forward(&Tensor::full(&[2, 3, 4, 4], 2.0, &dev)));
    save_module(&path, &a).unwrap();

    let file = load_state_dict(&path, &dev).unwrap();
    let mut expected: Vec<String> = names(a.named_parameters());
    expected.extend(names(a.named_buffers()));
    expected.sort();
    assert_eq!(file.tensors.keys().cloned().collect::<Vec<_>>(), expected, "skipped and absent fields stay out");

    let b = net(5, &dev);
    assert_ne!(b.scale.to_vec(), a.scale.to_vec());
    let report = load_module(&path, &b, true).unwrap();
    assert!(report.is_exact());
    let all = |m: &Net| {
        let mut v = m.named_parameters();
        v.extend(m.named_buffers());
        v.into_iter().map(|(n, t)| (n, t.to_vec())).collect::<Vec<_>>()
    };
    assert_eq!(all(&a), all(&b));
    assert_eq!(b.blocks[0].bn.as_ref().unwrap().num_batches_tracked().item(), 1.0);
    std::fs::remove_dir_all(&dir).ok();
}
