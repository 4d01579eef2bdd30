// Own binary: it sets WGRAD_SPECIALIZE for the process while devices open (other tests' devices would read it).
//! Specialised kernels (`gpu/specialize.rs`) compute what wgpu's own
//! application of the override constants computes, bit for bit: the same
//! ops on a device opened with `WGRAD_SPECIALIZE=0` and on one opened
//! without it. One test in its own binary, because it sets the variable.

use wgrad_gpu_core::ops::conv::{conv2d, conv2d_input_grad, conv2d_weight_grad, ConvGeometry, ConvOptions};
use wgrad_gpu_core::ops::epilogue::{BiasAxis, Epilogue};
use wgrad_gpu_core::ops::matmul::{matmul_epilogue, MatmulConfig, MatmulKernel};
use wgrad_gpu_core::ops::pool::{max_pool2d_backward, max_pool2d_relu_io, Operands, PoolWindow};
use wgrad_gpu_core::testing::{fresh_gpu_or_skip, Rng};
use wgrad_gpu_core::{Buffer, Device, Layout};

/// Every kernel variant below, on `dev`, as raw words.
fn run(dev: &Device) -> Vec<(String, Vec<u32>)> {
    let mut r = Rng::new(5);
    let up = |v: &[f32]| Buffer::from_f32(dev, v).unwrap();
    let mut out = Vec::new();
    let mut keep = |what: String, b: &Buffer| out.push((what, b.to_u32().unwrap()));
    let bias = up(&r.vec(70, -1.0, 1.0));
    let kernels = [MatmulKernel::Auto, MatmulKernel::Tiled];
    // Narrow and wide tiles, few and many rows, transposed B, bias on
    // either axis, ReLU, f16 stores (even N) and f32.
    for (m, k, n, transposed) in [(5, 9, 7, false), (33, 70, 66, true), (64, 17, 30, false)] {
        let a = up(&r.vec(m * k, -1.0, 1.0));
        let b = up(&r.vec(k * n, -1.0, 1.0));
        let lb = if transposed {
            Layout::contiguous(&[n, k]).permute(&[1, 0]).unwrap()
        } else {
            Layout::contiguous(&[k, n])
        };
        let epis = [
            Epilogue::default(),
            Epilogue::default().with_bias(&bias, BiasAxis::Columns, 1).with_relu(),
            Epilogue::f16().with_bias(&bias, BiasAxis::Rows, 1),
        ];
        for kernel in kernels {
            for (i, epi) in epis.iter().enumerate() {
                let cfg = MatmulConfig { kernel, ..MatmulConfig::default() };
                let Ok((c, _)) = matmul_epilogue(cfg, epi, &a, &Layout::contiguous(&[m, k]), &b, &lb) else {
                    continue; // a kernel this adapter cannot run
                };
                keep(format!("matmul {m}x{k}x{n} {kernel:?} epilogue {i}"), &c);
            }
        }
    }
    // The three convolution gathers, strided and padded.
    let mut geo = ConvGeometry::new(2, 3, (9, 8), (3, 3));
    (geo.stride_h, geo.pad_top, geo.pad_bottom, geo.pad_left, geo.pad_right) = (2, 1, 1, 1, 1);
    let x = up(&r.vec(2 * 3 * 9 * 8, -1.0, 1.0));
    let w = up(&r.vec(5 * 3 * 9, -1.0, 1.0));
    let epi = Epilogue::default().with_bias(&bias, BiasAxis::Rows, 1);
    let y = conv2d(&x, &w, 5, &geo, &ConvOptions::with_epilogue(MatmulConfig::default(), &epi)).unwrap();
    let gy = up(&r.vec(2 * 5 * geo.out_h() * geo.out_w(), -1.0, 1.0));
    keep("conv2d".into(), &y);
    keep("conv2d input gradient".into(), &conv2d_input_grad(&gy, &w, 5, &geo, &ConvOptions::default()).unwrap());
    keep("conv2d weight gradient".into(), &conv2d_weight_grad(&gy, &x, 5, &geo, &ConvOptions::default()).unwrap());
    // Pooling's window constants and the fused ReLU.
    let shape = [2, 3, 9, 8];
    let window = PoolWindow::new((3, 2)).stride((2, 2)).padding((1, 0));
    let (p, arg, out_shape) = max_pool2d_relu_io(&x, &shape, window, Operands::F32).unwrap();
    let g = up(&r.vec(out_shape.iter().product(), -1.0, 1.0));
    keep("relu max pool".into(), &p);
    keep("relu max pool backward".into(), &max_pool2d_backward(&g, &arg, &shape, window).unwrap());
    out
}

#[test]
fn specialised_kernels_compute_the_same_bits_as_wgpus_constants() {
    std::env::set_var("WGRAD_SPECIALIZE", "0");
    let Some(plain) = fresh_gpu_or_skip("specialised_kernels_compute_the_same_bits_as_wgpus_constants") else {
        return;
    };
    std::env::remove_var("WGRAD_SPECIALIZE");
    let special = Device::gpu().unwrap();
    let (want, got) = (run(&plain), run(&special));
    assert!(want.len() >= 20, "{} results", want.len());
    for ((what, w), (_, g)) in want.iter().zip(&got) {
        assert!(w.iter().any(|&v| v != 0), "{what}: a non-trivial result");
        assert_eq!(g, w, "{what}");
    }
}
