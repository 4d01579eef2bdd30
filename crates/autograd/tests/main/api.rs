//! The Tensor API as a PyTorch user expects it, on every backend.

use crate::common;
use common::backends;
use wgrad_autograd::{no_grad, DType, Tensor};

#[test]
fn creation_and_readback() {
    for dev in backends("creation_and_readback") {
        let t = Tensor::from_vec(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &dev);
        assert_eq!((t.shape().to_vec(), t.dims(), t.numel(), t.dtype()), (vec![2, 3], 2, 6, DType::F32));
        assert_eq!(t.size(-1), 3);
        assert_eq!(t.t().to_vec(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0], "a transposed view reads in its own order");
        assert_eq!(Tensor::zeros(&[2], &dev).to_vec(), vec![0.0, 0.0]);
        assert_eq!(Tensor::ones(&[1], &dev).item(), 1.0);
        assert_eq!(Tensor::full(&[2, 2], 7.5, &dev).sum_all().item(), 30.0);
        assert_eq!(Tensor::arange(0.0, 2.0, 0.5, &dev).to_vec(), vec![0.0, 0.5, 1.0, 1.5]);
        assert_eq!(Tensor::scalar(3.0, &dev).shape(), Vec::<usize>::new());
        let h: Vec<half::f16> = [0.5f32, -2.0, 65504.0].iter().map(|&v| half::f16::from_f32(v)).collect();
        let t16 = Tensor::from_f16(&h, &[3], &dev);
        assert_eq!(t16.dtype(), DType::F16);
        assert_eq!(t16.to_dtype(DType::F32).to_vec(), vec![0.5, -2.0, 65504.0]);
        assert_eq!(
            Tensor::from_vec(&[0.1, 3.0], &[2], &dev).to_vec_f16(),
            vec![half::f16::from_f32(0.1), half::f16::from_f32(3.0)]
        );
        let idx = Tensor::from_u32(&[2, 0], &[2], &dev);
        assert_eq!(idx.to_vec_u32(), vec![2, 0]);
        assert_eq!(idx.one_hot(3).to_vec(), vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(t.argmax(1, false).to_vec_u32(), vec![2, 2]);
        assert!(Tensor::try_from_vec(&[1.0], &[2], &dev).is_err());
    }
}

#[test]
fn seeded_random_tensors_agree_across_backends() {
    let devs = backends("seeded_random_tensors_agree_across_backends");
    let reference = Tensor::rand(&[33], 42, &devs[0]).to_vec();
    assert!(reference.iter().all(|v| (0.0..1.0).contains(v)));
    assert_ne!(reference, Tensor::rand(&[33], 43, &devs[0]).to_vec(), "seeds differ");
    for dev in &devs[1..] {
        assert_eq!(Tensor::rand(&[33], 42, dev).to_vec(), reference, "same seed, same numbers on {}", dev.name());
        let (a, b) = (Tensor::randn(&[9], 5, dev).to_vec(), Tensor::randn(&[9], 5, &devs[0]).to_vec());
        wgrad_gpu_core::testing::assert_close("randn", &a, &b, 1e-5, 1e-5);
    }
    let mut g = wgrad_autograd::Generator::new(1);
    let (x, y) = (g.uniform(&[4], 0.0, 1.0, &devs[0]), g.uniform(&[4], 0.0, 1.0, &devs[0]));
    assert_ne!(x.to_vec(), y.to_vec(), "a generator advances");
}

#[test]
fn gradients_accumulate_until_zero_grad() {
    for dev in backends("gradients_accumulate_until_zero_grad") {
        let x = Tensor::from_vec(&[1.0, 2.0], &[2], &dev).requires_grad_();
        (&x * &x).sum_all().backward();
        (&x * 3.0).sum_all().backward();
        assert_eq!(x.grad().unwrap().to_vec(), vec![5.0, 7.0], "2x + 3 accumulated");
        x.zero_grad();
        assert!(x.grad().is_none());
        (&x * 3.0).sum_all().backward();
        assert_eq!(x.grad().unwrap().to_vec(), vec![3.0, 3.0]);
    }
}

#[test]
fn a_tensor_used_twice_gets_both_gradients() {
    for dev in backends("a_tensor_used_twice_gets_both_gradients") {
        let x = Tensor::from_vec(&[3.0], &[1], &dev).requires_grad_();
        let y = &x * &x; // shared input
        let z = (&y + &x) * &y; // y used twice: z = x^4 + x^3
        z.sum_all().backward();
        assert_eq!(x.grad().unwrap().item(), 4.0 * 27.0 + 3.0 * 9.0);
    }
}

#[test]
fn no_grad_and_detach_cut_the_graph() {
    for dev in backends("no_grad_and_detach_cut_the_graph") {
        let x = Tensor::from_vec(&[2.0], &[1], &dev).requires_grad_();
        let y = no_grad(|| &x * 2.0);
        assert!(!y.requires_grad() && wgrad_autograd::is_grad_enabled());
        let d = (&x * 2.0).detach();
        assert!(!d.requires_grad());
        let z = &x * &d; // d is a constant: dz/dx = d
        z.sum_all().backward();
        assert_eq!(x.grad().unwrap().item(), 4.0);
        assert!(!(&d * 2.0).requires_grad(), "ops on constants record nothing");
    }
}

#[test]
fn retain_graph_allows_a_second_backward() {
    for dev in backends("retain_graph_allows_a_second_backward") {
        let x = Tensor::from_vec(&[1.0, -1.0], &[2], &dev).requires_grad_();
        let loss = x.exp().sum_all();
        loss.backward_retain_graph();
        loss.backward();
        let e = std::f32::consts::E;
        wgrad_gpu_core::testing::assert_close("twice", &x.grad().unwrap().to_vec(), &[2.0 * e, 2.0 / e], 1e-6, 1e-6);
    }
}

#[test]
#[should_panic(expected = "backward through the graph a second time")]
fn a_second_backward_without_retain_graph_panics_clearly() {
    let dev = wgrad_autograd::Device::cpu();
    let x = Tensor::from_vec(&[1.0], &[1], &dev).requires_grad_();
    let loss = x.exp().sum_all();
    loss.backward();
    loss.backward();
}

#[test]
fn backward_with_a_gradient_for_non_scalars() {
    for dev in backends("backward_with_a_gradient_for_non_scalars") {
        let x = Tensor::from_vec(&[1.0, 2.0, 3.0], &[3], &dev).requires_grad_();
        let y = &x * &x;
        y.backward_with(&Tensor::from_vec(&[1.0, 0.0, -1.0], &[3], &dev));
        assert_eq!(x.grad().unwrap().to_vec(), vec![2.0, 0.0, -6.0]);
    }
}

#[test]
#[should_panic(expected = "add: shapes [2, 3] and [3, 2] cannot be broadcast together")]
fn shape_errors_name_the_op_and_both_shapes() {
    let dev = wgrad_autograd::Device::cpu();
    let _ = Tensor::zeros(&[2, 3], &dev) + Tensor::zeros(&[3, 2], &dev);
}

/// The message of the panic `f` raises.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("expected a panic");
    payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string())).unwrap()
}

#[test]
fn error_messages_say_each_thing_once() {
    let dev = wgrad_autograd::Device::cpu();
    assert_eq!(
        panic_message(|| drop(Tensor::from_vec(&[1.0, 2.0, 3.0], &[2, 2], &dev))),
        "from_vec: 3 values do not fill shape [2, 2] (4 elements)"
    );
    let (a, b) = (Tensor::zeros(&[3, 4], &dev), Tensor::zeros(&[5, 6], &dev));
    assert_eq!(
        a.try_matmul(&b).unwrap_err().to_string(),
        "matmul: inner dimensions differ (4 vs 5) for shapes [3, 4] and [5, 6]"
    );
    // A 1-D operand is reshaped: the caller's shapes are added, once.
    assert_eq!(
        Tensor::zeros(&[4], &dev).try_matmul(&b).unwrap_err().to_string(),
        "matmul: inner dimensions differ (4 vs 5) for shapes [1, 4] and [5, 6] (operands of shapes [4] and [5, 6])"
    );
    assert_eq!(
        panic_message(|| drop(a.matmul(&b))),
        "matmul: inner dimensions differ (4 vs 5) for shapes [3, 4] and [5, 6]"
    );
}

#[test]
fn try_forms_return_errors() {
    let dev = wgrad_autograd::Device::cpu();
    let a = Tensor::zeros(&[2, 3], &dev);
    let e = a.try_matmul(&Tensor::zeros(&[2, 3], &dev)).unwrap_err().to_string();
    assert!(e.contains("matmul") && e.contains("[2, 3]"), "{e}");
    let e = a.try_reshape(&[4]).unwrap_err().to_string();
    assert!(e.contains("reshape") && e.contains("[2, 3]") && e.contains("[4]"), "{e}");
    let e = a.try_binary(wgrad_autograd::BinaryOp::Mul, &Tensor::zeros(&[4], &dev)).unwrap_err().to_string();
    assert!(e.contains("mul") && e.contains("[4]"), "{e}");
    assert_eq!(a.try_reshape(&[3, 2]).unwrap().shape(), vec![3, 2]);
}

#[test]
fn operators_on_values_references_and_scalars() {
    for dev in backends("operators_on_values_references_and_scalars") {
        let a = Tensor::from_vec(&[1.0, 2.0], &[2], &dev);
        let b = Tensor::from_vec(&[4.0, 8.0], &[2], &dev);
        assert_eq!((&a + &b).to_vec(), vec![5.0, 10.0]);
        assert_eq!((a.clone() - b.clone()).to_vec(), vec![-3.0, -6.0]);
        assert_eq!((&a * b.clone()).to_vec(), vec![4.0, 16.0]);
        assert_eq!((b.clone() / &a).to_vec(), vec![4.0, 4.0]);
        assert_eq!((&a * 2.0 + 1.0).to_vec(), vec![3.0, 5.0]);
        assert_eq!((1.0 - &a).to_vec(), vec![0.0, -1.0]);
        assert_eq!((8.0 / &b).to_vec(), vec![2.0, 1.0]);
        assert_eq!((-&a).to_vec(), vec![-1.0, -2.0]);
        assert_eq!(a.powf(2.0).to_vec(), vec![1.0, 4.0]);
        assert_eq!(Tensor::where_cond(&a.gt(&Tensor::scalar(1.5, &dev)), &a, &b).to_vec(), vec![4.0, 2.0]);
        assert_eq!(a.clamp(1.5, 3.0).to_vec(), vec![1.5, 2.0]);
    }
}

#[test]
fn views_share_data_and_copies_do_not() {
    for dev in backends("views_share_data_and_copies_do_not") {
        let x = Tensor::arange(0.0, 12.0, 1.0, &dev).reshape(&[3, 4]);
        assert_eq!(x.narrow(1, 1, 2).to_vec(), vec![1.0, 2.0, 5.0, 6.0, 9.0, 10.0]);
        assert_eq!(x.slice(0, 1..3).sum_all().item(), 4.0 + 5.0 + 6.0 + 7.0 + 8.0 + 9.0 + 10.0 + 11.0);
        assert_eq!(x.permute(&[1, 0]).reshape(&[12]).to_vec()[..4], [0.0, 4.0, 8.0, 1.0]);
        assert_eq!(Tensor::stack(&[&x.narrow(0, 0, 1), &x.narrow(0, 2, 1)], 0).shape(), vec![2, 1, 4]);
        assert_eq!(x.flatten(0, -1).shape(), vec![12]);
        assert_eq!(x.slice_step(1, 1, 2).to_vec(), vec![1.0, 3.0, 5.0, 7.0, 9.0, 11.0]);
        assert_eq!(x.slice_step(0, 0, 2).slice_step(1, 0, 3).to_vec(), vec![0.0, 3.0, 8.0, 11.0]);

        assert_eq!(x.unsqueeze(-1).shape(), vec![3, 4, 1]);
        assert_eq!(x.index_select(0, &Tensor::from_u32(&[2, 2], &[2], &dev)).to_vec()[..4], [8.0, 9.0, 10.0, 11.0]);
        let g = x.gather(1, &Tensor::from_u32(&[3, 0, 1], &[3, 1], &dev));
        assert_eq!(g.to_vec(), vec![3.0, 4.0, 9.0]);
    }
}

#[test]
fn assign_updates_a_parameter_in_place() {
    for dev in backends("assign_updates_a_parameter_in_place") {
        let w = Tensor::from_vec(&[1.0, 2.0], &[2], &dev).requires_grad_();
        let alias = w.clone();
        no_grad(|| w.assign(&(&w * 10.0)));
        assert_eq!(alias.to_vec(), vec![10.0, 20.0], "every handle sees the update");
        assert!(alias.requires_grad() && alias.is_leaf());
    }
}

/// `deep_copy` gives the elements in a new contiguous buffer, same dtype,
/// cut from the graph: for F32 views, U32, word-aligned F16 (copied as
/// words) and F16 views that are not (odd counts, odd offsets).
#[test]
fn deep_copies_own_their_data() {
    for dev in backends("deep_copies_own_their_data") {
        let x = Tensor::arange(0.0, 15.0, 1.0, &dev).reshape(&[3, 5]).requires_grad_();
        let h = x.detach().to_dtype(DType::F16);
        let cases = [
            ("f32 transposed", x.t()),
            ("f32 dense", x.clone()),
            ("u32", Tensor::from_u32(&[7, 8, 9], &[3], &dev)),
            ("f16 dense, odd count", h.clone()),
            ("f16 even count at an odd offset", h.reshape(&[15]).narrow(0, 1, 4)),
            ("f16 even count at an even offset", h.reshape(&[15]).narrow(0, 2, 6)),
            ("f16 transposed", h.t()),
        ];
        for (what, t) in cases {
            let c = t.deep_copy();
            assert_eq!((c.dtype(), c.shape()), (t.dtype(), t.shape()), "{what}");
            assert_eq!(c.to_vec(), t.to_vec(), "{what} on {}", dev.name());
            assert!(!c.requires_grad(), "{what}: cut from the graph");
            let ((cb, cl), (tb, _)) = (c.buffer_and_layout(), t.buffer_and_layout());
            assert!(!cb.same_as(&tb), "{what}: a new buffer");
            assert!(cl.is_contiguous() && cl.offset == 0, "{what}: contiguous");
        }
    }
}
