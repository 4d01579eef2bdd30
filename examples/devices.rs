//! Lists the compute adapters wgpu sees, their limits and optional features,
//! and which device `WGRAD_DEVICE` selects; then runs one kernel on it.
//!
//! Usage: `cargo run --release --example devices [-- --help]`

use anyhow::{Context, Result};
use clap::Parser;
use wgrad::prelude::*;

/// List the compute adapters wgpu sees and check that wgrad can run a kernel on the chosen device.
#[derive(Parser, Debug)]
#[command(after_help = DeviceSpec::HELP)]
pub(crate) struct Args {}

fn main() -> Result<()> {
    run(Args::parse())
}

/// The whole run (also driven end to end by `tests/examples.rs`).
pub(crate) fn run(_args: Args) -> Result<()> {
    let adapters = wgrad::gpu_core::list_adapters();
    if adapters.is_empty() {
        println!("No wgpu adapter found (Vulkan/Metal/DX12). On Linux: apt-get install mesa-vulkan-drivers");
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("[{i}] {}  ({}, {}, driver: {})", a.name, a.backend, a.device_type, a.driver);
        for (name, v) in &a.limits {
            println!("      {name:<40} {v}");
        }
        let feats: Vec<String> =
            a.features.iter().map(|(n, on)| format!("{n}: {}", if *on { "yes" } else { "no" })).collect();
        println!("      features: {}", feats.join(", "));
        println!("      matrix units: {}", a.matrix_units);
    }

    let spec = DeviceSpec::from_env()?;
    let device = Device::from_spec(&spec).context("opening the device WGRAD_DEVICE asks for")?;
    println!("\nWGRAD_DEVICE={spec:?} selects: {} ({})", device.name(), device.reason());
    println!(
        "CPU backend vector level: {} (host: {}; WGRAD_CPU_SIMD caps it)",
        wgrad::gpu_core::simd_level().name(),
        wgrad::gpu_core::host_simd_level().name()
    );

    // One kernel end to end: upload, record, submit, read back.
    let x = Buffer::from_f32(&device, &[1.0, 2.0, 3.0])?;
    let l = Layout::contiguous(&[3]);
    let (y, _) = ops::binary::binary(ops::binary::BinaryOp::Mul, &x, &l, &x, &l)?;
    let got = y.to_f32()?;
    anyhow::ensure!(got == [1.0, 4.0, 9.0], "kernel check failed: {got:?}");
    let s = device.stats();
    println!(
        "kernel check: [1,2,3]^2 = {got:?} ok ({} submission, {} dispatch, {} readback)",
        s.submissions, s.dispatches, s.readbacks
    );
    Ok(())
}
