//! `+ - * /` between tensors (owned or borrowed) and with f32 scalars, and unary `-`.

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::Tensor;

/// Implements one operator for every owned/borrowed combination of tensors,
/// and for a scalar on either side.
macro_rules! tensor_op {
    ($trait:ident, $method:ident, $tensor_fn:ident, |$x:ident, $s:ident| $with_scalar:expr, |$s2:ident, $y:ident| $scalar_with:expr) => {
        impl $trait<&Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                self.$tensor_fn(rhs)
            }
        }
        impl $trait<Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                (&self).$tensor_fn(&rhs)
            }
        }
        impl $trait<&Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                (&self).$tensor_fn(rhs)
            }
        }
        impl $trait<Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                self.$tensor_fn(&rhs)
            }
        }
        impl $trait<f32> for &Tensor {
            type Output = Tensor;
            fn $method(self, $s: f32) -> Tensor {
                let $x = self;
                $with_scalar
            }
        }
        impl $trait<f32> for Tensor {
            type Output = Tensor;
            fn $method(self, $s: f32) -> Tensor {
                let $x = &self;
                $with_scalar
            }
        }
        impl $trait<&Tensor> for f32 {
            type Output = Tensor;
            fn $method(self, $y: &Tensor) -> Tensor {
                let $s2 = self;
                $scalar_with
            }
        }
        impl $trait<Tensor> for f32 {
            type Output = Tensor;
            fn $method(self, $y: Tensor) -> Tensor {
                let $s2 = self;
                let $y = &$y;
                $scalar_with
            }
        }
    };
}

tensor_op!(Add, add, add, |x, s| x.affine(1.0, s), |s, y| y.affine(1.0, s));
tensor_op!(Sub, sub, sub, |x, s| x.affine(1.0, -s), |s, y| y.affine(-1.0, s));
tensor_op!(Mul, mul, mul, |x, s| x.affine(s, 0.0), |s, y| y.affine(s, 0.0));
tensor_op!(Div, div, div, |x, s| x.affine(1.0 / s, 0.0), |s, y| y.reciprocal().affine(s, 0.0));

impl Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

impl Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(&self)
    }
}
