//! The pipeline manifest: the pipelines a program compiled on an adapter are
//! listed in a small file, and the next process compiles them on background
//! threads while it loads data and builds its model, so its first step waits
//! for few of them. On lavapipe a matmul variant takes about 0.35 s to
//! compile and a ResNet-20 step needs 19 of them; a GPU driver is faster but
//! a Transformer needs many more.
//!
//! Only [`Device::from_env`](crate::Device::from_env) keeps a manifest (the
//! examples, the benches, user programs); devices opened otherwise (the
//! tests') never read or write one. `WGRAD_PIPELINE_CACHE=off` turns it off;
//! another value is the directory to keep it in (default
//! `$XDG_CACHE_HOME/wgrad`, else `~/.cache/wgrad`). The file is named after
//! the program (its executable's name) and a hash of the adapter, its
//! driver, the wgrad version and the shader sources, so a change to any of
//! them starts a new list, and a program never compiles another's kernels
//! (with one list per adapter, a small program on a 2-core lavapipe host
//! spent a core for its first seconds compiling the ~120 kernels the
//! benches had listed, while its own kernels ran on the other). A line that
//! does not parse, or names a shader, entry point or constant the sources
//! do not have, is skipped: a stale or damaged manifest costs a slower first step, never an
//! error. Fused kernels (generated at run time) are not listed: their
//! sources are long and each compiles in milliseconds.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::pipeline_key::parse;
use super::pipelines::PipelineCache;
use crate::shaders;

/// Most lines read from a manifest (a bound on the work a damaged or
/// ever-growing file can cause).
const MAX_ENTRIES: usize = 4096;

/// The background compilation of a manifest's pipelines.
pub(crate) struct Warmup {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Warmup {
    /// Stops after the pipelines being compiled and waits for the threads
    /// (the device must outlive them).
    pub fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wait();
    }

    /// Waits until every listed pipeline is compiled.
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The manifest directory `WGRAD_PIPELINE_CACHE` names, or the default;
/// `None` when it is `off` (or `0`) or no home directory is known.
fn cache_dir() -> Option<PathBuf> {
    match std::env::var("WGRAD_PIPELINE_CACHE") {
        Ok(v) if matches!(v.trim(), "off" | "0" | "") => None,
        Ok(v) => Some(PathBuf::from(v)),
        Err(_) => std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("wgrad")),
    }
}

/// FNV-1a of what makes a compiled pipeline list valid: the adapter, its
/// driver, the wgrad version and every shader source.
fn fingerprint(info: &wgpu::AdapterInfo) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |s: &str| {
        for b in s.bytes().chain([0]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    };
    eat(&info.name);
    eat(&format!("{:?}", info.backend));
    eat(&info.driver);
    eat(&info.driver_info);
    eat(env!("CARGO_PKG_VERSION"));
    for (name, src) in shaders::SOURCES {
        eat(name);
        eat(src);
    }
    h
}

/// The running program's name for its manifest's file name: its
/// executable's stem, restricted to ASCII letters, digits, `-` and `_`.
fn program() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe.as_deref().and_then(|p| p.file_stem()).map(|s| s.to_string_lossy().into_owned());
    let name: String = stem
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(64)
        .collect();
    if name.is_empty() {
        "program".into()
    } else {
        name
    }
}

/// Opens (creating) the manifest of `ctx`'s adapter for appending, and
/// starts compiling the pipelines it lists on background threads. `None`
/// when manifests are off or the directory cannot be used (then nothing is
/// recorded either).
pub(crate) fn start(info: &wgpu::AdapterInfo, pipelines: &Arc<PipelineCache>, device: &wgpu::Device) -> Option<Warmup> {
    let dir = cache_dir()?;
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("pipelines-{}-{:016x}.txt", program(), fingerprint(info)));
    let mut seen = rustc_hash::FxHashSet::default();
    let mut keys = Vec::new();
    if let Ok(file) = std::fs::File::open(&path) {
        for l in std::io::BufReader::new(file).lines().map_while(|l| l.ok()).take(MAX_ENTRIES) {
            if let Some(key) = parse(&l) {
                if seen.insert(key.clone()) {
                    keys.push(key);
                }
            }
        }
    }
    let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).ok()?;
    *pipelines.manifest.lock().unwrap() = Some(file);
    *pipelines.listed.lock().unwrap() = seen;
    if keys.is_empty() {
        return None;
    }
    // Leave a core to the program (it loads data and builds its model now).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1)).clamp(1, 8);
    // From the last kernel the earlier run first used backwards: the program
    // compiles what it needs first itself (the forward pass's kernels) while
    // these threads start at the backward pass's and the optimizer's; a
    // thread that asks for a kernel another is compiling waits for it.
    let queue = Arc::new(Mutex::new(std::collections::VecDeque::from(keys)));
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..threads)
        .map(|_| {
            let (queue, stop) = (queue.clone(), stop.clone());
            let (pipelines, device) = (pipelines.clone(), device.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(key) = queue.lock().unwrap().pop_back() else { break };
                    pipelines.warm(&device, key);
                }
            })
        })
        .collect();
    Some(Warmup { stop, threads })
}

#[cfg(test)]
mod tests {
    use super::super::pipeline_key::{line, Key};
    use super::*;

    #[test]
    fn lines_round_trip_and_stale_ones_are_skipped() {
        let key = Key::Registry {
            shader: "matmul",
            entry: "main",
            constants: vec![("TILE_M", 64f64.to_bits()), ("F16_OUT", 1f64.to_bits())],
            inputs: 3,
            outputs: 1,
        };
        let l = line(&key).unwrap();
        assert_eq!(parse(l.trim_end()), Some(key));
        // A shader, an entry point or a constant the sources do not have,
        // and lines that do not parse, are skipped.
        for bad in [
            "no_such_shader\tmain\t3\t1\t",
            "matmul\tno_such_entry\t3\t1\t",
            "matmul\tmain\t3\t1\tNO_SUCH_CONSTANT=0",
            "matmul\tmain\tx\t1\t",
            "matmul\tmain\t3\t1\tTILE_M=zz",
            "matmul\tmain",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let generated = Key::Generated { source: "fn main() {}".into(), inputs: 1, outputs: 1 };
        assert_eq!(line(&generated), None);
    }
}
