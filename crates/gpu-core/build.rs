//! Lists `shaders/*.wgsl` into `$OUT_DIR/shader_files.rs` (`shaders::SOURCES`),
//! so that a new kernel file is registered by being there, and the uniform
//! blocks the op files declare (`pub(crate) const NAME: ParamsDecl` at the
//! start of a line of `src/ops/*.rs` or `src/ops/*/*.rs`)
//! into `$OUT_DIR/params_decls.rs`
//! (`ops::params::DECLS`, which the shader test checks against the WGSL),
//! so that a new family's block is checked by being declared.
//!
//! Every path is relative to this crate (cargo runs build scripts there and
//! reads a relative `rerun-if-changed` from there), and the generated
//! `include_str!`s start from `CARGO_MANIFEST_DIR` as the library sees it
//! when it compiles. Cargo names a workspace member's build directory
//! without its checkout's path, so two checkouts (git worktrees) sharing a
//! `CARGO_TARGET_DIR` share this script's output: with absolute paths in
//! it, a rebuild in one compiled the other's shaders. (Sharing a target
//! directory between checkouts stays wrong: cargo also judges a member
//! fresh by its files' times, whichever checkout built it.)

use std::path::{Path, PathBuf};

/// The files of `dir` (relative to this crate) ending in `.ext`, sorted;
/// the build reruns when the folder changes.
fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    println!("cargo:rerun-if-changed={dir}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

/// The name of `p` without its extension.
fn stem(p: &Path) -> String {
    p.file_stem().expect("a file name").to_string_lossy().into_owned()
}

fn main() {
    let names: Vec<String> = files("../../shaders", "wgsl").iter().map(|p| stem(p)).collect();
    let mut out = String::from("/// (name, raw source) of every file of `shaders/`, sorted by name.\n");
    out.push_str("pub const SOURCES: &[(&str, &str)] = &[\n");
    for name in &names {
        let path = format!("/../../shaders/{name}.wgsl");
        out.push_str(&format!("    ({name:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {path:?}))),\n"));
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("shader_files.rs");
    std::fs::write(&target, out).unwrap_or_else(|e| panic!("writing {}: {e}", target.display()));
    params_decls();
}

/// `$OUT_DIR/params_decls.rs`: `&[&super::MODULE::NAME, ...]` for every
/// `pub(crate) const NAME: ParamsDecl` that starts a line of `src/ops/*.rs`
/// or of a file of an op that is a folder (`src/ops/matmul/*.rs`: module
/// `matmul` for `mod.rs`, `matmul::job` for `job.rs`, which must then be
/// visible to `ops`).
fn params_decls() {
    let mut op_files: Vec<(String, PathBuf)> = files("src/ops", "rs").into_iter().map(|p| (stem(&p), p)).collect();
    for entry in std::fs::read_dir("src/ops").expect("reading src/ops") {
        let dir = entry.expect("a directory entry").path();
        if dir.is_dir() {
            let folder = stem(&dir);
            for path in files(&dir.to_string_lossy(), "rs") {
                let module = if stem(&path) == "mod" { folder.clone() } else { format!("{folder}::{}", stem(&path)) };
                op_files.push((module, path));
            }
        }
    }
    op_files.sort();
    let mut out = String::from("&[\n");
    for (module, path) in op_files {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("pub(crate) const ") else { continue };
            if let Some((name, ty)) = rest.split_once(':') {
                if ty.trim_start().starts_with("ParamsDecl") {
                    out.push_str(&format!("    &super::{module}::{},\n", name.trim()));
                }
            }
        }
    }
    out.push_str("]\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("params_decls.rs");
    std::fs::write(&target, out).unwrap_or_else(|e| panic!("writing {}: {e}", target.display()));
}
