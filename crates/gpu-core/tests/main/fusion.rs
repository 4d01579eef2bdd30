//! The elementwise fuser: fused results equal unfused ones and the CPU
//! twin, chains become one launch, and the hazards (shared intermediates,
//! intermediates the user reads, in-place writes) keep values right. The f16
//! casts join chains: widened leaves and narrowing roots, bit-exactly.

use crate::common;
use common::*;
use half::f16;
use wgrad_gpu_core::ops::binary::{binary, where_select, BinaryOp};
use wgrad_gpu_core::ops::cast::{f16_to_f32, f32_to_f16};
use wgrad_gpu_core::ops::copy::copy_into;
use wgrad_gpu_core::ops::unary::{unary, unary_grad, Domain, UnaryOp};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip};
use wgrad_gpu_core::{Buffer, Device, Layout};

/// Two fresh GPU devices, fusing and not, and the CPU twin.
fn trio(test: &str) -> Option<(Device, Device, Device)> {
    let fused = fresh_gpu_or_skip(test)?;
    let plain = fresh_gpu_or_skip(test)?;
    fused.set_fusion(true).unwrap();
    plain.set_fusion(false).unwrap();
    Some((fused, plain, Device::cpu()))
}

/// Dispatches `f` records on `dev` (flushed, so the fuser has settled).
fn launches(dev: &Device, f: impl FnOnce() -> Buffer) -> (Buffer, u64) {
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let out = f();
    dev.flush().unwrap();
    (out, dev.stats().dispatches - before)
}

/// Inputs of the op chains: `x` stored transposed ([7, 5] viewed as [5, 7]),
/// a scalar, a row broadcast over the rows, a 0/1 mask.
struct Inputs {
    xt: Vec<f32>,
    s: f32,
    row: Vec<f32>,
    mask: Vec<f32>,
}

const R: usize = 5;
const C: usize = 7;

/// `where(mask, b(u(xᵀ + s), row), s)`: four launches unfused, with
/// strided, broadcast and scalar leaves.
fn forward_chain(dev: &Device, u: UnaryOp, b: BinaryOp, i: &Inputs) -> (Buffer, u64) {
    let xt = Buffer::from_f32(dev, &i.xt).unwrap();
    let s = Buffer::from_f32(dev, &[i.s]).unwrap();
    let row = Buffer::from_f32(dev, &i.row).unwrap();
    let mask = Buffer::from_f32(dev, &i.mask).unwrap();
    let x_view = Layout::contiguous(&[C, R]).permute(&[1, 0]).unwrap();
    let scalar = Layout::contiguous(&[1]);
    let dense = Layout::contiguous(&[R, C]);
    launches(dev, || {
        let (t1, _) = binary(BinaryOp::Add, &xt, &x_view, &s, &scalar).unwrap();
        let t2 = unary(u, &t1, R * C).unwrap();
        let (t3, _) = binary(b, &t2, &dense, &row, &Layout::contiguous(&[1, C])).unwrap();
        where_select(&mask, &dense, &t3, &dense, &s, &scalar).unwrap().0
    })
}

/// A backward chain: `u'(x) · g + acc` with `y = u(x)` materialized first.
fn backward_chain(dev: &Device, u: UnaryOp, i: &Inputs) -> (Buffer, u64) {
    let n = R * C;
    let x = Buffer::from_f32(dev, &i.xt).unwrap();
    let g = Buffer::from_f32(dev, &i.mask).unwrap();
    let acc = Buffer::from_f32(dev, &i.row.iter().cycle().take(n).copied().collect::<Vec<_>>()).unwrap();
    let y = unary(u, &x, n).unwrap();
    let dense = Layout::contiguous(&[n]);
    launches(dev, || {
        let dx = unary_grad(u, &x, &y, &g, n).unwrap();
        let scaled = unary(UnaryOp::Affine { scale: 0.5, shift: 0.0 }, &dx, n).unwrap();
        binary(BinaryOp::Add, &scaled, &dense, &acc, &dense).unwrap().0
    })
}

fn inputs(r: &mut wgrad_gpu_core::testing::Rng, domain: Domain) -> Inputs {
    let mut xt = r.vec(R * C, -3.0, 3.0);
    if domain == Domain::Positive {
        xt.iter_mut().for_each(|v| *v = v.abs() + 0.2);
    }
    let mask = r.vec(R * C, 0.0, 1.0).iter().map(|v| if *v > 0.3 { 1.0 } else { 0.0 }).collect();
    Inputs { xt, s: if domain == Domain::Positive { 0.25 } else { -0.75 }, row: r.vec(C, 0.5, 2.0), mask }
}

#[test]
fn every_table_row_fuses_to_one_launch_with_unfused_values() {
    let Some((fused, plain, cpu)) = trio("every_table_row_fuses_to_one_launch_with_unfused_values") else { return };
    let mut r = rng(11);
    for &u in UnaryOp::EXAMPLES {
        for &b in BinaryOp::ALL {
            let i = inputs(&mut r, u.domain());
            let what = format!("{u:?} then {b:?}");
            let (yf, nf) = forward_chain(&fused, u, b, &i);
            let (yp, np) = forward_chain(&plain, u, b, &i);
            let (yc, _) = forward_chain(&cpu, u, b, &i);
            assert_eq!((nf, np), (1, 4), "{what}: launches fused / unfused");
            let (f, p, c) = (yf.to_f32().unwrap(), yp.to_f32().unwrap(), yc.to_f32().unwrap());
            assert_close(&format!("{what}: fused vs unfused"), &f[..R * C], &p[..R * C], 1e-6, 1e-7);
            assert_close(&format!("{what}: fused vs CPU"), &f[..R * C], &c[..R * C], 2e-5, 2e-5);
        }
        let i = inputs(&mut r, u.domain());
        let what = format!("{u:?} backward");
        let (gf, nf) = backward_chain(&fused, u, &i);
        let (gp, np) = backward_chain(&plain, u, &i);
        let (gc, _) = backward_chain(&cpu, u, &i);
        assert_eq!((nf, np), (1, 3), "{what}: launches fused / unfused");
        let (f, p, c) = (gf.to_f32().unwrap(), gp.to_f32().unwrap(), gc.to_f32().unwrap());
        assert_close(&format!("{what}: fused vs unfused"), &f[..R * C], &p[..R * C], 1e-6, 1e-7);
        assert_close(&format!("{what}: fused vs CPU"), &f[..R * C], &c[..R * C], 2e-5, 2e-5);
    }
}

#[test]
fn fused_intermediates_take_no_memory() {
    let Some((fused, plain, _)) = trio("fused_intermediates_take_no_memory") else { return };
    let run = |dev: &Device| {
        let x = Buffer::from_f32(dev, &rng(3).vec(1000, -1.0, 1.0)).unwrap();
        dev.flush().unwrap();
        let before = dev.stats();
        let mut y = x.clone();
        for op in [UnaryOp::Sin, UnaryOp::Square, UnaryOp::Neg, UnaryOp::Exp, UnaryOp::Tanh] {
            y = unary(op, &y, 1000).unwrap();
        }
        let out = y.to_f32().unwrap();
        let d = dev.stats() - before;
        (out, d.dispatches, d.buffers_created)
    };
    let (f, fd, fb) = run(&fused);
    let (p, pd, pb) = run(&plain);
    assert_close("five unary ops", &f, &p, 1e-6, 1e-7);
    assert_eq!((fd, pd), (1, 5), "launches fused / unfused");
    // Fused: only the result is backed. Unfused, each intermediate is, and
    // two are live at once (input and output of each launch; the others
    // come back from the pool): the devices are fresh, so that is two creations.
    assert_eq!(fb, 1, "buffers created fused");
    assert_eq!(pb, 2, "buffers created unfused");
}

#[test]
fn shared_and_read_back_intermediates_are_materialized() {
    let Some((fused, plain, _)) = trio("shared_and_read_back_intermediates_are_materialized") else { return };
    let data = rng(4).vec(77, -2.0, 2.0);
    let dense = Layout::contiguous(&[77]);
    // t1 feeds two consumers: it runs alone, t2 + t3 fuse.
    let shared = |dev: &Device| {
        let x = Buffer::from_f32(dev, &data).unwrap();
        launches(dev, || {
            let t1 = unary(UnaryOp::Exp, &x, 77).unwrap();
            let t2 = unary(UnaryOp::Neg, &t1, 77).unwrap();
            binary(BinaryOp::Mul, &t1, &dense, &t2, &dense).unwrap().0
        })
    };
    let ((yf, nf), (yp, np)) = (shared(&fused), shared(&plain));
    assert_eq!((nf, np), (2, 3), "a value read twice is stored once");
    assert_close("shared", &yf.to_f32().unwrap(), &yp.to_f32().unwrap(), 1e-6, 1e-7);
    let want: Vec<f32> = data.iter().map(|v| -(v.exp() * v.exp())).collect();
    assert_close("shared vs host", &yf.to_f32().unwrap()[..77], &want, 1e-5, 1e-6);

    // The user keeps t1 and reads it after t2 was recorded: the fused
    // launch also stores it (one launch, two outputs).
    let x = Buffer::from_f32(&fused, &data).unwrap();
    let mut t1 = None;
    let (t2, n) = launches(&fused, || {
        let kept = unary(UnaryOp::Exp, &x, 77).unwrap();
        let t2 = unary(UnaryOp::Neg, &kept, 77).unwrap();
        t1 = Some(kept);
        t2
    });
    assert_eq!(n, 1, "exp stored by the launch that computes neg");
    let (a, b) = (t1.unwrap().to_f32().unwrap(), t2.to_f32().unwrap());
    let want1: Vec<f32> = data.iter().map(|v| v.exp()).collect();
    assert_close("kept intermediate", &a[..77], &want1, 1e-5, 1e-6);
    assert_close("its consumer", &b[..77], &want1.iter().map(|v| -v).collect::<Vec<_>>(), 1e-5, 1e-6);
}

#[test]
fn an_in_place_write_between_producer_and_consumer_blocks_fusion() {
    let Some((fused, plain, _)) = trio("an_in_place_write_between_producer_and_consumer_blocks_fusion") else {
        return;
    };
    let data = rng(6).vec(50, -2.0, 2.0);
    let dense = Layout::contiguous(&[50]);
    let run = |dev: &Device| {
        let x = Buffer::from_f32(dev, &data).unwrap();
        let zeros = Buffer::from_f32(dev, &[0.0; 50]).unwrap();
        launches(dev, || {
            let t1 = unary(UnaryOp::Neg, &x, 50).unwrap();
            // Overwrites x in place: t1 must have read the old x.
            copy_into(&zeros, &dense, &x, &dense).unwrap();
            let t2 = unary(UnaryOp::Exp, &t1, 50).unwrap();
            binary(BinaryOp::Add, &t2, &dense, &x, &dense).unwrap().0
        })
    };
    let ((yf, nf), (yp, np)) = (run(&fused), run(&plain));
    assert_eq!(np, 4);
    assert_eq!(nf, 3, "neg alone (before the copy), the copy, exp + add fused");
    let want: Vec<f32> = data.iter().map(|v| (-v).exp()).collect();
    assert_close("fused", &yf.to_f32().unwrap()[..50], &want, 1e-5, 1e-6);
    assert_close("fused vs unfused", &yf.to_f32().unwrap(), &yp.to_f32().unwrap(), 1e-6, 1e-7);
}

// ---- f16 casts in fused chains --------------------------------------------

/// f16 values at the type's limits (signed zeros, ±65504, the smallest and
/// largest subnormals, the smallest normal, ±inf, quiet and signalling NaN,
/// a NaN with payload) then random bit patterns (every class again), `n` in all.
fn halves(n: usize, seed: u64) -> Vec<f16> {
    let edges =
        [0x0000, 0x8000, 0x7bff, 0xfbff, 0x0001, 0x8001, 0x03ff, 0x0400, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfe42];
    let mut r = rng(seed);
    let random = std::iter::repeat_with(move || r.below(1 << 16) as u16);
    edges.into_iter().chain(random).take(n).map(f16::from_bits).collect()
}

/// Bit-exact f32 comparison, any NaN matching any NaN; `skip(i)` exempts an element.
#[track_caller]
fn same_bits(what: &str, got: &[f32], want: &[f32], skip: impl Fn(usize) -> bool) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = skip(i) || if w.is_nan() { g.is_nan() } else { g.to_bits() == w.to_bits() };
        assert!(ok, "{what}: element {i}: got {g} ({:#010x}), want {w} ({:#010x})", g.to_bits(), w.to_bits());
    }
}

/// Sizes for the cast chains: the awkward ones, and one past a workgroup of words.
fn cast_sizes() -> impl Iterator<Item = usize> {
    SIZES.iter().copied().chain([4097])
}

#[test]
fn widened_f16_leaves_fuse_bit_exactly() {
    let Some((fused, plain, cpu)) = trio("widened_f16_leaves_fuse_bit_exactly") else { return };
    for n in cast_sizes() {
        let (xh, zh) = (halves(n, n as u64), halves(n, 1000 + n as u64));
        let y = rng(7).vec(n, -2.0, 2.0);
        let dense = Layout::contiguous(&[n]);
        // relu(widen(x)): two launches unfused, one fused.
        let relu = |dev: &Device| {
            let x = Buffer::from_f16(dev, &xh).unwrap();
            launches(dev, || unary(UnaryOp::Relu, &f16_to_f32(&x, n).unwrap(), n).unwrap())
        };
        // (|widen(x)| + widen(z)) · y: five launches unfused, one fused. No
        // multiply feeds an add, so no contraction into an fma can differ.
        let chain = |dev: &Device| {
            let (x, z) = (Buffer::from_f16(dev, &xh).unwrap(), Buffer::from_f16(dev, &zh).unwrap());
            let y = Buffer::from_f32(dev, &y).unwrap();
            launches(dev, || {
                let ax = unary(UnaryOp::Abs, &f16_to_f32(&x, n).unwrap(), n).unwrap();
                let s = binary(BinaryOp::Add, &ax, &dense, &f16_to_f32(&z, n).unwrap(), &dense).unwrap().0;
                binary(BinaryOp::Mul, &s, &dense, &y, &dense).unwrap().0
            })
        };
        let busy = (n > 0) as u64;
        for (what, f, launches_fused, launches_plain) in
            [("relu(widen(x))", &relu as &dyn Fn(&Device) -> (Buffer, u64), 1, 2), ("(|x| + z)·y", &chain, 1, 5)]
        {
            let what = format!("{what}, n={n}");
            let ((rf, nf), (rp, np), (rc, _)) = (f(&fused), f(&plain), f(&cpu));
            assert_eq!((nf, np), (launches_fused * busy, launches_plain * busy), "{what}: launches fused / unfused");
            let (rf, rp, rc) = (rf.to_f32().unwrap(), rp.to_f32().unwrap(), rc.to_f32().unwrap());
            same_bits(&format!("{what}: fused vs unfused"), &rf, &rp, |_| false);
            same_bits(&format!("{what}: fused vs CPU"), &rf, &rc, |_| false);
        }
    }
}

#[test]
fn widened_values_fuse_through_strided_and_broadcast_reads() {
    let Some((fused, plain, cpu)) = trio("widened_values_fuse_through_strided_and_broadcast_reads") else { return };
    // widen(xᵀ) + widen(row) over [5, 7]: xᵀ is [7, 5] storage viewed transposed,
    // the row broadcasts over the rows. Neither widened copy is ever written.
    let (xh, rowh) = (halves(R * C, 21), halves(C, 22));
    let run = |dev: &Device| {
        let (xt, row) = (Buffer::from_f16(dev, &xh).unwrap(), Buffer::from_f16(dev, &rowh).unwrap());
        let x_view = Layout::contiguous(&[C, R]).permute(&[1, 0]).unwrap();
        launches(dev, || {
            let (wx, wrow) = (f16_to_f32(&xt, R * C).unwrap(), f16_to_f32(&row, C).unwrap());
            binary(BinaryOp::Add, &wx, &x_view, &wrow, &Layout::contiguous(&[1, C])).unwrap().0
        })
    };
    let ((yf, nf), (yp, np), (yc, _)) = (run(&fused), run(&plain), run(&cpu));
    assert_eq!((nf, np), (1, 3), "launches fused / unfused");
    let (f, p, c) = (yf.to_f32().unwrap(), yp.to_f32().unwrap(), yc.to_f32().unwrap());
    same_bits("strided f16 leaves: fused vs unfused", &f, &p, |_| false);
    same_bits("strided f16 leaves: fused vs CPU", &f, &c, |_| false);
    let want: Vec<f32> = (0..R * C).map(|i| xh[(i % C) * R + i / C].to_f32() + rowh[i % C].to_f32()).collect();
    same_bits("strided f16 leaves: fused vs host", &f, &want, |_| false);
}

#[test]
fn widened_values_a_tensor_holds_are_still_stored() {
    let Some((fused, plain, _)) = trio("widened_values_a_tensor_holds_are_still_stored") else { return };
    let n = 33;
    let xh = halves(n, 5);
    let widened: Vec<f32> = xh.iter().map(|h| h.to_f32()).collect();
    // A kept widen read densely: one launch that also stores the f32 copy.
    // Read through a broadcast instead, it runs alone: the kept copy is whole.
    for (broadcast, launches_fused) in [(false, 1), (true, 2)] {
        let what = if broadcast { "kept widen read through a broadcast" } else { "kept widen read densely" };
        let run = |dev: &Device| {
            let x = Buffer::from_f16(dev, &xh).unwrap();
            let two = Buffer::from_f32(dev, &[0.5, -1.0]).unwrap();
            let mut kept = None;
            let (y, k) = launches(dev, || {
                let t = f16_to_f32(&x, n).unwrap();
                let y = match broadcast {
                    false => unary(UnaryOp::Neg, &t, n).unwrap(),
                    true => {
                        binary(BinaryOp::Add, &t, &Layout::contiguous(&[1, n]), &two, &Layout::contiguous(&[2, 1]))
                            .unwrap()
                            .0
                    }
                };
                kept = Some(t);
                y
            });
            (kept.unwrap().to_f32().unwrap(), y.to_f32().unwrap(), k)
        };
        let ((tf, yf, nf), (tp, yp, np)) = (run(&fused), run(&plain));
        assert_eq!((nf, np), (launches_fused, 2), "{what}: launches fused / unfused");
        same_bits(&format!("{what}: the kept copy"), &tf, &widened, |_| false);
        same_bits(&format!("{what}: the kept copy vs unfused"), &tf, &tp, |_| false);
        same_bits(&format!("{what}: its consumer vs unfused"), &yf, &yp, |_| false);
    }
}

#[test]
fn fused_widens_take_no_memory() {
    let Some((fused, plain, _)) = trio("fused_widens_take_no_memory") else { return };
    let run = |dev: &Device| {
        let x = Buffer::from_f16(dev, &halves(1000, 8)).unwrap();
        dev.flush().unwrap();
        let before = dev.stats();
        let y = unary(UnaryOp::Relu, &f16_to_f32(&x, 1000).unwrap(), 1000).unwrap();
        let out = y.to_f32().unwrap();
        (out, (dev.stats() - before).buffers_created)
    };
    let ((f, fb), (p, pb)) = (run(&fused), run(&plain));
    same_bits("relu(widen(x))", &f, &p, |_| false);
    assert_eq!((fb, pb), (1, 2), "buffers created fused (the result only) / unfused (the f32 copy too)");
}

/// f32 addends that push f16 values to and past its limits: to 65504 + 15.99
/// (rounds back to 65504) and 65504 + 16 (the halfway point: rounds to even,
/// inf), below -65504, into ties in the subnormals, and NaN / inf operands.
fn addends(n: usize, seed: u64) -> Vec<f32> {
    let edges = [0.0, -0.0, 15.99, 16.0, -16.0, 8.0, -2.980_232_2e-8, 1e-8, f32::NAN, f32::INFINITY, 1e6, -1e6];
    let random = rng(seed).vec(n, -4.0, 4.0);
    edges.into_iter().cycle().take(n.min(3 * edges.len())).chain(random).take(n).collect()
}

#[test]
fn narrowing_roots_store_packed_f16_bit_exactly() {
    let Some((fused, plain, cpu)) = trio("narrowing_roots_store_packed_f16_bit_exactly") else { return };
    for n in cast_sizes() {
        // The f16 edges three times over (13 of them against 12 addends, so
        // 65504 meets both 15.99 and 16, the smallest subnormal a tie), then random.
        let edges = halves(13, 0).into_iter().cycle().take(n.min(39));
        let ah: Vec<f16> = edges.chain(halves(n, 40 + n as u64).into_iter().skip(13)).take(n).collect();
        let b = addends(n, n as u64);
        let dense = Layout::contiguous(&[n]);
        // narrow(widen(a) + b): three launches unfused, one fused (one thread per word).
        let run = |dev: &Device| {
            let (a, b) = (Buffer::from_f16(dev, &ah).unwrap(), Buffer::from_f32(dev, &b).unwrap());
            let mut kept = None;
            let (h, k) = launches(dev, || {
                let s = binary(BinaryOp::Add, &f16_to_f32(&a, n).unwrap(), &dense, &b, &dense).unwrap().0;
                let h = f32_to_f16(&s, n).unwrap();
                // Kept on every third size: the fused kernel also stores the f32 sum.
                if n % 3 == 0 {
                    kept = Some(s);
                }
                h
            });
            (h.to_f16().unwrap(), kept.map(|s| s.to_f32().unwrap()), k)
        };
        let ((hf, sf, nf), (hp, sp, np), (hc, sc, _)) = (run(&fused), run(&plain), run(&cpu));
        let busy = (n > 0) as u64;
        assert_eq!((nf, np), (busy, 3 * busy), "n={n}: launches fused / unfused");
        assert_eq!(hf.len(), n);
        same_halves(&format!("n={n}: fused vs unfused"), &hf, &hp);
        same_halves(&format!("n={n}: fused vs CPU"), &hf, &hc);
        if let (Some(sf), Some(sp), Some(sc)) = (sf, sp, sc) {
            same_bits(&format!("n={n}: kept sum vs unfused"), &sf, &sp, |_| false);
            same_bits(&format!("n={n}: kept sum vs CPU"), &sf, &sc, |_| false);
        }
        if n >= 36 {
            let overflowed = hf.iter().filter(|h| h.is_infinite()).count();
            assert!(overflowed >= 3, "n={n}: the edges overflow to inf ({overflowed} did)");
        }
    }
}

/// `widen(narrow(v))` (mixed precision between two f16 ops): the narrow
/// merges into the widen as the rounding it is, bit for bit the cast's
/// (past f16's range, subnormals, halfway cases); a narrowed value that a
/// tensor holds is stored, and the widen reads it from memory.
#[test]
fn a_narrowed_value_widened_again_is_rounded_in_registers() {
    let Some((fused, plain, cpu)) = trio("a_narrowed_value_widened_again_is_rounded_in_registers") else { return };
    let n = 1023;
    let dense = Layout::contiguous(&[n]);
    for (scale, seed) in [(70000.0, 9), (1e-4, 10), (2.0, 11)] {
        let data: Vec<f32> = rng(seed).vec(n, -scale, scale);
        // widen(narrow(relu(x))) + x: one kernel; two when h is held.
        let run = |dev: &Device, hold: bool| {
            let x = Buffer::from_f32(dev, &data).unwrap();
            let mut held = None;
            let (y, launched) = launches(dev, || {
                let h = f32_to_f16(&unary(UnaryOp::Relu, &x, n).unwrap(), n).unwrap();
                let y = binary(BinaryOp::Add, &f16_to_f32(&h, n).unwrap(), &dense, &x, &dense).unwrap().0;
                held = hold.then_some(h);
                y
            });
            (y.to_f32().unwrap(), launched)
        };
        for hold in [false, true] {
            let what = format!("within ±{scale}, narrowed value held: {hold}");
            let ((f, nf), (p, np), (c, _)) = (run(&fused, hold), run(&plain, hold), run(&cpu, hold));
            assert_eq!((nf, np), (if hold { 2 } else { 1 }, 4), "{what}: launches fused / unfused");
            same_bits(&format!("{what}: fused vs unfused"), &f, &p, |_| false);
            same_bits(&format!("{what}: fused vs CPU"), &f, &c, |_| false);
        }
    }
}

/// A dense copy of a strided view (`copy::contiguous`: transposed, narrowed
/// at an offset, broadcast) joins the chain that reads it: `tanh` of the
/// view and `tanh'` with a copied gradient are one launch each, bit for bit
/// the unfused copy-then-kernel values. A copy that nothing elementwise
/// reads still runs as itself.
#[test]
fn copies_of_strided_views_fuse_into_their_readers() {
    use wgrad_gpu_core::ops::copy::contiguous;
    let Some((fused, plain, cpu)) = trio("copies_of_strided_views_fuse_into_their_readers") else { return };
    let data: Vec<f32> = (0..6 * 40).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
    let views = [
        ("transposed", Layout::contiguous(&[40, 6]).permute(&[1, 0]).unwrap()),
        ("narrowed at an offset", Layout::contiguous(&[6, 40]).narrow(0, 2, 3).unwrap()),
        ("broadcast", Layout { shape: [5, 40].into(), strides: [0, 1].into(), offset: 80 }),
    ];
    for (name, view) in &views {
        let n = view.numel();
        let run = |dev: &Device| {
            let x = Buffer::from_f32(dev, &data).unwrap();
            let (y, forward) = launches(dev, || unary(UnaryOp::Tanh, &contiguous(&x, view).unwrap(), n).unwrap());
            let (dx, backward) = launches(dev, || {
                let xs = contiguous(&x, view).unwrap();
                let g = contiguous(&x, view).unwrap();
                unary_grad(UnaryOp::Tanh, &xs, &y, &g, n).unwrap()
            });
            let (copy, alone) = launches(dev, || contiguous(&x, view).unwrap());
            (y.to_f32().unwrap(), dx.to_f32().unwrap(), copy.to_f32().unwrap(), [forward, backward, alone])
        };
        let (f, p, c) = (run(&fused), run(&plain), run(&cpu));
        for (what, got, want) in [("tanh", &f.0, &p.0), ("tanh'", &f.1, &p.1), ("copy", &f.2, &p.2)] {
            assert_eq!(got, want, "{name}: {what} fused against unfused");
        }
        assert_close(&format!("{name}: tanh against the twin"), &f.0, &c.0, 1e-6, 1e-6);
        assert_eq!(f.2, c.2, "{name}: the copy against the twin");
        assert_eq!(p.3, [2, 3, 1], "{name}: unfused launches");
        assert_eq!(f.3, [1, 1, 1], "{name}: fused launches");
    }
}

/// Narrow's backward (`copy::pad`): one launch where it was a fill and a
/// copy, the same words as the twin's fill-and-copy, for regions along the
/// first, a middle and the last dim (empty, at the start, at the end) and
/// strided sources; and the pads of a tensor's parts summed in one launch.
#[test]
fn pads_are_one_launch_and_fuse_into_their_sum() {
    use wgrad_gpu_core::ops::copy::pad;
    let Some((fused, plain, cpu)) = trio("pads_are_one_launch_and_fuse_into_their_sum") else { return };
    let data: Vec<f32> = (0..6 * 5 * 7).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
    let shape = [6, 5, 7];
    let transposed = Layout::contiguous(&[7, 5, 6]).permute(&[2, 1, 0]).unwrap();
    // (what, source view, dim, start): the view's shape is `shape` but for
    // `dim`. A view whose dims before (or after) `dim` do not coalesce into
    // one is read through its map over the whole output.
    let cases = [
        ("first dim, middle", Layout::contiguous(&[3, 5, 7]), 0, 2),
        ("first dim, at the start", Layout::contiguous(&[4, 5, 7]), 0, 0),
        (
            "first dim, permuted source",
            Layout::contiguous(&[5, 7, 6]).permute(&[2, 0, 1]).unwrap().narrow(0, 1, 4).unwrap(),
            0,
            2,
        ),
        ("middle dim, at the end", Layout::contiguous(&[6, 2, 7]), 1, 3),
        ("middle dim, narrowed source at an offset", Layout::contiguous(&[6, 5, 7]).narrow(1, 1, 3).unwrap(), 1, 1),
        ("middle dim, transposed source", transposed.narrow(1, 0, 3).unwrap(), 1, 2),
        ("last dim", Layout::contiguous(&[6, 5, 3]), 2, 4),
        ("last dim, transposed source", Layout::contiguous(&[3, 5, 6]).permute(&[2, 1, 0]).unwrap(), 2, 4),
        ("empty region", Layout::contiguous(&[6, 0, 7]), 1, 5),
        ("the whole tensor", Layout::contiguous(&[6, 5, 7]), 2, 0),
    ];
    for (name, view, dim, start) in &cases {
        let run = |dev: &Device| {
            let x = Buffer::from_f32(dev, &data).unwrap();
            let (y, n) = launches(dev, || pad(&x, view, &shape, *dim, *start).unwrap());
            (y.to_f32().unwrap(), n)
        };
        let (f, p, c) = (run(&fused), run(&plain), run(&cpu));
        assert_eq!(f.0, c.0, "{name}: fused against the twin");
        assert_eq!(p.0, c.0, "{name}: unfused against the twin");
        assert!(c.0.iter().any(|&v| v != 0.0) || view.numel() == 0, "{name}: the twin copies something");
        assert_eq!((f.1, p.1), (1, 1), "{name}: one launch each");
    }
    // q, k, v cut from one [6, 5, 3·7] projection: their gradients padded
    // back and summed are the three gradients side by side (a `cat`).
    let parts: Vec<Vec<f32>> = (0..3).map(|k| data.iter().map(|v| v * (k + 1) as f32 - k as f32).collect()).collect();
    let run = |dev: &Device| {
        let bufs: Vec<Buffer> = parts.iter().map(|p| Buffer::from_f32(dev, p).unwrap()).collect();
        let part = Layout::contiguous(&shape);
        let full = [6, 5, 21];
        let dense = Layout::contiguous(&full);
        launches(dev, || {
            let pads: Vec<Buffer> = (0..3).map(|k| pad(&bufs[k], &part, &full, 2, 7 * k).unwrap()).collect();
            let (s, _) = binary(BinaryOp::Add, &pads[0], &dense, &pads[1], &dense).unwrap();
            binary(BinaryOp::Add, &s, &dense, &pads[2], &dense).unwrap().0
        })
    };
    let ((f, nf), (p, np), (c, _)) = (run(&fused), run(&plain), run(&cpu));
    let (f, p, c) = (f.to_f32().unwrap(), p.to_f32().unwrap(), c.to_f32().unwrap());
    let want: Vec<f32> = (0..6 * 5)
        .flat_map(|r| (0..3).flat_map(move |k| (0..7).map(move |j| (k, r * 7 + j))))
        .map(|(k, i)| parts[k][i])
        .collect();
    assert_eq!(c, want, "the twin's sum is the parts side by side");
    assert_eq!(f, want, "fused");
    assert_eq!(p, want, "unfused");
    assert_eq!((nf, np), (1, 5), "three pads and two adds: launches fused and unfused");
    // The same parts stored transposed ([6, 7, 5] viewed as [6, 5, 7]) and
    // copied out dense first, as a permuted gradient is: each copy merges
    // into its pad, read through the copy's map.
    let transposed: Vec<Vec<f32>> = parts
        .iter()
        .map(|p| (0..6 * 7 * 5).map(|i| (i / 35, i % 35 / 5, i % 5)).map(|(a, c, b)| p[(a * 5 + b) * 7 + c]).collect())
        .collect();
    let run = |dev: &Device| {
        use wgrad_gpu_core::ops::copy::contiguous;
        let bufs: Vec<Buffer> = transposed.iter().map(|p| Buffer::from_f32(dev, p).unwrap()).collect();
        let view = Layout::contiguous(&[6, 7, 5]).permute(&[0, 2, 1]).unwrap();
        let (part, full) = (Layout::contiguous(&shape), [6, 5, 21]);
        let dense = Layout::contiguous(&full);
        launches(dev, || {
            let pads: Vec<Buffer> =
                (0..3).map(|k| pad(&contiguous(&bufs[k], &view).unwrap(), &part, &full, 2, 7 * k).unwrap()).collect();
            let (s, _) = binary(BinaryOp::Add, &pads[0], &dense, &pads[1], &dense).unwrap();
            binary(BinaryOp::Add, &s, &dense, &pads[2], &dense).unwrap().0
        })
    };
    let ((f, nf), (p, np)) = (run(&fused), run(&plain));
    assert_eq!(f.to_f32().unwrap(), want, "copies merged into pads");
    assert_eq!(p.to_f32().unwrap(), want, "copies and pads unfused");
    assert_eq!((nf, np), (1, 8), "three copies, three pads and two adds: launches fused and unfused");
    // tanh² of the first part, its view padded into `full` at `start` along
    // dim 1, the tanh held when asked: (result, launches, the held tanh).
    let tanh_square_padded = |dev: &Device, view: &Layout, full: &[usize], start: usize, hold: bool| {
        let x = Buffer::from_f32(dev, &parts[0]).unwrap();
        let n = 6 * 5 * 7;
        let mut held = None;
        let (y, count) = launches(dev, || {
            let t = unary(UnaryOp::Tanh, &x, n).unwrap();
            let s = unary(UnaryOp::Square, &t, n).unwrap();
            if hold {
                held = Some(t.clone());
            }
            pad(&s, view, full, 1, start).unwrap()
        });
        (y.to_f32().unwrap(), count, held.map(|h| h.to_f32().unwrap()))
    };
    // A computed gradient padded (an LSTM's outputs' gradient into the
    // gradient of all its states): one launch, evaluated inside the region
    // only; a held value in the tree is still stored.
    let permuted = Layout::contiguous(&shape).permute(&[1, 0, 2]).unwrap();
    for hold in [false, true] {
        let run = |dev: &Device| tanh_square_padded(dev, &permuted, &[5, 8, 7], 1, hold);
        let ((f, nf, fh), (p, np, ph), (c, _, _)) = (run(&fused), run(&plain), run(&cpu));
        assert_eq!(f, p, "tanh² padded (held: {hold}): fused against unfused");
        assert_close("tanh² padded against the twin", &f, &c, 1e-6, 1e-6);
        assert_eq!(fh, ph, "the held tanh is stored");
        assert_eq!((nf, np), (1, 3), "tanh, square and pad: launches fused and unfused (held: {hold})");
    }
    // A pad reading only part of a computed tree's output (a narrowed view
    // of it) must not leave a held value in the tree partly stored.
    let narrowed = Layout::contiguous(&shape).narrow(1, 1, 3).unwrap();
    let run = |dev: &Device| {
        let (y, _, held) = tanh_square_padded(dev, &narrowed, &[6, 4, 7], 0, true);
        (y, held.unwrap())
    };
    let ((f, fh), (p, ph)) = (run(&fused), run(&plain));
    assert_eq!(f, p, "a narrowed tree padded: fused against unfused");
    assert_eq!(fh, ph, "a narrowed tree padded: the held tanh is stored whole");
}

/// A sum or mean over a dense tensor's trailing dims evaluates the
/// elementwise tree producing its input (a prologue): bit-identical to the
/// unfused launches, close to the twin; a held intermediate is still
/// stored; short rows (one 32-thread workgroup each) keep their own launch.
#[test]
fn reductions_evaluate_their_elementwise_input() {
    use wgrad_gpu_core::ops::reduce::{reduce, ReduceOp};
    let Some((fused, plain, cpu)) = trio("reductions_evaluate_their_elementwise_input") else { return };
    // (what, shape, reduced axes, fused launches, unfused launches)
    type Case<'a> = (&'a str, &'a [usize], &'a [usize], u64, u64);
    let cases: [Case; 4] = [
        // mean((a − b)²) over 70,000 elements: 9 chunks, then their sum.
        ("a loss's mean", &[70_000], &[], 2, 4),
        ("mean over rows", &[3, 1000], &[1], 1, 3),
        ("sum over two trailing dims", &[2, 30, 40], &[1, 2], 1, 3),
        ("short rows", &[5, 100], &[1], 2, 3),
    ];
    for (name, shape, axes, want_fused, want_plain) in cases {
        let n: usize = shape.iter().product();
        let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        let b: Vec<f32> = (0..n).map(|i| ((i * 11 % 23) as f32 - 11.0) / 7.0).collect();
        let dense = Layout::contiguous(shape);
        let op = if axes.len() == 1 { ReduceOp::Mean } else { ReduceOp::Sum };
        let run = |dev: &Device, hold: bool| {
            let (xa, xb) = (Buffer::from_f32(dev, &a).unwrap(), Buffer::from_f32(dev, &b).unwrap());
            let mut held = None;
            let (y, count) = launches(dev, || {
                let (d, _) = binary(BinaryOp::Sub, &xa, &dense, &xb, &dense).unwrap();
                let sq = unary(UnaryOp::Square, &d, n).unwrap();
                if hold {
                    held = Some(sq.clone());
                }
                reduce(op, &sq, &dense, axes, false).unwrap().0
            });
            (y.to_f32().unwrap(), count, held.map(|h| h.to_f32().unwrap()))
        };
        let ((f, nf, _), (p, np, _), (c, _, _)) = (run(&fused, false), run(&plain, false), run(&cpu, false));
        assert_eq!(f, p, "{name}: fused against unfused");
        assert_close(&format!("{name}: against the twin"), &f, &c, 1e-5, 1e-5);
        assert_eq!((nf, np), (want_fused, want_plain), "{name}: launches fused and unfused");
        let ((fh, nh, sq), (ph, _, psq)) = (run(&fused, true), run(&plain, true));
        assert_eq!(fh, ph, "{name}: with the square held");
        assert_eq!(sq, psq, "{name}: the held square is stored");
        assert_eq!(nh, want_fused, "{name}: a held intermediate costs no launch");
    }
}

/// A chain longer than one kernel's uniform block holds (each affine op
/// keeps two words there) runs as a few long kernels, not as one long
/// kernel plus a launch per op past it, with the unfused values.
#[test]
fn a_chain_too_long_for_one_kernel_runs_as_a_few() {
    let Some((fused, plain, cpu)) = trio("a_chain_too_long_for_one_kernel_runs_as_a_few") else { return };
    let (n, ops) = (37, 150);
    let x = rng(5).vec(n, -2.0, 2.0);
    let chain = |dev: &Device| {
        let x = Buffer::from_f32(dev, &x).unwrap();
        launches(dev, || {
            (0..ops).fold(x, |y, k| {
                let op = UnaryOp::Affine { scale: 1.0 + 0.001 * k as f32, shift: 0.01 * (k % 7) as f32 - 0.03 };
                unary(op, &y, n).unwrap()
            })
        })
    };
    let ((yf, nf), (yp, np), (yc, _)) = (chain(&fused), chain(&plain), chain(&cpu));
    assert_eq!(np, ops as u64, "unfused: one launch per op");
    // 31 affine ops fill a kernel's 64-word block (2 words each, plus the
    // element count): 150 ops need at least 5 kernels.
    assert!((5..=8).contains(&nf), "fused: {nf} launches for {ops} ops");
    let (f, p, c) = (yf.to_f32().unwrap(), yp.to_f32().unwrap(), yc.to_f32().unwrap());
    assert_close("long chain: fused vs unfused", &f[..n], &p[..n], 1e-6, 1e-6);
    assert_close("long chain: fused vs CPU", &f[..n], &c[..n], 2e-5, 2e-5);
}
