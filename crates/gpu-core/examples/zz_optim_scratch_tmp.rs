use std::time::Instant;
use wgrad_gpu_core::ops::optim::{update, Rule};
use wgrad_gpu_core::{Buffer, Device};
fn main() {
    let dev = Device::gpu().unwrap();
    let n = 1_000_000;
    let mk = || Buffer::from_f32(&dev, &vec![0.5f32; n]).unwrap();
    let ps: Vec<Buffer> = (0..10).map(|_| mk()).collect();
    let gs: Vec<Buffer> = (0..10).map(|_| mk()).collect();
    let ms: Vec<Buffer> = (0..10).map(|_| mk()).collect();
    let vs: Vec<Buffer> = (0..10).map(|_| mk()).collect();
    let rules = [
        ("sgd", Rule::Sgd { momentum: 0.0, dampening: 0.0, nesterov: false }),
        ("adamw", Rule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, amsgrad: false, decoupled: true }),
    ];
    for (name, rule) in rules {
        for rep in 0..4 {
            let t = Instant::now();
            for i in 0..10 {
                let st: Vec<&Buffer> = if name == "sgd" { vec![] } else { vec![&ms[i], &vs[i]] };
                update(&rule, 1e-3, 0.01, rep + 1, &ps[i], &gs[i], &st, n).unwrap();
            }
            dev.synchronize().unwrap();
            println!("{name} {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
        }
    }
}
