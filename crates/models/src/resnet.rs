//! Residual networks: the CIFAR family of He et al. 2016 (depth 6n+2) and the
//! ImageNet-shape ResNet-18/34/50 with torchvision's parameter names.

use wgrad_autograd::{Device, Generator, Tensor};
use wgrad_nn::module::join;
use wgrad_nn::{AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Conv2dOptions, Linear, MaxPool2d, Module, Sequential};

fn conv(cin: usize, cout: usize, k: usize, stride: usize, gen: &mut Generator, dev: &Device) -> Conv2d {
    Conv2d::new(cin, cout, k, Conv2dOptions::new().stride(stride).padding(k / 2), false, gen, dev)
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
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    /// Projection shortcut (`shortcut` in CIFAR code, `downsample` in torchvision).
    projection: Option<(String, Sequential)>,
    /// Channels to zero-pad on each side for option A.
    zero_pad: Option<usize>,
}

impl BasicBlock {
    /// A block from `cin` to `cout` channels; `name` is what the projection is
    /// called in PyTorch (`shortcut` or `downsample`).
    pub fn new(
        cin: usize,
        cout: usize,
        stride: usize,
        shortcut: Shortcut,
        name: &str,
        gen: &mut Generator,
        dev: &Device,
    ) -> Self {
        let needs = stride != 1 || cin != cout;
        let (projection, zero_pad) = match (needs, shortcut) {
            (false, _) => (None, None),
            (true, Shortcut::ZeroPad) => (None, Some((cout - cin) / 2)),
            (true, Shortcut::Projection) => {
                let s = Sequential::new().add(conv(cin, cout, 1, stride, gen, dev)).add(BatchNorm2d::new_2d(cout, dev));
                (Some((name.to_string(), s)), None)
            }
        };
        BasicBlock {
            conv1: conv(cin, cout, 3, stride, gen, dev),
            bn1: BatchNorm2d::new_2d(cout, dev),
            conv2: conv(cout, cout, 3, 1, gen, dev),
            bn2: BatchNorm2d::new_2d(cout, dev),
            projection,
            zero_pad,
        }
    }
}

impl Module for BasicBlock {
    fn forward(&self, x: &Tensor) -> Tensor {
        // BN+ReLU and BN+add+ReLU are one fused kernel each.
        let out = self.bn1.forward_relu(&self.conv1.forward(x));
        let out = self.conv2.forward(&out);
        let short = match (&self.projection, self.zero_pad) {
            (Some((_, p)), _) => p.forward(x),
            (None, Some(pad)) => {
                // x[:, :, ::2, ::2] with `pad` zero channels on each side, as the paper's option A.
                let sub = x.slice_step(2, 0, 2).slice_step(3, 0, 2);
                let mut zshape = sub.shape();
                zshape[1] = pad;
                let z = Tensor::zeros(&zshape, &x.device());
                Tensor::cat(&[&z, &sub, &z], 1)
            }
            (None, None) => x.clone(),
        };
        self.bn2.forward_add_relu(&out, &short)
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.conv1.visit_parameters(&join(prefix, "conv1"), f);
        self.bn1.visit_parameters(&join(prefix, "bn1"), f);
        self.conv2.visit_parameters(&join(prefix, "conv2"), f);
        self.bn2.visit_parameters(&join(prefix, "bn2"), f);
        if let Some((n, p)) = &self.projection {
            p.visit_parameters(&join(prefix, n), f);
        }
    }
    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.bn1.visit_buffers(&join(prefix, "bn1"), f);
        self.bn2.visit_buffers(&join(prefix, "bn2"), f);
        if let Some((n, p)) = &self.projection {
            p.visit_buffers(&join(prefix, n), f);
        }
    }
    fn set_training(&mut self, on: bool) {
        self.bn1.set_training(on);
        self.bn2.set_training(on);
        if let Some((_, p)) = &mut self.projection {
            p.set_training(on);
        }
    }
    fn describe(&self) -> String {
        let w = self.conv1.weight.shape();
        format!("BasicBlock({} -> {}, stride {:?})", w[1], w[0], self.conv1.options.stride)
    }
}

/// 1x1 reduce, 3x3, 1x1 expand (x4) with a residual connection (`Bottleneck`, torchvision v1.5: stride on the 3x3).
pub struct Bottleneck {
    convs: [Conv2d; 3],
    bns: [BatchNorm2d; 3],
    downsample: Option<Sequential>,
}

impl Bottleneck {
    /// A block from `cin` channels to `4 * width`.
    pub fn new(cin: usize, width: usize, stride: usize, gen: &mut Generator, dev: &Device) -> Self {
        let cout = width * 4;
        let downsample = (stride != 1 || cin != cout)
            .then(|| Sequential::new().add(conv(cin, cout, 1, stride, gen, dev)).add(BatchNorm2d::new_2d(cout, dev)));
        Bottleneck {
            convs: [
                conv(cin, width, 1, 1, gen, dev),
                conv(width, width, 3, stride, gen, dev),
                conv(width, cout, 1, 1, gen, dev),
            ],
            bns: [BatchNorm2d::new_2d(width, dev), BatchNorm2d::new_2d(width, dev), BatchNorm2d::new_2d(cout, dev)],
            downsample,
        }
    }
}

impl Module for Bottleneck {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut out = x.clone();
        for i in 0..2 {
            out = self.bns[i].forward_relu(&self.convs[i].forward(&out));
        }
        let short = self.downsample.as_ref().map_or_else(|| x.clone(), |d| d.forward(x));
        self.bns[2].forward_add_relu(&self.convs[2].forward(&out), &short)
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for i in 0..3 {
            self.convs[i].visit_parameters(&join(prefix, &format!("conv{}", i + 1)), f);
            self.bns[i].visit_parameters(&join(prefix, &format!("bn{}", i + 1)), f);
        }
        if let Some(d) = &self.downsample {
            d.visit_parameters(&join(prefix, "downsample"), f);
        }
    }
    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for i in 0..3 {
            self.bns[i].visit_buffers(&join(prefix, &format!("bn{}", i + 1)), f);
        }
        if let Some(d) = &self.downsample {
            d.visit_buffers(&join(prefix, "downsample"), f);
        }
    }
    fn set_training(&mut self, on: bool) {
        for b in &mut self.bns {
            b.set_training(on);
        }
        if let Some(d) = &mut self.downsample {
            d.set_training(on);
        }
    }
    fn describe(&self) -> String {
        let w = self.convs[0].weight.shape();
        format!("Bottleneck({} -> {})", w[1], w[0] * 4)
    }
}

/// A ResNet: stem, stages of residual blocks, global average pooling, a linear head.
pub struct ResNet {
    stem_conv: Conv2d,
    stem_bn: BatchNorm2d,
    /// Parameter names of the stem's convolution and batch norm.
    stem_names: [&'static str; 2],
    layers: Vec<Sequential>,
    pool: AdaptiveAvgPool2d,
    head: Linear,
    head_name: &'static str,
}

impl ResNet {
    /// CIFAR ResNet of depth `6n + 2` (20, 32, 44, 56, 110): 16/32/64 channels,
    /// names as the common PyTorch CIFAR definition (`conv1`, `bn1`,
    /// `layer1.0.conv1`, ..., `linear`).
    pub fn cifar(depth: usize, classes: usize, shortcut: Shortcut, gen: &mut Generator, dev: &Device) -> Self {
        assert!(depth >= 8 && (depth - 2).is_multiple_of(6), "ResNet::cifar: depth must be 6n+2, got {depth}");
        let n = (depth - 2) / 6;
        let (stem_conv, stem_bn) = (conv(3, 16, 3, 1, gen, dev), BatchNorm2d::new_2d(16, dev));
        let mut layers = Vec::new();
        let mut cin = 16;
        for (stage, &width) in [16, 32, 64].iter().enumerate() {
            let mut s = Sequential::new();
            for b in 0..n {
                let stride = if b == 0 && stage > 0 { 2 } else { 1 };
                s = s.add(BasicBlock::new(cin, width, stride, shortcut, "shortcut", gen, dev));
                cin = width;
            }
            layers.push(s);
        }
        ResNet {
            stem_conv,
            stem_bn,
            stem_names: ["conv1", "bn1"],
            layers,
            pool: AdaptiveAvgPool2d((1, 1)),
            head: Linear::new(64, classes, true, gen, dev),
            head_name: "linear",
        }
    }

    /// ImageNet-shape ResNet-18/34 (basic blocks) or 50 (bottlenecks) with torchvision's names.
    pub fn imagenet(depth: usize, classes: usize, gen: &mut Generator, dev: &Device) -> Self {
        let blocks: [usize; 4] = match depth {
            18 => [2, 2, 2, 2],
            34 | 50 => [3, 4, 6, 3],
            _ => panic!("ResNet::imagenet: depth 18, 34 or 50, got {depth}"),
        };
        let stem_conv = Conv2d::new(3, 64, 7, Conv2dOptions::new().stride(2).padding(3), false, gen, dev);
        let stem_bn = BatchNorm2d::new_2d(64, dev);
        let mut layers = Vec::new();
        let mut cin = 64;
        for (stage, (&n, width)) in blocks.iter().zip([64, 128, 256, 512]).enumerate() {
            let mut s = Sequential::new();
            for b in 0..n {
                let stride = if b == 0 && stage > 0 { 2 } else { 1 };
                if depth == 50 {
                    s = s.add(Bottleneck::new(cin, width, stride, gen, dev));
                    cin = width * 4;
                } else {
                    s = s.add(BasicBlock::new(cin, width, stride, Shortcut::Projection, "downsample", gen, dev));
                    cin = width;
                }
            }
            layers.push(s);
        }
        ResNet {
            stem_conv,
            stem_bn,
            stem_names: ["conv1", "bn1"],
            layers,
            pool: AdaptiveAvgPool2d((1, 1)),
            head: Linear::new(cin, classes, true, gen, dev),
            head_name: "fc",
        }
    }

    fn imagenet_stem(&self) -> bool {
        self.head_name == "fc"
    }
}

impl Module for ResNet {
    fn forward(&self, x: &Tensor) -> Tensor {
        // The stem's ReLU is fused into its batch norm.
        let mut h = self.stem_bn.forward_relu(&self.stem_conv.forward(x));
        if self.imagenet_stem() {
            h = MaxPool2d { kernel: (3, 3), stride: (2, 2), padding: (1, 1), dilation: (1, 1) }.forward(&h);
        }
        for l in &self.layers {
            h = l.forward(&h);
        }
        self.head.forward(&self.pool.forward(&h).flatten(1, -1))
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.stem_conv.visit_parameters(&join(prefix, self.stem_names[0]), f);
        self.stem_bn.visit_parameters(&join(prefix, self.stem_names[1]), f);
        for (i, l) in self.layers.iter().enumerate() {
            l.visit_parameters(&join(prefix, &format!("layer{}", i + 1)), f);
        }
        self.head.visit_parameters(&join(prefix, self.head_name), f);
    }
    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.stem_bn.visit_buffers(&join(prefix, self.stem_names[1]), f);
        for (i, l) in self.layers.iter().enumerate() {
            l.visit_buffers(&join(prefix, &format!("layer{}", i + 1)), f);
        }
    }
    fn set_training(&mut self, on: bool) {
        self.stem_conv.set_training(on);
        self.stem_bn.set_training(on);
        for l in &mut self.layers {
            l.set_training(on);
        }
    }
    fn describe(&self) -> String {
        format!("ResNet({} stages)", self.layers.len())
    }
}
