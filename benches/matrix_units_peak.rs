//! The ceiling of WGSL cooperative matrices on this adapter: subgroups that
//! multiply-add 16 x 16 x 16 fragments already in registers, with no memory
//! traffic in the loop, so the figure is what the matrix units give a WGSL
//! kernel at best (`shaders/matmul_coop.wgsl` cannot beat it). Printed for
//! f32 and f16 accumulators, with 1 (a dependent chain: latency) and 8
//! independent accumulators per subgroup (throughput); then, f32
//! accumulators, with the A and B fragments loaded again in every round
//! (4 or 8 products per two loads) from storage, from workgroup memory,
//! or walking a 2048-wide matrix as a product's tile does.
//!
//! `cargo bench --bench matrix_units_peak` on an adapter with the
//! cooperative-matrix feature (`WGRAD_DEVICE` picks it as elsewhere);
//! elsewhere it only checks that naga accepts the kernel, and says there is
//! nothing to measure.

use std::time::Instant;

use wgrad_gpu_core::Device;

/// The kernel: `ACC` accumulators of type `T`, `ITERS` rounds of
/// multiply-adds, each accumulator stored at the end (so none is dead).
const SHADER: &str = r#"
enable f16;
enable wgpu_cooperative_matrix;

@group(0) @binding(0) var<storage, read> src: array<f16>;
@group(0) @binding(1) var<storage, read_write> dst: array<T>;
@group(0) @binding(2) var<storage, read> big: array<f16>;

override ITERS: u32 = 256u;
override ACC: u32 = 8u;
// Where the fragments come from in each round: 0 nowhere (loaded once),
// 1 storage (the same 2 KiB for every subgroup), 2 workgroup memory,
// 3 storage as a product reads it: each workgroup walks its own 16 rows
// of a 2048-wide A and 16 columns of B, 16 deep per round.
override LOADS: u32 = 0u;

var<workgroup> ws: array<f16, 1024>;

@compute @workgroup_size(128)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(local_invocation_index) lid: u32,
) {
    for (var i = lid; i < 1024u; i += 128u) {
        ws[i] = src[i];
    }
    workgroupBarrier();
    // From `big` so that every variant binds all three buffers.
    var a = coopLoad<coop_mat16x16<f16, A>>(&big[0], 16u);
    var b = coopLoad<coop_mat16x16<f16, B>>(&src[256], 16u);
    var c0 = coop_mat16x16<T, C>();
    var c1 = coop_mat16x16<T, C>();
    var c2 = coop_mat16x16<T, C>();
    var c3 = coop_mat16x16<T, C>();
    var c4 = coop_mat16x16<T, C>();
    var c5 = coop_mat16x16<T, C>();
    var c6 = coop_mat16x16<T, C>();
    var c7 = coop_mat16x16<T, C>();
    for (var i = 0u; i < ITERS; i++) {
        // Alternate halves so the loads are not loop-invariant.
        let at = (i & 1u) * 512u;
        if LOADS == 1u {
            a = coopLoad<coop_mat16x16<f16, A>>(&src[at], 16u);
            b = coopLoad<coop_mat16x16<f16, B>>(&src[at + 256u], 16u);
        } else if LOADS == 2u {
            a = coopLoad<coop_mat16x16<f16, A>>(&ws[at], 16u);
            b = coopLoad<coop_mat16x16<f16, B>>(&ws[at + 256u], 16u);
        } else if LOADS == 3u {
            let k = (i * 16u) % 2048u;
            let row = (wid.x % 128u) * 16u;
            a = coopLoadT<coop_mat16x16<f16, A>>(&big[row * 2048u + k], 2048u);
            b = coopLoadT<coop_mat16x16<f16, B>>(&big[k * 2048u + ((wid.x / 128u) * 64u + sg * 16u) % 2048u], 2048u);
        }
        c0 = coopMultiplyAdd(a, b, c0);
        if ACC >= 4u {
            c1 = coopMultiplyAdd(a, b, c1);
            c2 = coopMultiplyAdd(a, b, c2);
            c3 = coopMultiplyAdd(a, b, c3);
        }
        if ACC == 8u {
            c4 = coopMultiplyAdd(a, b, c4);
            c5 = coopMultiplyAdd(a, b, c5);
            c6 = coopMultiplyAdd(a, b, c6);
            c7 = coopMultiplyAdd(a, b, c7);
        }
    }
    let at = (wid.x * 4u + sg) * 2048u;
    coopStore(c0, &dst[at], 16u);
    coopStore(c1, &dst[at + 256u], 16u);
    coopStore(c2, &dst[at + 512u], 16u);
    coopStore(c3, &dst[at + 768u], 16u);
    coopStore(c4, &dst[at + 1024u], 16u);
    coopStore(c5, &dst[at + 1280u], 16u);
    coopStore(c6, &dst[at + 1536u], 16u);
    coopStore(c7, &dst[at + 1792u], 16u);
}
"#;

/// Workgroups of four 32-lane subgroups in one launch.
const WORKGROUPS: u32 = 132 * 8;

/// The kernel with accumulators of `ty` (`f32` or `f16`), checked by naga.
fn source(ty: &str) -> String {
    use wgpu::naga::valid::{Capabilities, ValidationFlags, Validator};
    let source = SHADER.replace("array<T>", &format!("array<{ty}>")).replace("<T, C>", &format!("<{ty}, C>"));
    let module = wgpu::naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{ty}: {e}"));
    Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{ty}: {e:?}"));
    source
}

fn main() {
    let sources = [("f32", 4u64, source("f32")), ("f16", 2, source("f16"))];
    let dev = Device::from_env().expect("open WGRAD_DEVICE");
    let info = dev.info();
    let Some(adapter) =
        wgrad_gpu_core::select::enumerate_adapters().into_iter().find(|a| a.get_info().name == info.name)
    else {
        println!("{}: adapter not found again", info.name);
        return;
    };
    if !adapter.features().contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        println!("{}: no cooperative matrices, nothing to measure", info.name);
        return;
    }
    drop(dev);
    let features =
        wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("peak"),
        required_features: features,
        required_limits: adapter.limits(),
        // SAFETY: the one experimental feature requested is cooperative
        // matrices, used by this bench's own kernel only.
        experimental_features: unsafe { wgpu::ExperimentalFeatures::enabled() },
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }))
    .expect("device with cooperative matrices");
    println!("adapter: {} ({:?})", info.name, adapter.get_info().driver_info);
    let src = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 2048,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&src, 0, bytemuck_halves(1024).as_slice());
    // A 2048 x 2048 f16 matrix, read as both A and B by LOADS = 3.
    let big = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 2048 * 2048 * 2,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&big, 0, bytemuck_halves(2048 * 2048).as_slice());
    println!("{:<14} {:>6} {:>9} {:>12} {:>10}", "accumulator", "chains", "loads", "TFLOP/s", "ms");
    for (ty, bytes, source) in sources {
        let dst = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: WORKGROUPS as u64 * 4 * 2048 * bytes,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let desc =
            wgpu::ShaderModuleDescriptor { label: Some("peak"), source: wgpu::ShaderSource::Wgsl(source.into()) };
        let checks = wgpu::ShaderRuntimeChecks { force_loop_bounding: false, ..wgpu::ShaderRuntimeChecks::checked() };
        // SAFETY: as gpu-core's kernels: the loop ends, bounds checks stay.
        let module = unsafe { device.create_shader_module_trusted(desc, checks) };
        let runs: &[(u32, u32)] = if ty == "f32" {
            &[(1, 0), (4, 0), (8, 0), (8, 1), (8, 2), (4, 2), (8, 3), (4, 3)]
        } else {
            &[(1, 0), (8, 0)]
        };
        for &(acc, loads) in runs {
            let iters = if acc == 1 { 1024 } else { 512 };
            let constants = [("ITERS", iters as f64), ("ACC", acc as f64), ("LOADS", loads as f64)];
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("peak"),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
            let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: src.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 1, resource: dst.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 2, resource: big.as_entire_binding() },
                ],
            });
            let run = || {
                let mut enc = device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&pipeline);
                    pass.set_bind_group(0, &group, &[]);
                    pass.dispatch_workgroups(WORKGROUPS, 1, 1);
                }
                let t = Instant::now();
                queue.submit([enc.finish()]);
                device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
                t.elapsed().as_secs_f64()
            };
            run();
            let best = (0..3).map(|_| run()).fold(f64::INFINITY, f64::min);
            let flop = WORKGROUPS as f64 * 4.0 * iters as f64 * acc as f64 * 2.0 * 16f64.powi(3);
            let from = ["registers", "storage", "workgroup", "product"][loads as usize];
            println!("{ty:<14} {acc:>6} {from:>9} {:>12.1} {:>10.2}", flop / best / 1e12, best * 1e3);
        }
    }
}

/// `n` f16 values near 1/16 as bytes, so that sums stay finite in f16.
fn bytemuck_halves(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| half::f16::from_f32(0.0625 + (i % 7) as f32 * 1e-3).to_le_bytes()).collect()
}
