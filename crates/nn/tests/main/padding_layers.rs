//! The padding and pixel-shuffle layers: each one's output is its
//! functional op's (the same values), its constructors fill the padding as
//! PyTorch's `padding` argument does, and `describe` is PyTorch's repr.

use wgrad_autograd::{Device, PadMode, Tensor};
use wgrad_nn::*;

#[test]
fn layers_are_their_functional_ops_with_pytorch_reprs() {
    let dev = Device::cpu();
    let x = Tensor::randn(&[2, 4, 5, 6], 3, &dev);
    let sides = (1, 2, 3, 0);
    let cases: Vec<(Box<dyn Module>, Tensor, &str)> = vec![
        (Box::new(ZeroPad2d::new(2)), x.pad(&[2; 4], PadMode::Constant(0.0)), "ZeroPad2d((2, 2, 2, 2))"),
        (Box::new(ZeroPad2d::sides(sides)), x.pad(&[1, 2, 3, 0], PadMode::Constant(0.0)), "ZeroPad2d((1, 2, 3, 0))"),
        (
            Box::new(ConstantPad2d::new(1, 3.5)),
            x.pad(&[1; 4], PadMode::Constant(3.5)),
            "ConstantPad2d(padding=(1, 1, 1, 1), value=3.5)",
        ),
        (
            Box::new(ConstantPad2d::sides(sides, -1.0)),
            x.pad(&[1, 2, 3, 0], PadMode::Constant(-1.0)),
            "ConstantPad2d(padding=(1, 2, 3, 0), value=-1.0)",
        ),
        (Box::new(ReflectionPad2d::new(3)), x.pad(&[3; 4], PadMode::Reflect), "ReflectionPad2d((3, 3, 3, 3))"),
        (
            Box::new(ReflectionPad2d::sides(sides)),
            x.pad(&[1, 2, 3, 0], PadMode::Reflect),
            "ReflectionPad2d((1, 2, 3, 0))",
        ),
        (Box::new(ReplicationPad2d::new(4)), x.pad(&[4; 4], PadMode::Replicate), "ReplicationPad2d((4, 4, 4, 4))"),
        (
            Box::new(ReplicationPad2d::sides(sides)),
            x.pad(&[1, 2, 3, 0], PadMode::Replicate),
            "ReplicationPad2d((1, 2, 3, 0))",
        ),
        (Box::new(PixelShuffle(2)), x.pixel_shuffle(2), "PixelShuffle(upscale_factor=2)"),
        (Box::new(PixelUnshuffle(1)), x.pixel_unshuffle(1), "PixelUnshuffle(downscale_factor=1)"),
    ];
    for (layer, want, repr) in cases {
        let y = layer.forward(&x);
        assert_eq!(layer.describe(), repr);
        assert_eq!(y.shape(), want.shape(), "{repr}: shape");
        assert_eq!(y.to_vec(), want.to_vec(), "{repr}: values");
        assert_eq!(layer.num_parameters(), 0, "{repr}: parameters");
    }
    // The sides are (left, right, top, bottom): width grows by 3, height by 3.
    assert_eq!(ZeroPad2d::sides(sides).forward(&x).shape(), [2, 4, 8, 9]);
    let y = PixelUnshuffle(3).forward(&Tensor::zeros(&[2, 6, 9], &dev));
    assert_eq!(
        (y.shape().to_vec(), PixelUnshuffle(3).describe()),
        (vec![18, 2, 3], "PixelUnshuffle(downscale_factor=3)".into())
    );
}
