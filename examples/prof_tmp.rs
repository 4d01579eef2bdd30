use wgrad::gpu_core::ops::binary::{binary, BinaryOp};
use wgrad::prelude::*;
fn main() {
    let d = Device::from_env().unwrap();
    let a = Buffer::from_f32(&d, &[1., 2., 3., 4., 5., 6., 7.]).unwrap();
    let l = Layout::contiguous(&[7]);
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul] {
        let (z, _) = binary(op, &a, &l, &a, &l).unwrap();
        println!("{op:?} {:?}", z.to_f32().unwrap());
    }
    let l2 = Layout::contiguous(&[7, 1]).broadcast_to(&[7, 2]).unwrap();
    let (z, _) = binary(BinaryOp::Add, &a, &l2, &a, &l2).unwrap();
    println!("rank2 {:?}", z.to_f32().unwrap());
}
