//! Lists `shaders/*.wgsl` into `$OUT_DIR/shader_files.rs` (`shaders::SOURCES`),
//! so that a new kernel file is registered by being there.

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shaders");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .map(|p| p.file_stem().expect("a file name").to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = String::from("/// (name, raw source) of every file of `shaders/`, sorted by name.\n");
    out.push_str("pub const SOURCES: &[(&str, &str)] = &[\n");
    for name in &names {
        let path = dir.join(format!("{name}.wgsl"));
        let path = path.canonicalize().unwrap_or(path);
        out.push_str(&format!("    ({name:?}, include_str!({:?})),\n", path.display().to_string()));
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("shader_files.rs");
    std::fs::write(&target, out).unwrap_or_else(|e| panic!("writing {}: {e}", target.display()));
}
