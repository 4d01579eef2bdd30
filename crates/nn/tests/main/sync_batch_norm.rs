//! SyncBatchNorm with one replica (a sum over replicas that is the
//! identity) is batch norm: the same output, gradients and running
//! statistics as the fused kernels, in f32 and from f16 input.

use std::sync::Arc;

use wgrad_autograd::{DType, Device, Tensor};
use wgrad_nn::{BatchNorm1d, BatchNorm2d, BatchStatsSync, Init, Module, ModuleExt, SyncBatchNorm};

/// One replica: the sum over replicas is the value itself, and so is its gradient.
struct Alone;

impl BatchStatsSync for Alone {
    fn all_reduce_sum(&self, local: &Tensor) -> Tensor {
        Tensor::custom_op("alone", &[local], &local.detach(), |g| vec![Some(g.clone())])
    }
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0, f32::max);
    assert!(worst < tol, "{what}: differs by {worst}");
}

fn compare<M: Module>(dev: &Device, build: impl Fn() -> M, shape: &[usize], dtype: DType, tol: f32) {
    let (plain, synced) = (build(), build());
    let x = Tensor::randn(shape, 5, dev).mul_scalar(3.0).add_scalar(1.5).to_dtype(dtype);
    let (xa, xb) = (x.detach().float().requires_grad_(), x.detach().float().requires_grad_());
    let upstream = Tensor::randn(shape, 9, dev);
    let ya = plain.forward(&xa.to_dtype(dtype)).float();
    let yb = {
        let _sync = SyncBatchNorm::new(Arc::new(Alone));
        synced.forward(&xb.to_dtype(dtype)).float()
    };
    close(&yb.to_vec(), &ya.to_vec(), tol, "output");
    (&ya * &upstream).sum_all().backward();
    (&yb * &upstream).sum_all().backward();
    close(&xb.grad().unwrap().to_vec(), &xa.grad().unwrap().to_vec(), tol, "input gradient");
    for ((name, p), q) in synced.named_parameters().iter().zip(plain.parameters()) {
        close(&p.grad().unwrap().to_vec(), &q.grad().unwrap().to_vec(), tol, name);
    }
    for ((name, b), c) in synced.named_buffers().iter().zip(plain.named_buffers()) {
        close(&b.to_vec(), &c.1.to_vec(), tol, name);
    }
}

#[test]
fn one_replica_is_batch_norm() {
    let dev = Device::cpu();
    compare(&dev, || BatchNorm2d::builder(3).build(&mut Init::new(&dev, 0)), &[4, 3, 5, 2], DType::F32, 1e-4);
    compare(&dev, || BatchNorm1d::builder(6).momentum(0.3).build(&mut Init::new(&dev, 0)), &[7, 6], DType::F32, 1e-4);
    compare(
        &dev,
        || BatchNorm1d::builder(2).affine(false).build(&mut Init::new(&dev, 0)),
        &[3, 2, 4],
        DType::F32,
        1e-4,
    );
    compare(&dev, || BatchNorm2d::builder(3).build(&mut Init::new(&dev, 0)), &[4, 3, 3, 3], DType::F16, 2e-2);
}

#[test]
fn evaluation_ignores_the_synchronisation() {
    let dev = Device::cpu();
    let mut bn = BatchNorm2d::builder(2).build(&mut Init::new(&dev, 0));
    bn.eval();
    let x = Tensor::randn(&[2, 2, 3, 3], 1, &dev);
    let plain = bn.forward(&x).to_vec();
    let _sync = SyncBatchNorm::new(Arc::new(Alone));
    assert_eq!(bn.forward(&x).to_vec(), plain);
}

#[test]
fn its_gradient_matches_finite_differences() {
    use wgrad_autograd::gradcheck::{check_gradients, GradCheck};
    let dev = Device::cpu();
    let bn = BatchNorm2d::builder(2).build(&mut Init::new(&dev, 0));
    let x = Tensor::randn(&[3, 2, 2, 2], 4, &dev);
    let opts = GradCheck { eps: 1e-3, atol: 2e-2, rtol: 2e-2 };
    check_gradients(
        |t| {
            let _sync = SyncBatchNorm::new(Arc::new(Alone));
            bn.forward(&t[0])
        },
        &[x],
        opts,
    )
    .unwrap();
}
