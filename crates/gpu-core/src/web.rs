//! What differs in the browser (wasm32 with WebGPU): one thread, which
//! must return to the page before the GPU answers anything. A call that
//! would wait there is an error that names its asynchronous form
//! ([`Error::WouldBlock`]), never a hang; the GPU is opened asynchronously
//! from the page's one adapter.

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

/// The page's WebGPU adapter (the browser offers one, high-performance
/// when asked).
#[cfg(target_arch = "wasm32")]
pub(crate) async fn browser_adapter() -> Result<wgpu::Adapter> {
    let instance = crate::select::instance();
    let options =
        wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() };
    instance
        .request_adapter(&options)
        .await
        .map_err(|e| Error::NoAdapter { wanted: "WebGPU (navigator.gpu)".into(), available: format!("none: {e}") })
}
