use std::time::Instant;
use wgrad_autograd::{Device, Tensor};
use wgrad_gpu_core::testing::Rng;

fn main() {
    let dev = Device::gpu().unwrap();
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (b, h, l, d, causal, iters) = (args[0], args[1], args[2], args[3], args[4] == 1, args[5]);
    let mut r = Rng::new(1);
    let mk = |r: &mut Rng| Tensor::from_vec(&r.vec(b * h * l * d, -1.0, 1.0), &[b, h, l, d], &dev).requires_grad_();
    let (q, k, v) = (mk(&mut r), mk(&mut r), mk(&mut r));
    let go = Tensor::from_vec(&r.vec(b * h * l * d, -1.0, 1.0), &[b, h, l, d], &dev);
    let cm: Vec<f32> = (0..l * l).map(|e| if e % l > e / l { f32::NEG_INFINITY } else { 0.0 }).collect();
    let cmask = Tensor::from_vec(&cm, &[l, l], &dev);
    let scale = 1.0 / (d as f32).sqrt();
    for which in ["fused", "composite", "fused", "composite"] {
        let mut best = (f64::MAX, f64::MAX);
        for _ in 0..iters {
            for t in [&q, &k, &v] {
                t.zero_grad();
            }
            let t0 = Instant::now();
            let out = if which == "fused" {
                q.scaled_dot_product_attention(&k, &v, None, causal, None)
            } else {
                let s = q.matmul(&k.transpose(-1, -2)).mul_scalar(scale);
                let s = if causal { &s + &cmask } else { s };
                s.softmax(-1).matmul(&v)
            };
            dev.synchronize().unwrap();
            let tf = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            out.backward_with(&go);
            dev.synchronize().unwrap();
            let tb = t1.elapsed().as_secs_f64();
            best = (best.0.min(tf), best.1.min(tb));
        }
        println!("{which:>9}: forward {:.1} ms, backward {:.1} ms, total {:.1} ms", best.0 * 1e3, best.1 * 1e3, (best.0 + best.1) * 1e3);
    }
}
