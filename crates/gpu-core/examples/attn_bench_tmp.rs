use std::time::Instant;
use wgrad_gpu_core::ops::attention::{attention_backward, attention_forward, AttnDims};
use wgrad_gpu_core::testing::Rng;
use wgrad_gpu_core::{Buffer, Device};

fn main() {
    let g = Device::gpu().unwrap();
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (b, h, l, d) = (args[0], args[1], args[2], args[3]);
    let causal = args[4] == 1;
    let dims = AttnDims { batch: b, heads: h, lq: l, lk: l, d, dv: d };
    let mut r = Rng::new(1);
    let n = b * h * l * d;
    let q = Buffer::from_f32(&g, &r.vec(n, -1.0, 1.0)).unwrap();
    let k = Buffer::from_f32(&g, &r.vec(n, -1.0, 1.0)).unwrap();
    let v = Buffer::from_f32(&g, &r.vec(n, -1.0, 1.0)).unwrap();
    let go = Buffer::from_f32(&g, &r.vec(n, -1.0, 1.0)).unwrap();
    let scale = 1.0 / (d as f32).sqrt();
    let iters = args.get(5).copied().unwrap_or(4);
    let mode = args.get(6).copied().unwrap_or(2);
    for it in 0..iters {
        let t = Instant::now();
        let (o, lse) = attention_forward(&q, &k, &v, None, dims, causal, scale).unwrap();
        g.synchronize().unwrap();
        let tf = t.elapsed();
        let t = Instant::now();
        if mode == 0 { println!("iter {it}: forward {:.1} ms", tf.as_secs_f64() * 1e3); continue; }
        let (dq, _dk, _dv) = attention_backward(&q, &k, &v, &o, &lse, &go, None, dims, causal, scale).unwrap();
        g.synchronize().unwrap();
        let tb = t.elapsed();
        let _ = dq;
        println!("iter {it}: forward {:.1} ms, backward {:.1} ms", tf.as_secs_f64() * 1e3, tb.as_secs_f64() * 1e3);
    }
}
