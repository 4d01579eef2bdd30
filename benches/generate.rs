//! GPT generation: tokens/s with the key/value cache (`Gpt::generate`)
//! against recomputing the window every step (`Gpt::generate_uncached`),
//! on the adapter `WGRAD_DEVICE` picks and on the CPU backend, next to
//! PyTorch CPU recomputing the same model in the same run
//! (`benches/generate_pytorch.py`; PyTorch's `nn.TransformerEncoder` has no
//! cache). Greedy decoding of NEW tokens after a 16-token prompt, within
//! the context so the cache never slides.
//!
//! `cargo bench --bench generate [-- NEW]` (default 128).

use std::time::Instant;

mod common;

use wgrad::models::{Gpt, Sampler, Sampling};
use wgrad::prelude::*;

const CONFIG: (usize, usize, usize, usize, usize) = (65, 256, 4, 4, 128); // vocab, context, layers, heads, width

fn tokens_per_s(dev: &Device, new: usize, cached: bool) -> f64 {
    let (vocab, context, layers, heads, width) = CONFIG;
    let mut model = Gpt::builder(vocab, context).layers(layers).heads(heads).width(width).build(&mut Init::new(dev, 0));
    model.eval();
    let prompt: Vec<u32> = (0..16).map(|i| (i * 7) % vocab as u32).collect();
    let run = |n: usize| {
        let mut s = Sampler::new(Sampling::greedy(), 0);
        if cached {
            model.generate(&prompt, n, &mut s, dev)
        } else {
            model.generate_uncached(&prompt, n, &mut s, dev)
        }
    };
    run(4); // pipelines and pools warm
    let t0 = Instant::now();
    let out = run(new);
    assert_eq!(out.len(), prompt.len() + new);
    new as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let new: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(128);
    let (vocab, context, layers, heads, width) = CONFIG;
    println!("GPT vocab {vocab}, context {context}, {layers} layers, {heads} heads, width {width}; {new} new tokens");
    let torch = common::pytorch("generate_pytorch.py", &[new.to_string()]);
    if let Err(why) = &torch {
        println!("pytorch: {why}");
    }
    let torch_tps = common::lookup(&torch, "recompute").map(|ms| 1000.0 / ms);
    let adapter = Device::from_env().expect("device");
    let mut devices = vec![adapter.clone()];
    if adapter.is_gpu() {
        devices.push(Device::cpu());
    }
    println!(
        "{:<10} {:>16} {:>16} {:>9} {:>22}",
        "device", "cached tok/s", "recompute tok/s", "speedup", "cached vs torch recomp"
    );
    for dev in devices {
        let (c, r) = (tokens_per_s(&dev, new, true), tokens_per_s(&dev, new, false));
        let vs = common::ratio(c, torch_tps);
        println!("{:<10} {c:>16.1} {r:>16.1} {:>8.2}x {vs:>22}", dev.name(), c / r);
    }
    println!("pytorch recompute tok/s: {}", common::show(torch_tps));
}
