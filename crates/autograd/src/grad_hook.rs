//! A hook called as each leaf's gradient is finished by a backward pass
//! (PyTorch's `register_post_accumulate_grad_hook`): data-parallel training
//! starts averaging the gradients of the last layers while backward is
//! still computing those of the first.

use std::cell::RefCell;

use crate::Tensor;

/// What [`GradientHook::install`] calls with each leaf.
pub type LeafHook = Box<dyn FnMut(&Tensor)>;

thread_local! {
    static HOOK: RefCell<Option<LeafHook>> = const { RefCell::new(None) };
}

/// The installed hook of this thread: while it lives, every backward pass
/// run on this thread calls it with each leaf (parameter) right after the
/// pass accumulated that leaf's gradient into [`Tensor::grad`]. The pass
/// reaches each leaf once, after every gradient flowing into it, so the
/// gradient the hook reads is final for this pass (with gradient
/// accumulation: the sum so far). Dropping the guard puts back the hook it
/// replaced.
#[must_use = "the hook is removed when the guard drops"]
pub struct GradientHook {
    previous: Option<LeafHook>,
}

impl GradientHook {
    /// Installs `hook` for this thread's backward passes.
    pub fn install(hook: impl FnMut(&Tensor) + 'static) -> GradientHook {
        let previous = HOOK.with(|h| h.borrow_mut().replace(Box::new(hook)));
        GradientHook { previous }
    }
}

impl Drop for GradientHook {
    fn drop(&mut self) {
        let previous = self.previous.take();
        HOOK.with(|h| *h.borrow_mut() = previous);
    }
}

/// Calls the installed hook, if any, with a leaf whose gradient was just
/// accumulated. Taken out of its slot for the call, so that a hook that
/// records ops (a copy to the host) cannot reach itself.
pub(crate) fn leaf_finished(leaf: &Tensor) {
    let Some(mut hook) = HOOK.with(|h| h.borrow_mut().take()) else { return };
    hook(leaf);
    HOOK.with(|h| {
        let mut slot = h.borrow_mut();
        if slot.is_none() {
            *slot = Some(hook);
        }
    });
}
