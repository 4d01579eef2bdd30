//! A pipeline's identity ([`Key`]) and its line in the pipeline manifest
//! (`warmup.rs`): the pipeline cache files kernels under their keys and
//! lists each new one; the warm-up reads the list back.

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use crate::shaders;

/// A pipeline's identity: a registry shader's entry point under override
/// constants, or a generated (fused) kernel's body (its WGSL after the
/// shared `fused_wgsl::prelude`).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Key {
    /// A kernel of `shaders/` (or a generated library variant).
    Registry {
        shader: &'static str,
        entry: &'static str,
        constants: Vec<(&'static str, u64)>,
        inputs: usize,
        outputs: usize,
    },
    /// A fused elementwise kernel: one expression structure, one source.
    Generated { source: String, inputs: usize, outputs: usize },
}

/// One manifest line for a registry key; `None` for a generated one.
pub(crate) fn line(key: &Key) -> Option<String> {
    let Key::Registry { shader, entry, constants, inputs, outputs } = key else { return None };
    let constants: Vec<String> = constants.iter().map(|(n, bits)| format!("{n}={bits:x}")).collect();
    Some(format!("{shader}\t{entry}\t{inputs}\t{outputs}\t{}\n", constants.join(",")))
}

/// Appends `key`'s line to the manifest.
pub(crate) fn append(file: &mut std::fs::File, key: &Key) -> std::io::Result<()> {
    match line(key) {
        Some(l) => file.write_all(l.as_bytes()),
        None => Ok(()),
    }
}

/// `s` as a `&'static str`: the names of entry points and constants that
/// manifest keys carry (a few dozen per program, kept for the process).
fn intern(s: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock().unwrap();
    if let Some(n) = names.get(s) {
        return n;
    }
    let n: &'static str = Box::leak(s.to_string().into_boxed_str());
    names.insert(n);
    n
}

/// The key of a manifest line, if it names a shader of the registry, an
/// entry point it defines and override constants it declares.
pub(crate) fn parse(line: &str) -> Option<Key> {
    let mut f = line.split('\t');
    let (shader, entry, inputs, outputs, constants) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let shader = shaders::names().find(|n| *n == shader)?;
    let source = shaders::source(shader);
    let declares = |what: &str| source.contains(what);
    if !declares(&format!("fn {entry}(")) {
        return None;
    }
    let mut parsed = Vec::new();
    for c in constants.split(',').filter(|c| !c.is_empty()) {
        let (name, bits) = c.split_once('=')?;
        if !declares(&format!("override {name}")) {
            return None;
        }
        parsed.push((intern(name), u64::from_str_radix(bits, 16).ok()?));
    }
    let (inputs, outputs) = (inputs.parse().ok()?, outputs.parse().ok()?);
    if inputs + outputs > 16 {
        return None;
    }
    Some(Key::Registry { shader, entry: intern(entry), constants: parsed, inputs, outputs })
}
