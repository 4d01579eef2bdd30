//! [`Tensor::custom_op`]: a differentiable function whose backward the
//! caller writes (PyTorch's `torch.autograd.Function`), for work autograd
//! cannot see through: a value summed across processes, a host computation.

use crate::graph::Saves;
use crate::trace::TraceOp;
use crate::Tensor;

impl Tensor {
    /// A tensor holding `value` (computed by the caller, from `inputs` or
    /// anything else; its own history is ignored) whose gradient flows to
    /// `inputs` through `backward`: given the gradient of the result, it
    /// returns one gradient per input (`None` for an input that gets none),
    /// each shaped like its input.
    ///
    /// `backward` runs during a backward pass, with autograd recording
    /// nothing; it captures what it needs from the forward. Inputs that do
    /// not require a gradient are skipped, and with none requiring one the
    /// result is a constant.
    ///
    /// ```
    /// use wgrad_autograd::{Device, Tensor};
    /// let dev = Device::cpu();
    /// let x = Tensor::from_vec(&[1.0, 2.0], &[2], &dev).requires_grad_();
    /// // 3x, with its gradient written by hand.
    /// let y = Tensor::custom_op("triple", &[&x], &x.detach().mul_scalar(3.0), |g| vec![Some(g.mul_scalar(3.0))]);
    /// y.sum_all().backward();
    /// assert_eq!(x.grad().unwrap().to_vec(), vec![3.0, 3.0]);
    /// ```
    pub fn custom_op(
        name: &'static str,
        inputs: &[&Tensor],
        value: &Tensor,
        backward: impl Fn(&Tensor) -> Vec<Option<Tensor>> + Send + Sync + 'static,
    ) -> Tensor {
        let scope = crate::trace::scope();
        let (buffer, layout) = value.buffer_and_layout();
        let y = Tensor::from_op_saving(name, buffer, layout, value.dtype(), inputs, Saves::NOTHING, move |g, _, _| {
            backward(g)
        });
        scope.output(|| TraceOp::Opaque(name), inputs, y)
    }
}
