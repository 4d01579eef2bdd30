//! The page's interface (`wasm-bindgen`): a [`WebTrainer`] whose calls
//! return promises, so the page's one thread is never held.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use wgrad_autograd::Device;

use crate::Session;

/// Panics print their message to the console instead of "unreachable".
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Training in the page; every method that reads the GPU returns a promise.
#[wasm_bindgen]
pub struct WebTrainer {
    session: Rc<RefCell<Session>>,
    adapter: String,
}

/// Opens `device` (`"gpu"`: the page's WebGPU adapter; `"cpu"`: wgrad's
/// CPU backend in WebAssembly) and builds a [`Session`] over the IDX bytes.
#[wasm_bindgen(js_name = createTrainer)]
pub async fn create_trainer(
    device: String,
    seed: u64,
    batch: usize,
    lr: f32,
    images: Vec<u8>,
    labels: Vec<u8>,
) -> Result<WebTrainer, JsError> {
    let dev = match device.as_str() {
        "gpu" => Device::gpu_async().await.map_err(|e| JsError::new(&e.to_string()))?,
        "cpu" => Device::cpu(),
        other => return Err(JsError::new(&format!("unknown device {other:?} (gpu or cpu)"))),
    };
    // Browsers may keep the adapter's name to themselves.
    let info = dev.info();
    let adapter = match info.name.as_str() {
        "" => format!("an unnamed {} adapter ({})", info.device_type, info.backend),
        name => name.to_string(),
    };
    let session = Session::new(&dev, seed, batch, lr, &images, &labels).map_err(|e| JsError::new(&e))?;
    Ok(WebTrainer { session: Rc::new(RefCell::new(session)), adapter })
}

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

#[wasm_bindgen]
impl WebTrainer {
    /// The adapter's (or backend's) name.
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.session.borrow().steps()
    }

    /// Batches in one pass over the data.
    #[wasm_bindgen(js_name = batchesPerEpoch)]
    pub fn batches_per_epoch(&self) -> usize {
        self.session.borrow().batches_per_epoch()
    }

    /// One training step; resolves to its loss.
    pub fn step(&self) -> Promise {
        let pending = self.session.borrow_mut().begin_step();
        future_to_promise(async move {
            let loss = pending.map_err(js_err)?.await.map_err(js_err)?;
            Ok(JsValue::from_f64(f64::from(loss[0])))
        })
    }

    /// Class probabilities (a `Float32Array` of 10 per image) for 28x28
    /// images given as pixels in [0, 1].
    pub fn classify(&self, pixels: Vec<f32>) -> Promise {
        let pending = self.session.borrow_mut().classify(&pixels);
        future_to_promise(async move {
            let probs = pending.map_err(js_err)?.await.map_err(js_err)?;
            Ok(js_sys::Float32Array::from(&probs[..]).into())
        })
    }

    /// The trained weights as a safetensors file (a `Uint8Array`) with the
    /// PyTorch names the native examples write.
    pub fn weights(&self) -> Promise {
        let state = self.session.borrow().state();
        future_to_promise(async move {
            let mut tensors = Vec::with_capacity(state.len());
            for (name, shape, pending) in state {
                tensors.push((name, shape, pending.await.map_err(js_err)?));
            }
            let bytes = crate::safetensors_bytes(&tensors).map_err(js_err)?;
            Ok(js_sys::Uint8Array::from(&bytes[..]).into())
        })
    }
}
