//! The elementwise fuser: fused results equal unfused ones and the CPU
//! twin, chains become one launch, and the hazards (shared intermediates,
//! intermediates the user reads, in-place writes) keep values right.

mod common;
use common::*;
use wgrad_gpu_core::ops::binary::{binary, where_select, BinaryOp};
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
