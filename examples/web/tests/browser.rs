//! The demo page in headless Chromium: served from 127.0.0.1, it trains
//! the MNIST CNN for a few steps (on the page's WebGPU adapter, and on
//! wgrad's CPU backend compiled to WebAssembly) and posts its losses back;
//! they must match the same [`Session`] run natively on the CPU backend.
//!
//! Needs the page built (`bash examples/web/build.sh`) and Chromium
//! (`chromium`, or the binary in `WGRAD_CHROMIUM`). `.ci/run` installs both
//! and sets `WGRAD_REQUIRE_BROWSER=1`, under which anything missing fails
//! the test; without it a missing piece is a loud SKIPPED.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use wgrad_autograd::Device;
use wgrad_web::Session;

/// Steps each page trains (the "N steps with fixed seeds").
const STEPS: usize = 50;
const SEED: u64 = 3;
/// The native example's batch. (Smaller batches make smaller, noisier
/// losses late in the run, whose relative error grows: batch 16 reached
/// 1.2e-4 at step 45 on SwiftShader.)
const BATCH: usize = 32;
const LR: f32 = 1e-3;

fn www() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("www")
}

fn dataset(file: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mnist-10k").join(file);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Chromium and the built page, or `None` (after a loud line) when either
/// is missing and CI does not require them.
fn browser() -> Option<String> {
    let required = wgrad_autograd::env::switch("WGRAD_REQUIRE_BROWSER", false);
    let chromium = std::env::var("WGRAD_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let missing = if Command::new(&chromium).arg("--version").output().is_err() {
        Some(format!("{chromium} does not run (install Debian's chromium, or set WGRAD_CHROMIUM)"))
    } else if !www().join("pkg/wgrad_web.js").exists() || !www().join("data/train-images-idx3-ubyte.gz").exists() {
        Some("the page is not built (bash examples/web/build.sh)".into())
    } else {
        None
    };
    match missing {
        Some(why) => {
            assert!(!required, "WGRAD_REQUIRE_BROWSER=1 but {why}");
            eprintln!("\n*** SKIPPED browser test: {why} ***\n");
            None
        }
        None => Some(chromium),
    }
}

/// Serves `www` (and takes the page's POST /result) on 127.0.0.1 from a
/// thread; returns the port and the results as they arrive.
fn serve() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &tx);
            });
        }
    });
    (port, rx)
}

fn answer(stream: TcpStream, results: &mpsc::Sender<String>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = path.split('?').next().unwrap_or("/");
    let mut out = stream;
    if method == "POST" && path == "/result" {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let _ = results.send(String::from_utf8_lossy(&body).into_owned());
        return out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
    let rel = if path == "/" { "index.html" } else { path.trim_start_matches('/') };
    let file = www().join(rel);
    let body = (!rel.contains("..")).then(|| std::fs::read(&file).ok()).flatten();
    let Some(body) = body else {
        return out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(&body)
}

/// Kills the browser when the test ends, however it ends.
struct Browser(Child, PathBuf);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// Opens the page with `query` in headless Chromium and returns what it posted.
fn run_page(chromium: &str, query: &str) -> Json {
    let (port, results) = serve();
    let profile = std::env::temp_dir().join(format!("wgrad-chromium-{}-{port}", std::process::id()));
    let url = format!("http://127.0.0.1:{port}/index.html?{query}");
    // WebGPU in headless Chromium on a machine without a GPU: Vulkan
    // through SwiftShader or lavapipe. The network flags keep Chromium from
    // calling out (the CI machine has no network).
    let child = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--enable-unsafe-webgpu",
            "--enable-features=Vulkan",
            "--use-vulkan=native",
            "--use-angle=vulkan",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{chromium}: {e}"));
    let _browser = Browser(child, profile);
    let started = Instant::now();
    let body = results
        .recv_timeout(Duration::from_secs(600))
        .unwrap_or_else(|_| panic!("{url}: no result after {:.0?}", started.elapsed()));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url} posted `{body}`: {e}"))
}

/// The losses of the same steps run natively on the CPU backend.
fn native_losses() -> Vec<f32> {
    let (images, labels) = (dataset("train-images-idx3-ubyte.gz"), dataset("train-labels-idx1-ubyte.gz"));
    let mut s = Session::new(&Device::cpu(), SEED, BATCH, LR, &images, &labels).unwrap();
    (0..STEPS).map(|_| s.begin_step().unwrap().wait()[0]).collect()
}

fn check_page(device: &str, chromium: &str, native: &[f32]) {
    let r = run_page(chromium, &format!("device={device}&seed={SEED}&batch={BATCH}&lr={LR}&test={STEPS}"));
    let errors = r["errors"].as_array().cloned().unwrap_or_default();
    assert!(errors.is_empty(), "device={device}: the page reported errors: {errors:?}");
    let adapter = r["adapter"].as_str().unwrap_or_else(|| panic!("device={device}: no adapter: {r}"));
    let losses: Vec<f32> = r["losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(losses.len(), STEPS, "device={device}: {r}");
    let mut worst = 0f32;
    for (i, (web, nat)) in losses.iter().zip(native).enumerate() {
        let rel = (web - nat).abs() / nat.abs().max(1e-6);
        assert!(
            rel <= 1e-4,
            "device={device} ({adapter}) step {i}: browser loss {web}, native {nat} (relative {rel:.2e})"
        );
        worst = worst.max(rel);
    }
    eprintln!(
        "browser, device={device} ({adapter}): {STEPS} steps match native (largest relative difference {worst:.1e}); \
         final loss {:.4}; page ready after {:.1} s, \
         first step {:.0} ms, {:.0} samples/s",
        losses[STEPS - 1],
        r["load_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0,
        r["first_step_ms"].as_f64().unwrap_or(f64::NAN),
        r["samples_per_s"].as_f64().unwrap_or(f64::NAN)
    );
}

#[test]
fn the_page_trains_as_native_in_headless_chromium() {
    let Some(chromium) = browser() else { return };
    let native = native_losses();
    assert!(native[STEPS - 1] < native[0], "training lowers the loss natively: {native:?}");
    check_page("gpu", &chromium, &native);
    check_page("cpu", &chromium, &native);
}

#[test]
fn the_session_rejects_bad_input_with_a_message() {
    let dev = Device::cpu();
    let labels = dataset("train-labels-idx1-ubyte.gz");
    let Err(e) = Session::new(&dev, 0, BATCH, LR, b"not an idx file", &labels) else { panic!("bytes accepted") };
    assert!(e.contains("wrong magic") || e.contains("truncated"), "{e}");
    let images = dataset("train-images-idx3-ubyte.gz");
    let Err(e) = Session::new(&dev, 0, 0, LR, &images, &labels) else { panic!("batch 0 accepted") };
    assert!(e.contains("batch size"), "{e}");
    let mut s = Session::new(&dev, 0, 4, LR, &images, &labels).unwrap();
    let Err(e) = s.classify(&[0.5; 100]) else { panic!("100 pixels accepted") };
    assert!(e.contains("28x28"), "{e}");
    let probs = s.classify(&[0.0; 28 * 28]).unwrap().wait();
    assert_eq!(probs.len(), 10);
    assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{probs:?}");
}
