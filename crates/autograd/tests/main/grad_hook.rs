//! `GradientHook`: called once per leaf, after backward accumulated its
//! final gradient, on the thread that installed it, until the guard drops.

use std::cell::RefCell;
use std::rc::Rc;

use wgrad_autograd::{Device, GradientHook, Tensor};

#[test]
fn each_leaf_is_seen_once_with_its_final_gradient() {
    let dev = Device::cpu();
    let a = Tensor::from_vec(&[1.0, 2.0], &[2], &dev).requires_grad_();
    let b = Tensor::from_vec(&[3.0, -1.0], &[2], &dev).requires_grad_();
    // `a` reaches the loss along two paths: its gradient sums both.
    let loss = (&(&a * &b) + &a.mul_scalar(2.0)).sum_all();
    let seen = Rc::new(RefCell::new(Vec::new()));
    {
        let log = seen.clone();
        let _hook =
            GradientHook::install(move |leaf| log.borrow_mut().push((leaf.id(), leaf.grad().unwrap().to_vec())));
        loss.backward();
    }
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let of = |t: &Tensor| seen.iter().find(|(id, _)| *id == t.id()).map(|(_, g)| g.clone()).unwrap();
    assert_eq!(of(&a), vec![5.0, 1.0]); // b + 2
    assert_eq!(of(&b), vec![1.0, 2.0]); // a
}

#[test]
fn the_hook_ends_with_its_guard_and_the_previous_one_returns() {
    let dev = Device::cpu();
    let calls = Rc::new(RefCell::new((0, 0)));
    let x = Tensor::from_vec(&[1.0], &[1], &dev).requires_grad_();
    let (outer, inner) = (calls.clone(), calls.clone());
    let _outer = GradientHook::install(move |_| outer.borrow_mut().0 += 1);
    {
        let _inner = GradientHook::install(move |_| inner.borrow_mut().1 += 1);
        x.mul_scalar(3.0).sum_all().backward();
    }
    x.mul_scalar(3.0).sum_all().backward();
    drop(_outer);
    x.mul_scalar(3.0).sum_all().backward();
    assert_eq!(*calls.borrow(), (1, 1));
}
