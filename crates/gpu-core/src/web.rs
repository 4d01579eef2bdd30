//! What differs in the browser (wasm32 with WebGPU): one thread, which
//! must return to the page before the GPU answers anything. A call that
//! would wait there is an error that names its asynchronous form
//! ([`Error::WouldBlock`](crate::Error::WouldBlock)), never a hang. (The GPU is opened
//! asynchronously from the page's one adapter: `select::browser_adapter`.)

#[cfg(target_arch = "wasm32")]
use crate::Error;
use crate::Result;

/// `Ok` natively; in the browser, the error that `call` would block and
/// `instead` is the form to use.
#[cfg_attr(not(target_arch = "wasm32"), allow(unused_variables))]
pub(crate) fn refuse_blocking(call: &'static str, instead: &'static str) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    return Err(Error::WouldBlock { call, instead });
    #[cfg(not(target_arch = "wasm32"))]
    Ok(())
}
