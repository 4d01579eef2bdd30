//! The WGSL kernel registry: every file of `shaders/`, embedded at compile
//! time, with `//#include NAME.wgsl` lines resolved.
//!
//! WGSL has no include mechanism; this one-line directive is the small
//! generator that lets kernels share helpers instead of copying them.

/// (name, raw source) of every shader file. Names without an entry point
/// (`common`) are libraries for `//#include`.
pub const SOURCES: &[(&str, &str)] = &[
    ("common", include_str!("../../../shaders/common.wgsl")),
    ("activations", include_str!("../../../shaders/activations.wgsl")),
    ("fill", include_str!("../../../shaders/fill.wgsl")),
    ("convert", include_str!("../../../shaders/convert.wgsl")),
    ("augment", include_str!("../../../shaders/augment.wgsl")),
    ("reduce", include_str!("../../../shaders/reduce.wgsl")),
    ("random", include_str!("../../../shaders/random.wgsl")),
    ("philox", include_str!("../../../shaders/philox.wgsl")),
    ("softmax", include_str!("../../../shaders/softmax.wgsl")),
    ("cast", include_str!("../../../shaders/cast.wgsl")),
    ("unary", include_str!("../../../shaders/unary.wgsl")),
    ("unary_fns", include_str!("../../../shaders/unary_fns.wgsl")),
    ("unary_grad", include_str!("../../../shaders/unary_grad.wgsl")),
    ("binary", include_str!("../../../shaders/binary.wgsl")),
    ("where", include_str!("../../../shaders/where.wgsl")),
    ("matmul", include_str!("../../../shaders/matmul.wgsl")),
    ("matmul_subgroup", include_str!("../../../shaders/matmul_subgroup.wgsl")),
    ("copy", include_str!("../../../shaders/copy.wgsl")),
    ("index", include_str!("../../../shaders/index.wgsl")),
    ("pool", include_str!("../../../shaders/pool.wgsl")),
    ("norm", include_str!("../../../shaders/norm.wgsl")),
    ("batch_norm", include_str!("../../../shaders/batch_norm.wgsl")),
    ("conv", include_str!("../../../shaders/conv.wgsl")),
    ("optim", include_str!("../../../shaders/optim.wgsl")),
    ("attention", include_str!("../../../shaders/attention.wgsl")),
    ("recurrent", include_str!("../../../shaders/recurrent.wgsl")),
];

/// Shader files that are include-only libraries.
pub const LIBRARIES: &[&str] = &["common", "activations", "unary_fns", "philox"];

/// The raw text of a shader file.
///
/// # Panics
/// For a name not in [`SOURCES`] (a bug in gpu-core, not a user error).
pub fn raw(name: &str) -> &'static str {
    SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .unwrap_or_else(|| panic!("wgrad internal: unknown shader {name:?}"))
}

/// The compilable source of a shader: includes pasted in, once each.
pub fn source(name: &str) -> String {
    let mut out = String::new();
    let mut included = Vec::new();
    expand(name, &mut out, &mut included);
    out
}

fn expand(name: &str, out: &mut String, included: &mut Vec<String>) {
    for line in raw(name).lines() {
        match line.trim().strip_prefix("//#include ") {
            Some(file) => {
                let dep = file.trim().trim_end_matches(".wgsl").to_string();
                if !included.contains(&dep) {
                    included.push(dep.clone());
                    expand(&dep, out, included);
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel parses and validates with naga: no adapter needed, so a
    /// broken shader fails `cargo test` on any machine.
    #[test]
    fn every_shader_validates_with_naga() {
        for (name, _) in SOURCES.iter().filter(|(n, _)| !LIBRARIES.contains(n)) {
            let src = source(name);
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{name}.wgsl does not parse:\n{}", e.emit_to_string(&src)));
            let mut v =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
            v.validate(&module)
                .unwrap_or_else(|e| panic!("{name}.wgsl does not validate:\n{}", e.emit_to_string(&src)));
            assert!(!module.entry_points.is_empty(), "{name}.wgsl has no entry point");
        }
    }

    #[test]
    fn includes_are_pasted_once() {
        let src = source("binary");
        assert_eq!(src.matches("fn strided_offset").count(), 1);
        assert!(!src.lines().any(|l| l.trim_start().starts_with("//#include")));
    }
}
