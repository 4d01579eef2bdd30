//! The matmul kernels' epilogue (`store4` in shaders/matmul.wgsl): a bias
//! per row or per column added to the f32 sums and/or the result stored as
//! f16, rounded once. Every GPU kernel family and f16 load against the CPU
//! twin on awkward shapes (tiles not filled, odd N's fallback, broadcast
//! batches with grouped biases, transposed operands, the three implicit-GEMM
//! convolution forms); on each backend the fused f16 store bit-equal to the
//! f32 store rounded by `f32_to_f16`; f16's limits (overflow to inf,
//! subnormals); and the launches it saves.

use crate::common;
use common::*;
use half::f16;
use wgrad_gpu_core::ops::cast::f32_to_f16;
use wgrad_gpu_core::ops::conv::{conv2d, conv2d_input_grad, conv2d_weight_grad, ConvGeometry, ConvOptions};
use wgrad_gpu_core::ops::matmul::{
    matmul_activation, matmul_epilogue, BiasAxis, Epilogue, HalfLoads, MatmulConfig, MatmulKernel, Operands,
};
use wgrad_gpu_core::ops::unary::UnaryOp;
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip, matrix_unit_kernels};
use wgrad_gpu_core::{Buffer, Device, Layout};

/// Every (kernel family, operand storage, f16 load) `dev` runs; the CPU
/// backends run the twin whatever the choice.
fn configs(dev: &Device) -> Vec<MatmulConfig> {
    if !dev.is_gpu() {
        return vec![MatmulConfig::default(), MatmulConfig::f16()];
    }
    let mut out = Vec::new();
    for kernel in [MatmulKernel::Tiled, MatmulKernel::Subgroup].into_iter().filter(|k| k.runs_on(dev)) {
        out.push(MatmulConfig { kernel, ..MatmulConfig::default() });
        for half_loads in [HalfLoads::Packed, HalfLoads::Native] {
            if half_loads == HalfLoads::Native && !dev.has_shader_f16() {
                continue;
            }
            out.push(MatmulConfig { kernel, operands: Operands::F16, half_loads, ..MatmulConfig::default() });
        }
    }
    if dev.name().contains("llvmpipe") {
        assert_eq!(out.len(), 6, "lavapipe runs both families, f32 and both f16 loads");
    }
    out.extend(matrix_unit_kernels(dev).into_iter().map(|kernel| MatmulConfig { kernel, ..MatmulConfig::f16() }));
    out
}

/// `v` in the operands' storage on `dev` (f16: rounded first by the caller).
fn upload(dev: &Device, v: &[f32], storage: Operands) -> Buffer {
    match storage {
        Operands::F32 => Buffer::from_f32(dev, v).unwrap(),
        Operands::F16 => Buffer::from_f16(dev, &v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>()).unwrap(),
    }
}

/// The first `n` elements of a result in `storage`, as f16 bits widened (f16) or f32.
fn read(z: &Buffer, n: usize, storage: Operands) -> Vec<f32> {
    match storage {
        Operands::F32 => z.to_f32().unwrap()[..n].to_vec(),
        Operands::F16 => widen(&z.to_f16().unwrap()[..n]),
    }
}

/// The epilogue of one case: a bias (axis, groups) or none, and the output.
#[derive(Clone, Copy, Debug)]
struct Case {
    bias: Option<(BiasAxis, usize)>,
    output: Operands,
    relu: bool,
    scale: Option<f32>,
}

impl Case {
    fn all(groups: usize) -> Vec<Case> {
        let mut v = Vec::new();
        for output in [Operands::F32, Operands::F16] {
            for bias in [None, Some((BiasAxis::Rows, groups)), Some((BiasAxis::Columns, 1))] {
                v.push(Case { bias, output, relu: false, scale: None });
            }
        }
        v
    }

    fn epilogue<'a>(&self, bias: &'a Buffer) -> Epilogue<'a> {
        let epi = Epilogue { output: self.output, relu: self.relu, scale: self.scale, ..Epilogue::default() };
        match self.bias {
            Some((axis, groups)) => epi.with_bias(bias, axis, groups),
            None => epi,
        }
    }
}

/// A product's operands as host data and views.
struct Problem {
    a: Vec<f32>,
    la: Layout,
    b: Vec<f32>,
    lb: Layout,
    /// Enough values for either bias axis.
    bias: Vec<f32>,
}

impl Problem {
    /// `a @ b` through `case` on `dev`; the result widened, and its element count.
    fn run(&self, dev: &Device, cfg: MatmulConfig, case: Case) -> Vec<f32> {
        let (ab, bb) = (upload(dev, &self.a, cfg.operands), upload(dev, &self.b, cfg.operands));
        let bias = Buffer::from_f32(dev, &self.bias).unwrap();
        let (z, shape) = matmul_epilogue(cfg, &case.epilogue(&bias), &ab, &self.la, &bb, &self.lb).unwrap();
        read(&z, shape.iter().product(), case.output)
    }

    /// The same product stored as f32 (bias included), then rounded by the cast kernel.
    fn run_then_round(&self, dev: &Device, cfg: MatmulConfig, case: Case) -> Vec<f32> {
        let (ab, bb) = (upload(dev, &self.a, cfg.operands), upload(dev, &self.b, cfg.operands));
        let bias = Buffer::from_f32(dev, &self.bias).unwrap();
        let f32_case = Case { output: Operands::F32, ..case };
        let (z, shape) = matmul_epilogue(cfg, &f32_case.epilogue(&bias), &ab, &self.la, &bb, &self.lb).unwrap();
        let n = shape.iter().product();
        widen(&f32_to_f16(&z, n).unwrap().to_f16().unwrap()[..n])
    }
}

/// Seeded operands in [-2, 2) (f16-exact, so both storages hold the same
/// values) viewed through `la`/`lb` over buffers of `span_a`/`span_b` elements.
fn problem(r: &mut Rng, (la, span_a): (Layout, usize), (lb, span_b): (Layout, usize), bias: usize) -> Problem {
    let exact =
        |r: &mut Rng, n: usize| -> Vec<f32> { (0..n).map(|_| f16::from_f32(r.uniform(-2.0, 2.0)).to_f32()).collect() };
    let (a, b, bias) = (exact(r, span_a), exact(r, span_b), exact(r, bias));
    Problem { a, la, b, lb, bias }
}

use wgrad_gpu_core::testing::Rng;

/// f16 results within one ulp (the f32 sums of two backends may differ in
/// their last bit, which can move the rounding by one); any NaN matches NaN.
#[track_caller]
fn within_an_ulp(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = ulps(f16::from_f32(g), f16::from_f32(w));
        assert!(d.is_some_and(|d| d <= 1), "{what}: element {i}: got {g}, want {w}");
    }
}

/// `got` against the twin's `want`: close for f32 results, within an ulp for f16.
#[track_caller]
fn matches(output: Operands, what: &str, got: &[f32], want: &[f32], (rtol, atol): (f32, f32)) {
    match output {
        Operands::F32 => assert_close(what, got, want, rtol, atol),
        Operands::F16 => within_an_ulp(what, got, want),
    }
}

/// `case` on every kernel family and f16 load of `g` against the twin's `twin`.
#[track_caller]
fn every_config_matches(g: &Device, p: &Problem, case: Case, twin: &[f32], name: &str) {
    for cfg in configs(g) {
        let what = format!("{name} {case:?} {cfg:?}");
        matches(case.output, &what, &p.run(g, cfg, case), twin, (1e-5, 1e-4));
    }
}

/// A product split along K past a 4 KiB binding limit (`[3, 2000] @ [2000, 5]`).
fn split_k_problem(r: &mut Rng) -> Problem {
    problem(r, (Layout::contiguous(&[3, 2000]), 6000), (Layout::contiguous(&[2000, 5]), 10_000), 8)
}

/// The shapes: (a layout and its span, b layout and its span, bias values
/// needed, bias groups). Tiles not filled (M, K, N off 64/16/128), an odd N
/// (the f16 fallback), broadcast batches with a bias per group of batch
/// entries, transposed and sliced operands.
/// A shape case: A (view, span), B (view, span), bias values, bias groups, name.
type Shape = ((Layout, usize), (Layout, usize), usize, usize, &'static str);

fn shapes() -> Vec<Shape> {
    let c = |s: &[usize]| (Layout::contiguous(s), s.iter().product::<usize>());
    let t = |s: &[usize]| {
        // Stored with the last two dims swapped, viewed back transposed.
        let mut stored = s.to_vec();
        let r = s.len();
        stored.swap(r - 1, r - 2);
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 1, r - 2);
        (Layout::contiguous(&stored).permute(&perm).unwrap(), s.iter().product::<usize>())
    };
    vec![
        (c(&[1, 1]), c(&[1, 2]), 2, 1, "1x1x2"),
        (c(&[7, 33]), c(&[33, 6]), 7, 1, "7x33x6"),
        (c(&[33, 70]), c(&[70, 66]), 66, 1, "33x70x66"),
        (c(&[65, 17]), c(&[17, 130]), 130, 1, "65x17x130"),
        (c(&[5, 9]), c(&[9, 7]), 7, 1, "odd N 5x9x7"),
        (c(&[3, 1, 9, 20]), c(&[4, 20, 10]), 4 * 10, 4, "broadcast [3,1] x [4]"),
        (t(&[2, 17, 35]), t(&[2, 35, 18]), 2 * 18, 2, "both transposed"),
        (t(&[40, 19]), c(&[19, 3]), 40, 1, "A transposed, odd N"),
    ]
}

#[test]
fn epilogue_matches_the_twin_on_awkward_shapes() {
    let Some((g, c)) = devices("epilogue_matches_the_twin_on_awkward_shapes") else { return };
    let fast = Device::cpu();
    let mut r = rng(131);
    for (i, (la, lb, nbias, groups, name)) in shapes().into_iter().enumerate() {
        let p = problem(&mut r, la, lb, nbias.max(64 * groups));
        // Two of the six epilogues per shape, all six over the shapes (every
        // one costs lavapipe a pipeline per kernel variant).
        // Case::all's order: f32 output (none, rows, columns), then f16.
        const PICK: [(usize, usize); 8] = [(0, 3), (1, 5), (2, 4), (3, 1), (5, 4), (1, 4), (4, 2), (3, 0)];
        let cases = Case::all(groups);
        for case in [cases[PICK[i].0], cases[PICK[i].1]] {
            for storage in [Operands::F32, Operands::F16] {
                let twin = p.run(&c, MatmulConfig { operands: storage, ..MatmulConfig::default() }, case);
                let runs: Vec<(&Device, MatmulConfig)> = configs(&g)
                    .into_iter()
                    .filter(|cfg| cfg.operands == storage)
                    .map(|cfg| (&g, cfg))
                    .chain([(&fast, MatmulConfig { operands: storage, ..MatmulConfig::default() })])
                    .collect();
                for (dev, cfg) in runs {
                    let what = format!("{name} {case:?} {} {cfg:?}", dev.name());
                    let got = p.run(dev, cfg, case);
                    match case.output {
                        Operands::F32 => assert_close(&what, &got, &twin, 1e-5, 1e-4),
                        Operands::F16 => within_an_ulp(&what, &got, &twin),
                    }
                }
            }
        }
    }
}

/// The ReLU after the bias (a Linear → ReLU block in one launch): every
/// kernel family and f16 load against the twin, whose values are the plain
/// epilogue's clamped at 0; f16 results are the f32 ones rounded once.
#[test]
fn relu_epilogue_matches_the_twin() {
    let Some((g, c)) = devices("relu_epilogue_matches_the_twin") else { return };
    let mut r = rng(907);
    // Every other shape, alternating the output storage and the bias (each
    // case costs lavapipe a pipeline per kernel variant).
    for (i, (la, lb, nbias, groups, name)) in shapes().into_iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        let p = problem(&mut r, la, lb, nbias.max(64 * groups));
        let bias = [None, Some((BiasAxis::Columns, 1)), Some((BiasAxis::Rows, groups))][i % 3];
        let output = [Operands::F32, Operands::F16][i / 2 % 2];
        let case = Case { bias, output, relu: true, scale: None };
        let f32_cfg = MatmulConfig::default();
        let twin = p.run(&c, f32_cfg, case);
        let plain = p.run(&c, f32_cfg, Case { output: Operands::F32, relu: false, ..case });
        let clamped: Vec<f32> = plain.iter().map(|v| v.max(0.0)).collect();
        match output {
            Operands::F32 => assert_eq!(twin, clamped, "{name}: the twin's ReLU"),
            Operands::F16 => within_an_ulp(&format!("{name}: the twin's ReLU, f16"), &twin, &clamped),
        }
        assert!(twin.contains(&0.0) && twin.iter().any(|&v| v > 0.0), "{name}: both signs");
        every_config_matches(&g, &p, case, &twin, name);
    }
    // Split along K past a tiny binding limit: the ReLU applies once, to the whole sum.
    let Some(small) = fresh_gpu_or_skip("relu_epilogue_matches_the_twin (split)") else { return };
    small.set_max_binding_bytes(Some(4096)).unwrap();
    let p = split_k_problem(&mut r);
    for output in [Operands::F32, Operands::F16] {
        let case = Case { bias: Some((BiasAxis::Columns, 1)), output, relu: true, scale: None };
        let (twin, got) = (p.run(&c, MatmulConfig::default(), case), p.run(&small, MatmulConfig::default(), case));
        matches(output, &format!("split-K relu {output:?}"), &got, &twin, (1e-4, 1e-3));
    }
}

/// The scale before the bias (attention's `q kᵀ · scale` in one launch):
/// the twin's values are the plain sums times the scale plus the bias, and
/// every kernel family and f16 load matches the twin, split along K too
/// (each partial scaled, the bias once).
#[test]
fn scaled_epilogue_matches_the_twin() {
    let Some((g, c)) = devices("scaled_epilogue_matches_the_twin") else { return };
    let mut r = rng(911);
    let scale = -0.37;
    // Every other shape, alternating the bias, the ReLU and the output storage.
    for (i, (la, lb, nbias, groups, name)) in shapes().into_iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let p = problem(&mut r, la, lb, nbias.max(64 * groups));
        let bias = [None, Some((BiasAxis::Columns, 1)), Some((BiasAxis::Rows, groups))][i / 2 % 3];
        let (relu, output) = (i % 4 == 2, [Operands::F32, Operands::F16][i / 4]);
        let case = Case { bias, output, relu, scale: Some(scale) };
        let f32_cfg = MatmulConfig::default();
        let twin = p.run(&c, f32_cfg, Case { output: Operands::F32, ..case });
        let sums = p.run(&c, f32_cfg, Case { bias: None, relu: false, output: Operands::F32, scale: None });
        let biased = p.run(&c, f32_cfg, Case { relu: false, output: Operands::F32, scale: None, ..case });
        let want: Vec<f32> = sums
            .iter()
            .zip(&biased)
            .map(|(&s, &sb)| {
                let v = scale * s + (sb - s);
                if relu {
                    v.max(0.0)
                } else {
                    v
                }
            })
            .collect();
        assert_close(&format!("{name}: the twin's scale"), &twin, &want, 1e-5, 1e-4);
        every_config_matches(&g, &p, case, &p.run(&c, f32_cfg, case), name);
    }
    let Some(small) = fresh_gpu_or_skip("scaled_epilogue_matches_the_twin (split)") else { return };
    small.set_max_binding_bytes(Some(4096)).unwrap();
    let p = split_k_problem(&mut r);
    let case = Case { bias: Some((BiasAxis::Columns, 1)), output: Operands::F32, relu: false, scale: Some(scale) };
    let (twin, got) = (p.run(&c, MatmulConfig::default(), case), p.run(&small, MatmulConfig::default(), case));
    assert_close("split-K scale", &got, &twin, 1e-4, 1e-3);
}

/// The residual added last (a Transformer block's `x + f(x)` in the
/// product's launch): every kernel family against the twin, whose values
/// are the epilogue's without it plus the residual; f16 results (the f32
/// store and a cast) and products split past the binding limit (an add
/// after the product) give the same values; one launch where it is fused.
#[test]
fn residual_epilogue_matches_the_twin() {
    let Some((g, c)) = devices("residual_epilogue_matches_the_twin") else { return };
    let alone = fresh_gpu_or_skip("residual_epilogue_matches_the_twin (launches)").unwrap();
    let mut r = rng(919);
    let run = |dev: &Device, p: &Problem, cfg: MatmulConfig, case: Case, res: &[f32]| {
        let (ab, bb) = (upload(dev, &p.a, cfg.operands), upload(dev, &p.b, cfg.operands));
        let (bias, res) = (Buffer::from_f32(dev, &p.bias).unwrap(), Buffer::from_f32(dev, res).unwrap());
        let before = dev.stats().dispatches;
        let (z, shape) =
            matmul_epilogue(cfg, &case.epilogue(&bias).with_residual(&res), &ab, &p.la, &bb, &p.lb).unwrap();
        let launches = dev.stats().dispatches - before;
        (read(&z, shape.iter().product(), case.output), launches)
    };
    for (i, (la, lb, nbias, groups, name)) in shapes().into_iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        let p = problem(&mut r, la, lb, nbias.max(64 * groups));
        let bias = [None, Some((BiasAxis::Columns, 1)), Some((BiasAxis::Rows, groups))][i / 2 % 3];
        let case = Case { bias, output: Operands::F32, relu: i % 4 == 1, scale: None };
        let f32_cfg = MatmulConfig::default();
        let plain = p.run(&c, f32_cfg, case);
        let res: Vec<f32> = (0..plain.len()).map(|_| r.uniform(-3.0, 3.0)).collect();
        let want: Vec<f32> = plain.iter().zip(&res).map(|(v, r)| v + r).collect();
        let (twin, _) = run(&c, &p, f32_cfg, case, &res);
        assert_eq!(twin, want, "{name}: the twin adds the residual last");
        for cfg in configs(&g) {
            let what = format!("{name} {case:?} {cfg:?}");
            let (got, _) = run(&g, &p, cfg, case, &res);
            assert_close(&what, &got, &twin, 1e-5, 1e-4);
            // Launches counted on a device of this test's own (`g` is shared
            // with the tests running beside it).
            let (_, launches) = run(&alone, &p, cfg, case, &res);
            assert_eq!(launches, 1, "{what}: the residual rides in the store");
            let f16 = Case { output: Operands::F16, ..case };
            let (got, _) = run(&g, &p, cfg, f16, &res);
            within_an_ulp(&format!("{what} f16"), &got, &run(&c, &p, f32_cfg, f16, &res).0);
        }
    }
    let Some(small) = fresh_gpu_or_skip("residual_epilogue_matches_the_twin (split)") else { return };
    small.set_max_binding_bytes(Some(4096)).unwrap();
    let p = split_k_problem(&mut r);
    let res: Vec<f32> = (0..15).map(|_| r.uniform(-3.0, 3.0)).collect();
    let case = Case { bias: Some((BiasAxis::Columns, 1)), output: Operands::F32, relu: true, scale: Some(0.5) };
    let (twin, got) =
        (run(&c, &p, MatmulConfig::default(), case, &res).0, run(&small, &p, MatmulConfig::default(), case, &res).0);
    assert_close("split-K residual", &got, &twin, 1e-4, 1e-3);
}

/// An op of the unary table in the store (`matmul_activation`, a Linear
/// followed by a GELU in one launch): on every f32 kernel family, the
/// values before the op equal the plain epilogue's on the same device bit
/// for bit, and the result is the twin's op of them plus the residual; one
/// launch where fused, with or without the values kept; f16 results and
/// products split past the binding limit (the op as a launch of its own)
/// give the same values.
#[test]
fn activation_epilogue_matches_the_twin() {
    let Some((g, c)) = devices("activation_epilogue_matches_the_twin") else { return };
    let alone = fresh_gpu_or_skip("activation_epilogue_matches_the_twin (launches)").unwrap();
    let mut r = rng(929);
    let ops = [UnaryOp::Gelu, UnaryOp::LeakyRelu(0.2), UnaryOp::Tanh, UnaryOp::Softplus { beta: 2.0, threshold: 3.0 }];
    // (result, values before the op, launches)
    let run = |dev: &Device, p: &Problem, cfg: MatmulConfig, case: Case, op: UnaryOp, res: Option<&[f32]>| {
        let (ab, bb) = (upload(dev, &p.a, cfg.operands), upload(dev, &p.b, cfg.operands));
        let bias = Buffer::from_f32(dev, &p.bias).unwrap();
        let res = res.map(|v| Buffer::from_f32(dev, v).unwrap());
        let epi = case.epilogue(&bias);
        let epi = match &res {
            Some(rb) => epi.with_residual(rb),
            None => epi,
        };
        dev.synchronize().unwrap();
        let before = dev.stats().dispatches;
        let (y, pre, shape) = matmul_activation(cfg, &epi, op, true, (&ab, &p.la), (&bb, &p.lb)).unwrap();
        dev.flush().unwrap();
        let launches = dev.stats().dispatches - before;
        let n = shape.iter().product();
        (read(&y, n, case.output), read(&pre.unwrap(), n, case.output), launches)
    };
    // Every other shape (each op costs lavapipe a pipeline per kernel
    // variant), each of the four ops once.
    for (i, (la, lb, nbias, groups, name)) in shapes().into_iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let p = problem(&mut r, la, lb, nbias.max(64 * groups));
        let bias = [None, Some((BiasAxis::Columns, 1)), Some((BiasAxis::Rows, groups))][i / 2 % 3];
        let case = Case { bias, output: Operands::F32, relu: false, scale: [None, Some(0.5)][i / 4] };
        let op = ops[i / 2];
        let f32_cfg = MatmulConfig::default();
        let plain = p.run(&c, f32_cfg, case);
        let res: Vec<f32> = (0..plain.len()).map(|_| r.uniform(-3.0, 3.0)).collect();
        let res = (i / 2 % 2 == 1).then_some(&res[..]);
        let (twin, twin_pre, _) = run(&c, &p, f32_cfg, case, op, res);
        assert_eq!(twin_pre, plain, "{name}: the twin keeps the values before the op");
        let want: Vec<f32> = plain.iter().enumerate().map(|(j, &v)| op.apply(v) + res.map_or(0.0, |r| r[j])).collect();
        assert_eq!(twin, want, "{name}: the twin applies {op:?}, then adds the residual");
        for cfg in configs(&g).into_iter().filter(|cfg| cfg.operands == Operands::F32) {
            let what = format!("{name} {op:?} {case:?} {cfg:?}");
            let (got, pre, _) = run(&g, &p, cfg, case, op, res);
            assert_eq!(pre, p.run(&g, cfg, case), "{what}: the values before the op are the plain store's");
            let from_pre: Vec<f32> =
                pre.iter().enumerate().map(|(j, &v)| op.apply(v) + res.map_or(0.0, |r| r[j])).collect();
            assert_close(&what, &got, &from_pre, 1e-5, 1e-5);
            assert_close(&what, &got, &twin, 1e-5, 1e-4);
            let (_, _, launches) = run(&alone, &p, cfg, case, op, res);
            assert_eq!(launches, 1, "{what}: the op rides in the store");
        }
        if i % 4 == 0 {
            // f16 results: the product, then the op on the widened values.
            let f16 = Case { output: Operands::F16, ..case };
            let cfg = MatmulConfig::f16();
            let (got, pre, _) = run(&g, &p, cfg, f16, op, res);
            let want: Vec<f32> = pre.iter().map(|&v| op.apply(v)).collect();
            within_an_ulp(&format!("{name} f16"), &got, &want);
        }
    }
    // Kept or not, the result is the same; without it there is no buffer.
    let p = problem(&mut r, (Layout::contiguous(&[9, 20]), 180), (Layout::contiguous(&[20, 11]), 220), 11);
    let (ab, bb) = (Buffer::from_f32(&g, &p.a).unwrap(), Buffer::from_f32(&g, &p.b).unwrap());
    let epi = Epilogue::default();
    let cfg = MatmulConfig::default();
    let (y, pre, _) = matmul_activation(cfg, &epi, UnaryOp::Gelu, false, (&ab, &p.la), (&bb, &p.lb)).unwrap();
    assert!(pre.is_none());
    let (kept, _, _) = matmul_activation(cfg, &epi, UnaryOp::Gelu, true, (&ab, &p.la), (&bb, &p.lb)).unwrap();
    assert_eq!(y.to_f32().unwrap(), kept.to_f32().unwrap(), "keeping the values before the op changes nothing");
    let e = matmul_activation(cfg, &epi.with_relu(), UnaryOp::Gelu, false, (&ab, &p.la), (&bb, &p.lb));
    assert!(e.unwrap_err().to_string().contains("activation"));
    // A convolution's store takes ReLU only.
    let geo = geometry(1, false);
    let x = Buffer::from_f32(&g, &vec![0.5; geo.input_shape().iter().product()]).unwrap();
    let w = Buffer::from_f32(&g, &vec![0.25; 6 * geo.col_rows()]).unwrap();
    let gelu = Epilogue { activation: Some(UnaryOp::Gelu), ..Epilogue::default() };
    let e = conv2d(&x, &w, 6, &geo, &ConvOptions::with_epilogue(cfg, &gelu)).unwrap_err().to_string();
    assert!(e.contains("conv2d") && e.contains("ReLU only"), "{e}");
    // Split past a 4 KiB binding limit: the product, then the op.
    let Some(small) = fresh_gpu_or_skip("activation_epilogue_matches_the_twin (split)") else { return };
    small.set_max_binding_bytes(Some(4096)).unwrap();
    let p = split_k_problem(&mut r);
    let case = Case { bias: Some((BiasAxis::Columns, 1)), output: Operands::F32, relu: false, scale: Some(0.5) };
    let (twin, twin_pre, _) = run(&c, &p, MatmulConfig::default(), case, UnaryOp::Silu, None);
    let (got, pre, _) = run(&small, &p, MatmulConfig::default(), case, UnaryOp::Silu, None);
    assert_close("split-K activation", &got, &twin, 1e-4, 1e-3);
    assert_close("split-K values before it", &pre, &twin_pre, 1e-4, 1e-3);
}

/// A residual of the wrong length or on another device is an error naming it.
#[test]
fn bad_residuals_are_errors() {
    let dev = Device::cpu();
    let (a, b) = (Buffer::from_f32(&dev, &[1.0; 6]).unwrap(), Buffer::from_f32(&dev, &[1.0; 6]).unwrap());
    let (la, lb) = (Layout::contiguous(&[2, 3]), Layout::contiguous(&[3, 2]));
    let short = Buffer::from_f32(&dev, &[0.0; 3]).unwrap();
    let epi = Epilogue::default().with_residual(&short);
    let e = matmul_epilogue(MatmulConfig::default(), &epi, &a, &la, &b, &lb).unwrap_err().to_string();
    assert!(e.contains("residual"), "{e}");
    let other = Device::cpu_reference();
    let elsewhere = Buffer::from_f32(&other, &[0.0; 4]).unwrap();
    let epi = Epilogue::default().with_residual(&elsewhere);
    assert!(matmul_epilogue(MatmulConfig::default(), &epi, &a, &la, &b, &lb).is_err());
}

/// On every backend and kernel, the fused f16 store is bit-equal to the f32
/// store rounded by the cast kernel: one rounding, the same rounding.
#[test]
fn fused_f16_store_is_the_f32_result_rounded() {
    let Some((g, c)) = devices("fused_f16_store_is_the_f32_result_rounded") else { return };
    let fast = Device::cpu();
    let mut r = rng(132);
    for (i, (la, lb, nbias, groups, name)) in shapes().into_iter().enumerate() {
        let p = problem(&mut r, la, lb, nbias.max(64 * groups));
        let f16_cases: Vec<Case> = Case::all(groups).into_iter().filter(|c| c.output == Operands::F16).collect();
        for case in [f16_cases[i % f16_cases.len()]] {
            for dev in [&g, &c, &fast] {
                for cfg in configs(dev) {
                    let what = format!("{name} {case:?} {} {cfg:?}", dev.name());
                    same_halves(&what, &halves(&p.run(dev, cfg, case)), &halves(&p.run_then_round(dev, cfg, case)));
                }
            }
        }
    }
}

fn halves(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x)).collect()
}

/// Results at f16's limits: sums past 65504 (±inf), 65504 itself, subnormals, underflow to
/// zero, with a column bias that pushes some over the edge. With K = 1 a
/// sum is one f32 product (one rounding on every backend) plus the bias,
/// so every backend must give the same bits as the twin, and those are the
/// `half` crate's rounding of the f32 values.
#[test]
fn limits_round_like_the_half_crate() {
    let Some((g, c)) = devices("limits_round_like_the_half_crate") else { return };
    let rows = [255.875f32, -255.875, 4.0e-3, 1.0e-4, 2.0e-6, 6.0e-8, 1.0];
    let cols = [256.0f32, 255.5, 1.0e-3, 3.0e-4, 1.0, 0.5];
    let bias = [0.0f32, 16.0, 0.0, -1.0e-7, 65504.0, 0.0];
    let (m, n) = (rows.len(), cols.len());
    let p = Problem {
        a: rows.to_vec(),
        la: Layout::contiguous(&[m, 1]),
        b: cols.to_vec(),
        lb: Layout::contiguous(&[1, n]),
        bias: bias.to_vec(),
    };
    let case = Case { bias: Some((BiasAxis::Columns, 1)), output: Operands::F16, relu: false, scale: None };
    let want: Vec<f32> = (0..m * n).map(|i| f16::from_f32(rows[i / n] * cols[i % n] + bias[i % n]).to_f32()).collect();
    assert!(want.iter().any(|v| v.is_infinite()), "the case must overflow");
    assert!(want.contains(&65504.0), "the case must reach the largest finite f16");
    assert!(want.iter().any(|&v| v != 0.0 && v.abs() < 6.1e-5), "the case must produce subnormals");
    assert!(want.contains(&0.0), "the case must underflow");
    for dev in [&c, &g] {
        // f32 operands only: these values are not all f16-exact.
        for cfg in configs(dev).into_iter().filter(|cfg| cfg.operands == Operands::F32) {
            let what = format!("limits {} {cfg:?}", dev.name());
            same_halves(&what, &halves(&p.run(dev, cfg, case)), &halves(&want));
        }
    }
}

/// A small grouped, strided, dilated, padded geometry. `odd` picks an
/// input 7 wide: 30 output pixels (even: form 1 stores f16 itself) over a
/// 63-pixel input (odd: form 3 falls back to the cast); otherwise 8 wide:
/// 35 output pixels (form 1 falls back) over 72 (form 3 stores f16).
fn geometry(batch: usize, odd: bool) -> ConvGeometry {
    let mut geo = ConvGeometry::new(batch, 6, (9, if odd { 7 } else { 8 }), (3, 2));
    geo.stride_h = 2;
    geo.pad_top = 1;
    geo.pad_bottom = 1;
    geo.pad_left = 1;
    geo.dilation_w = 2;
    geo.groups = 3;
    geo
}

/// The three implicit-GEMM forms with an f16 result (and the forward and
/// transposed-convolution forms with a per-channel bias over groups): GPU
/// kernels against the twin within an ulp, and on every backend bit-equal
/// to the f32 result rounded by the cast kernel.
#[test]
fn convolution_forms_store_bias_and_f16() {
    let Some((g, c)) = devices("convolution_forms_store_bias_and_f16") else { return };
    let fast = Device::cpu();
    let mut r = rng(133);
    let oc = 9;
    for (batch, odd) in [(1, false), (2, true)] {
        let geo = geometry(batch, odd);
        let (n_x, n_w) = (geo.input_shape().iter().product::<usize>(), oc * geo.col_rows());
        let n_y = batch * oc * geo.out_h() * geo.out_w();
        let f16_exact = |r: &mut Rng, n: usize| -> Vec<f32> {
            (0..n).map(|_| f16::from_f32(r.uniform(-2.0, 2.0)).to_f32()).collect()
        };
        let (x, w, gy) = (f16_exact(&mut r, n_x), f16_exact(&mut r, n_w), f16_exact(&mut r, n_y));
        let (bias_y, bias_x) = (f16_exact(&mut r, oc), f16_exact(&mut r, geo.channels));
        // (form, output storage) -> result widened, on one device and config.
        let run = |dev: &Device, cfg: MatmulConfig, form: usize, output: Operands| -> Vec<f32> {
            let s = cfg.operands;
            let (bx, bw, bgy) = (upload(dev, &x, s), upload(dev, &w, s), upload(dev, &gy, s));
            let (by, bxb) = (Buffer::from_f32(dev, &bias_y).unwrap(), Buffer::from_f32(dev, &bias_x).unwrap());
            let epi = Epilogue { output, ..Epilogue::default() };
            let (z, n) = match form {
                1 => {
                    let epi = epi.with_bias(&by, BiasAxis::Rows, geo.groups);
                    (conv2d(&bx, &bw, oc, &geo, &ConvOptions::with_epilogue(cfg, &epi)).unwrap(), n_y)
                }
                2 => {
                    (conv2d_weight_grad(&bgy, &bx, oc, &geo, &ConvOptions::config(cfg).stored_as(output)).unwrap(), n_w)
                }
                _ => {
                    let epi = epi.with_bias(&bxb, BiasAxis::Rows, geo.groups);
                    (conv2d_input_grad(&bgy, &bw, oc, &geo, &ConvOptions::with_epilogue(cfg, &epi)).unwrap(), n_x)
                }
            };
            read(&z, n, output)
        };
        for form in [1, 2, 3] {
            for storage in [Operands::F32, Operands::F16] {
                let twin = run(&c, MatmulConfig { operands: storage, ..MatmulConfig::default() }, form, Operands::F16);
                for dev in [&g, &fast, &c] {
                    for cfg in configs(dev).into_iter().filter(|cfg| cfg.operands == storage) {
                        let what = format!("form {form} batch {batch} odd {odd} {} {cfg:?}", dev.name());
                        let fused = run(dev, cfg, form, Operands::F16);
                        within_an_ulp(&what, &fused, &twin);
                        let rounded = halves(&run(dev, cfg, form, Operands::F32));
                        same_halves(&what, &halves(&fused), &rounded);
                    }
                }
            }
        }
    }
}

/// Launches on a fresh GPU: with the tiled kernel a convolution with bias
/// and f16 output is one launch, as is a product with a column bias and an
/// even N; an odd N takes the f32 store and a cast (two), and gives the
/// same bits. The subgroup kernel (CPU adapters) always stores f32 and
/// casts: two launches, the same bits.
#[test]
fn fused_epilogues_are_one_launch() {
    let Some(g) = fresh_gpu_or_skip("fused_epilogues_are_one_launch") else { return };
    for kernel in [MatmulKernel::Tiled, MatmulKernel::Subgroup, MatmulKernel::Cooperative] {
        if kernel.runs_on(&g) {
            launches_of_f16_epilogues(&g, kernel);
        } else {
            eprintln!("{} cannot run {kernel:?}: its launches not counted", g.name());
        }
    }
}

fn launches_of_f16_epilogues(g: &Device, kernel: MatmulKernel) {
    let fused = kernel.rounds_f16_in_store(g);
    assert_eq!(fused, kernel != MatmulKernel::Subgroup);
    let cfg = MatmulConfig { kernel, ..MatmulConfig::f16() };
    let count = |f: &dyn Fn() -> Buffer| {
        g.synchronize().unwrap();
        let before = g.stats().dispatches;
        let z = f();
        g.flush().unwrap();
        (z, g.stats().dispatches - before)
    };
    // 30 output pixels: an even N.
    let geo = geometry(2, true);
    assert_eq!(geo.out_h() * geo.out_w(), 30);
    let oc = 9;
    let x = upload(g, &vec![0.5; geo.input_shape().iter().product()], Operands::F16);
    let w = upload(g, &vec![0.25; oc * geo.col_rows()], Operands::F16);
    let bias = Buffer::from_f32(g, &[1.0; 16]).unwrap();
    let epi = Epilogue::f16().with_bias(&bias, BiasAxis::Rows, geo.groups);
    let (_, n) = count(&|| conv2d(&x, &w, oc, &geo, &ConvOptions::with_epilogue(cfg, &epi)).unwrap());
    assert_eq!(n, if fused { 1 } else { 2 }, "{kernel:?}: conv2d with bias and f16 output");
    for (cols, launches) in [(16, if fused { 1 } else { 2 }), (15, 2)] {
        let a = upload(g, &vec![0.5; 8 * 16], Operands::F16);
        let b = upload(g, &(0..16 * cols).map(|i| i as f32 / 64.0).collect::<Vec<_>>(), Operands::F16);
        let (la, lb) = (Layout::contiguous(&[8, 16]), Layout::contiguous(&[16, cols]));
        let epi = Epilogue::f16().with_bias(&bias, BiasAxis::Columns, 1);
        let (z, n) = count(&|| matmul_epilogue(cfg, &epi, &a, &la, &b, &lb).unwrap().0);
        assert_eq!(n, launches, "{kernel:?}: matmul with column bias and f16 output, N = {cols}");
        let f32_epi = Epilogue { output: Operands::F32, ..epi };
        let (sums, _) = matmul_epilogue(cfg, &f32_epi, &a, &la, &b, &lb).unwrap();
        let want = f32_to_f16(&sums, 8 * cols).unwrap().to_f16().unwrap();
        same_halves(&format!("N = {cols}"), &z.to_f16().unwrap()[..8 * cols], &want[..8 * cols]);
    }
}

/// The bias and the ReLU are kernel parameters, not pipeline constants: on
/// a fresh GPU the f32 epilogues of one product (none, rows, columns, each
/// with and without ReLU) share one pipeline per kernel family, and
/// recorded back to back in one batch, read only at the end, each launch
/// still gets its own bias and ReLU (the twin's values).
#[test]
fn epilogues_share_a_pipeline_and_keep_their_own_parameters() {
    let Some(g) = fresh_gpu_or_skip("epilogues_share_a_pipeline_and_keep_their_own_parameters") else { return };
    let c = Device::cpu_reference();
    let p =
        problem(&mut rng(211), (Layout::contiguous(&[19, 23]), 19 * 23), (Layout::contiguous(&[23, 37]), 23 * 37), 64);
    let mut cases = Vec::new();
    for relu in [false, true] {
        for bias in [None, Some((BiasAxis::Rows, 1)), Some((BiasAxis::Columns, 1))] {
            cases.push(Case { bias, output: Operands::F32, relu, scale: None });
        }
    }
    for kernel in [MatmulKernel::Tiled, MatmulKernel::Subgroup].into_iter().filter(|k| k.runs_on(&g)) {
        let cfg = MatmulConfig { kernel, ..MatmulConfig::default() };
        let (a, b) = (upload(&g, &p.a, Operands::F32), upload(&g, &p.b, Operands::F32));
        let bias = Buffer::from_f32(&g, &p.bias).unwrap();
        g.synchronize().unwrap();
        let (compiled, submitted) = (g.pipelines_compiled(), g.stats().submissions);
        let results: Vec<Buffer> = cases
            .iter()
            .map(|case| matmul_epilogue(cfg, &case.epilogue(&bias), &a, &p.la, &b, &p.lb).unwrap().0)
            .collect();
        assert_eq!(g.stats().submissions, submitted, "{kernel:?}: recorded, not submitted");
        assert_eq!(g.pipelines_compiled() - compiled, 1, "{kernel:?}: one pipeline for six epilogues");
        for (case, z) in cases.iter().zip(&results) {
            let twin = p.run(&c, MatmulConfig::default(), *case);
            assert_close(&format!("{kernel:?} {case:?}"), &read(z, 19 * 37, Operands::F32), &twin, 1e-5, 1e-4);
        }
    }
}

/// A bias of the wrong length, on another device or with groups that do
/// not divide the batch is an error naming the op, not a kernel fault.
#[test]
fn bad_biases_are_errors() {
    for dev in [Device::cpu_reference()] {
        let a = Buffer::from_f32(&dev, &[1.0; 12]).unwrap();
        let (la, lb) = (Layout::contiguous(&[3, 4]), Layout::contiguous(&[4, 3]));
        let short = Buffer::from_f32(&dev, &[1.0; 2]).unwrap();
        for (axis, groups) in [(BiasAxis::Rows, 1), (BiasAxis::Columns, 1), (BiasAxis::Rows, 2)] {
            let epi = Epilogue::default().with_bias(&short, axis, groups);
            let msg = matmul_epilogue(MatmulConfig::default(), &epi, &a, &la, &a, &lb).unwrap_err().to_string();
            assert!(msg.contains("matmul") && msg.contains("bias"), "{msg}");
        }
    }
}
