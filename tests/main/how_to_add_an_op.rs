//! Keeps docs/architecture.md's "How to add an op" true: for an existing op
//! of each kind, the source files that name it are exactly the ones the
//! walkthrough lists (a hand-kept list of ops anywhere else adds a file and
//! fails here), and the walkthrough names those files.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, tests and build scripts left out.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            if name != "tests" && name != "target" {
                sources(&p, out);
            }
        } else if name.ends_with(".rs") && name != "build.rs" {
            out.push(p);
        }
    }
}

/// Whether `text` has `word` between non-identifier characters.
fn names(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back().is_none_or(|c| !ident(c));
        let after = text[i + word.len()..].chars().next().is_none_or(|c| !ident(c));
        before && after
    })
}

/// The files under `dirs` (relative to the workspace) that name `word`.
fn files_naming(dirs: &[&str], word: &str) -> Vec<String> {
    let mut files = Vec::new();
    for d in dirs {
        sources(&root().join(d), &mut files);
    }
    let mut hits: Vec<String> = files
        .into_iter()
        .filter(|p| names(&std::fs::read_to_string(p).unwrap(), word))
        .map(|p| p.strip_prefix(root()).unwrap().to_string_lossy().into_owned())
        .collect();
    hits.sort();
    hits
}

fn walkthrough() -> String {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let start = doc.find("**How to add an op**").expect("docs/architecture.md has the walkthrough");
    let end = doc[start..].find("\n\n").map_or(doc.len(), |e| start + e);
    doc[start..end].to_string()
}

const ELEMENTWISE_METHODS: &str = "crates/autograd/src/ops/elementwise.rs";
/// Each op's ONNX form (an exhaustive match over the tables' enums).
const ONNX_TABLE: &str = "crates/onnx/src/ops.rs";

#[test]
fn an_elementwise_op_is_a_table_row_and_a_tensor_method() {
    let doc = walkthrough();
    for (op, table) in
        [("Rsqrt", "crates/gpu-core/src/kernels/unary.rs"), ("Ge", "crates/gpu-core/src/kernels/binary.rs")]
    {
        let want = vec![ELEMENTWISE_METHODS.to_string(), table.to_string(), ONNX_TABLE.to_string()];
        assert_eq!(files_naming(&["crates", "src", "examples", "benches"], op), want, "the files naming {op}");
        for file in &want {
            assert!(doc.contains(file.as_str()), "the walkthrough does not name {file}");
        }
    }
}

#[test]
fn a_kernel_family_is_its_shader_its_op_file_its_twin_two_mod_lines_and_its_test() {
    let doc = walkthrough();
    for family in ["augment", "convert"] {
        assert!(root().join(format!("shaders/{family}.wgsl")).is_file(), "shaders/{family}.wgsl");
        let op_file = format!("crates/gpu-core/src/ops/{family}.rs");
        let twin_file = format!("crates/gpu-core/src/kernels/{family}.rs");
        let mut want = vec![
            "crates/gpu-core/src/kernels/mod.rs".to_string(),
            "crates/gpu-core/src/ops/mod.rs".to_string(),
            op_file.clone(),
            twin_file,
        ];
        want.sort();
        assert_eq!(files_naming(&["crates/gpu-core/src"], family), want, "gpu-core's files naming {family}");
        let op = std::fs::read_to_string(root().join(&op_file)).unwrap();
        assert!(op.contains("\npub(crate) const PARAMS: ParamsDecl"), "{op_file} declares its uniform block");
        let tests = root().join("crates/gpu-core/tests/main");
        assert!(tests.join(format!("parity_{family}.rs")).is_file(), "its parity test");
        let main = std::fs::read_to_string(tests.join("main.rs")).unwrap();
        assert!(main.contains(&format!("mod parity_{family};")), "its test's mod line");
    }
    for named in [
        "shaders/NAME.wgsl",
        "crates/gpu-core/src/ops/NAME.rs",
        "crates/gpu-core/src/ops/mod.rs",
        "crates/gpu-core/src/kernels/NAME.rs",
        "crates/gpu-core/src/kernels/mod.rs",
        "crates/gpu-core/tests/main/parity_NAME.rs",
        "ParamsDecl",
    ] {
        assert!(doc.contains(named), "the walkthrough does not name {named}");
    }
}

/// The checks can fail: a word inside a longer identifier is not named,
/// and a file that lists an op by hand is found.
#[test]
fn the_file_search_finds_whole_words_only() {
    assert!(names("BinaryOp::Ge,", "Ge") && names("Ge: \"x\"", "Ge"));
    assert!(!names("GeluTanh", "Ge") && !names("fn merge()", "Ge") && !names("ops::augmented", "augment"));
    assert!(files_naming(&["crates/gpu-core/src"], "Rsqrt").contains(&"crates/gpu-core/src/kernels/unary.rs".into()));
}

/// A family's storage libraries (its f32, f16 and texture includes) are
/// declared as bindings in its `kernels/NAME.rs` and generated, not written
/// in `shaders/`, and the walkthrough names the generator.
#[test]
fn storage_libraries_are_declared_next_to_their_family() {
    let doc = walkthrough();
    assert!(doc.contains("crates/gpu-core/src/kernels/io.rs"), "the walkthrough does not name the generator");
    let kernels = std::fs::read_to_string(root().join("crates/gpu-core/src/kernels/pool.rs")).unwrap();
    assert!(kernels.contains("stem: \"pool_io\""), "kernels/pool.rs declares pool's bindings");
    let shader = std::fs::read_to_string(root().join("shaders/pool.wgsl")).unwrap();
    assert!(shader.contains("//#include pool_io_f32.wgsl"), "pool.wgsl includes its generated library");
    for kind in ["f32", "f16", "f16_native", "tex"] {
        assert!(!root().join(format!("shaders/pool_io_{kind}.wgsl")).exists(), "pool_io_{kind} is hand-written");
    }
}
