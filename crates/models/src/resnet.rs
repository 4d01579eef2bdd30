//! Residual networks: the CIFAR family of He et al. 2016 (depth 6n+2) and the
//! ImageNet-shape ResNet-18/34/50 with torchvision's parameter names.

use wgrad_autograd::Tensor;
use wgrad_nn::{AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Init, Linear, MaxPool2d, Module, Sequential};

fn conv(cin: usize, cout: usize, k: usize, stride: usize, init: &mut Init) -> Conv2d {
    Conv2d::builder(cin, cout, k).stride(stride).padding(k / 2).bias(false).build(init)
}

/// How a block matches shapes when it changes width or resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortcut {
    /// Option A: subsample by 2 and zero-pad the new channels (no parameters;
    /// the CIFAR ResNets of the paper).
    ZeroPad,
    /// Option B: a strided 1x1 convolution + batch norm (torchvision's `downsample`).
    Projection,
}

/// Two 3x3 convolutions with a residual connection (`BasicBlock`).
#[derive(Module)]
pub struct BasicBlock {
    #[module]
    conv1: Conv2d,
    #[module]
    bn1: BatchNorm2d,
    #[module]
    conv2: Conv2d,
    #[module]
    bn2: BatchNorm2d,
    /// Projection shortcut as CIFAR code names it; at most one of `shortcut`
    /// and `downsample` is set.
    #[module]
    shortcut: Option<Sequential>,
    /// Projection shortcut as torchvision names it.
    #[module]
    downsample: Option<Sequential>,
    /// Channels to zero-pad on each side for option A.
    zero_pad: Option<usize>,
}

impl BasicBlock {
    /// A block from `cin` to `cout` channels; `name` is what the projection is
    /// called in PyTorch (`shortcut` or `downsample`).
    ///
    /// # Panics
    /// When a projection is needed and `name` is neither.
    pub fn new(cin: usize, cout: usize, stride: usize, shortcut: Shortcut, name: &str, init: &mut Init) -> Self {
        let needs = stride != 1 || cin != cout;
        let (projection, zero_pad) = match (needs, shortcut) {
            (false, _) => (None, None),
            (true, Shortcut::ZeroPad) => (None, Some((cout - cin) / 2)),
            (true, Shortcut::Projection) => {
                let s =
                    Sequential::new().add(conv(cin, cout, 1, stride, init)).add(BatchNorm2d::builder(cout).build(init));
                (Some(s), None)
            }
        };
        let (shortcut, downsample) = match (projection, name) {
            (None, _) => (None, None),
            (p @ Some(_), "shortcut") => (p, None),
            (p @ Some(_), "downsample") => (None, p),
            (Some(_), other) => panic!("BasicBlock: the projection is `shortcut` or `downsample`, got `{other}`"),
        };
        BasicBlock {
            conv1: conv(cin, cout, 3, stride, init),
            bn1: BatchNorm2d::builder(cout).build(init),
            conv2: conv(cout, cout, 3, 1, init),
            bn2: BatchNorm2d::builder(cout).build(init),
            shortcut,
            downsample,
            zero_pad,
        }
    }
}

impl Module for BasicBlock {
    fn forward(&self, x: &Tensor) -> Tensor {
        let out = self.bn1.forward(&self.conv1.forward(x)).relu();
        let out = self.conv2.forward(&out);
        let short = match (self.shortcut.as_ref().or(self.downsample.as_ref()), self.zero_pad) {
            (Some(p), _) => p.forward(x),
            (None, Some(pad)) => {
                // x[:, :, ::2, ::2] with `pad` zero channels on each side, as the paper's option A.
                let sub = x.slice_step(2, 0, 2).slice_step(3, 0, 2);
                let mut zshape = sub.shape();
                zshape[1] = pad;
                // In x's dtype, so an f16 activation stays f16 through the cat.
                let z = Tensor::zeros(&zshape, &x.device()).to_dtype(x.dtype());
                Tensor::cat(&[&z, &sub, &z], 1)
            }
            (None, None) => x.clone(),
        };
        self.bn2.forward(&out).add(&short).relu()
    }
    fn describe(&self) -> String {
        let w = self.conv1.weight.shape();
        format!("BasicBlock({} -> {}, stride {:?})", w[1], w[0], self.conv1.options.stride)
    }
}

/// 1x1 reduce, 3x3, 1x1 expand (x4) with a residual connection (`Bottleneck`, torchvision v1.5: stride on the 3x3).
#[derive(Module)]
pub struct Bottleneck {
    #[module]
    conv1: Conv2d,
    #[module]
    bn1: BatchNorm2d,
    #[module]
    conv2: Conv2d,
    #[module]
    bn2: BatchNorm2d,
    #[module]
    conv3: Conv2d,
    #[module]
    bn3: BatchNorm2d,
    #[module]
    downsample: Option<Sequential>,
}

impl Bottleneck {
    /// A block from `cin` channels to `4 * width`.
    pub fn new(cin: usize, width: usize, stride: usize, init: &mut Init) -> Self {
        let cout = width * 4;
        let downsample = (stride != 1 || cin != cout).then(|| {
            Sequential::new().add(conv(cin, cout, 1, stride, init)).add(BatchNorm2d::builder(cout).build(init))
        });
        Bottleneck {
            conv1: conv(cin, width, 1, 1, init),
            bn1: BatchNorm2d::builder(width).build(init),
            conv2: conv(width, width, 3, stride, init),
            bn2: BatchNorm2d::builder(width).build(init),
            conv3: conv(width, cout, 1, 1, init),
            bn3: BatchNorm2d::builder(cout).build(init),
            downsample,
        }
    }
}

impl Module for Bottleneck {
    fn forward(&self, x: &Tensor) -> Tensor {
        let out = self.bn1.forward(&self.conv1.forward(x)).relu();
        let out = self.bn2.forward(&self.conv2.forward(&out)).relu();
        let short = self.downsample.as_ref().map_or_else(|| x.clone(), |d| d.forward(x));
        self.bn3.forward(&self.conv3.forward(&out)).add(&short).relu()
    }
    fn describe(&self) -> String {
        let w = self.conv1.weight.shape();
        format!("Bottleneck({} -> {})", w[1], w[0] * 4)
    }
}

/// A ResNet: stem, stages of residual blocks, global average pooling, a linear head.
#[derive(Module)]
pub struct ResNet {
    #[module]
    conv1: Conv2d,
    #[module]
    bn1: BatchNorm2d,
    #[module]
    layer1: Sequential,
    #[module]
    layer2: Sequential,
    #[module]
    layer3: Sequential,
    /// Only the ImageNet shape has a fourth stage.
    #[module]
    layer4: Option<Sequential>,
    pool: AdaptiveAvgPool2d,
    /// The head as the CIFAR definition names it; exactly one of `linear`
    /// and `fc` is set.
    #[module]
    linear: Option<Linear>,
    /// The head as torchvision names it (the ImageNet shape).
    #[module]
    fc: Option<Linear>,
}

/// Stage `layer1`, `layer2`, ... of `stages`, which the constructors build in a loop.
fn take_stages(stages: Vec<Sequential>) -> (Sequential, Sequential, Sequential, Option<Sequential>) {
    let mut it = stages.into_iter();
    let mut next = || it.next().expect("ResNet: at least three stages");
    let (a, b, c) = (next(), next(), next());
    (a, b, c, it.next())
}

impl ResNet {
    /// CIFAR ResNet of depth `6n + 2` (20, 32, 44, 56, 110): 16/32/64 channels,
    /// names as the common PyTorch CIFAR definition (`conv1`, `bn1`,
    /// `layer1.0.conv1`, ..., `linear`).
    pub fn cifar(depth: usize, classes: usize, shortcut: Shortcut, init: &mut Init) -> Self {
        assert!(depth >= 8 && (depth - 2).is_multiple_of(6), "ResNet::cifar: depth must be 6n+2, got {depth}");
        let n = (depth - 2) / 6;
        let (stem_conv, stem_bn) = (conv(3, 16, 3, 1, init), BatchNorm2d::builder(16).build(init));
        let mut layers = Vec::new();
        let mut cin = 16;
        for (stage, &width) in [16, 32, 64].iter().enumerate() {
            let mut s = Sequential::new();
            for b in 0..n {
                let stride = if b == 0 && stage > 0 { 2 } else { 1 };
                s = s.add(BasicBlock::new(cin, width, stride, shortcut, "shortcut", init));
                cin = width;
            }
            layers.push(s);
        }
        let (layer1, layer2, layer3, layer4) = take_stages(layers);
        ResNet {
            conv1: stem_conv,
            bn1: stem_bn,
            layer1,
            layer2,
            layer3,
            layer4,
            pool: AdaptiveAvgPool2d((1, 1)),
            linear: Some(Linear::builder(64, classes).build(init)),
            fc: None,
        }
    }

    /// ImageNet-shape ResNet-18/34 (basic blocks) or 50 (bottlenecks) with torchvision's names.
    pub fn imagenet(depth: usize, classes: usize, init: &mut Init) -> Self {
        let blocks: [usize; 4] = match depth {
            18 => [2, 2, 2, 2],
            34 | 50 => [3, 4, 6, 3],
            _ => panic!("ResNet::imagenet: depth 18, 34 or 50, got {depth}"),
        };
        let stem_conv = Conv2d::builder(3, 64, 7).stride(2).padding(3).bias(false).build(init);
        let stem_bn = BatchNorm2d::builder(64).build(init);
        let mut layers = Vec::new();
        let mut cin = 64;
        for (stage, (&n, width)) in blocks.iter().zip([64, 128, 256, 512]).enumerate() {
            let mut s = Sequential::new();
            for b in 0..n {
                let stride = if b == 0 && stage > 0 { 2 } else { 1 };
                if depth == 50 {
                    s = s.add(Bottleneck::new(cin, width, stride, init));
                    cin = width * 4;
                } else {
                    s = s.add(BasicBlock::new(cin, width, stride, Shortcut::Projection, "downsample", init));
                    cin = width;
                }
            }
            layers.push(s);
        }
        let (layer1, layer2, layer3, layer4) = take_stages(layers);
        ResNet {
            conv1: stem_conv,
            bn1: stem_bn,
            layer1,
            layer2,
            layer3,
            layer4,
            pool: AdaptiveAvgPool2d((1, 1)),
            linear: None,
            fc: Some(Linear::builder(cin, classes).build(init)),
        }
    }

    fn imagenet_stem(&self) -> bool {
        self.fc.is_some()
    }

    fn stages(&self) -> impl Iterator<Item = &Sequential> {
        [&self.layer1, &self.layer2, &self.layer3].into_iter().chain(self.layer4.as_ref())
    }
}

impl Module for ResNet {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = self.bn1.forward(&self.conv1.forward(x)).relu();
        if self.imagenet_stem() {
            h = MaxPool2d { stride: (2, 2), padding: (1, 1), ..MaxPool2d::new(3) }.forward(&h);
        }
        for l in self.stages() {
            h = l.forward(&h);
        }
        let head = self.linear.as_ref().or(self.fc.as_ref()).expect("ResNet: a head");
        head.forward(&self.pool.forward(&h).flatten(1, -1))
    }
    fn describe(&self) -> String {
        format!("ResNet({} stages)", self.stages().count())
    }
}
