//! Shared machinery of the elementwise op tables (`unary_table!` in
//! `unary.rs`, `binary_table!` in `binary.rs`): a table row's WGSL text turned
//! into one `case` of a generated `switch`, so the WGSL library, the Rust enum,
//! its codes and its CPU twin all come from the same row, and the traits
//! through which a row hands its function to a loop as a concrete closure.

/// One row of an op table as the WGSL generator sees it.
pub(crate) struct WgslRow {
    /// The variant name (for error messages and tests).
    pub name: &'static str,
    /// Fields of the variant, bound in order to the kernel's `p.alpha`, `p.beta`.
    pub fields: &'static [&'static str],
    /// The value: WGSL statements ending with a result expression (no `return`).
    pub body: &'static str,
}

/// The snake-case names of a table's rows (`LeakyRelu` → `leaky_relu`, as
/// PyTorch names its ops), worked out on the first call and kept in
/// `cache`: what autograd records its nodes under.
pub(crate) fn snake_names(cache: &'static std::sync::OnceLock<Vec<String>>, rows: &[WgslRow]) -> &'static [String] {
    cache.get_or_init(|| {
        rows.iter()
            .map(|row| {
                let mut s = String::new();
                for (i, c) in row.name.chars().enumerate() {
                    if c.is_ascii_uppercase() && i > 0 {
                        s.push('_');
                    }
                    s.push(c.to_ascii_lowercase());
                }
                s
            })
            .collect()
    })
}

impl WgslRow {
    /// The body as (statements, each followed by a space; result expression):
    /// everything up to the last `;` is statements. Shared by the switch
    /// libraries and the fuser's generated kernels (`gpu/fused_wgsl.rs`).
    pub fn split(&self) -> (String, &'static str) {
        let body = self.body.trim();
        match body.rfind(';') {
            Some(i) => (format!("{} ", &body[..=i]), body[i + 1..].trim()),
            None => (String::new(), body),
        }
    }
}

/// The uniforms that carry an op's fields, in field order.
const FIELD_UNIFORMS: [&str; 2] = ["p.alpha", "p.beta"];

/// `fn NAME(ARGS) -> f32 { switch OP { case CODE: { ... } ... } }` where the
/// row index is the case code.
pub(crate) fn wgsl_switch(signature: &str, rows: &[WgslRow], default: &str) -> String {
    let mut s = format!("fn {signature} -> f32 {{\n    switch OP {{\n");
    for (code, row) in rows.iter().enumerate() {
        assert!(row.fields.len() <= FIELD_UNIFORMS.len(), "wgrad internal: op {} has too many fields", row.name);
        let lets: String = row.fields.iter().zip(FIELD_UNIFORMS).map(|(f, u)| format!("let {f} = {u}; ")).collect();
        let (stmts, expr) = row.split();
        s += &format!("        // {}\n        case {code}u: {{ {lets}{stmts}return {expr}; }}\n", row.name);
    }
    s += &format!("        default: {{ return {default}; }}\n    }}\n}}\n");
    s
}

/// The value of each `f32` field of a variant, padded to the two uniforms.
pub(crate) fn field_uniforms(fields: &[f32]) -> (f32, f32) {
    (fields.first().copied().unwrap_or(0.0), fields.get(1).copied().unwrap_or(0.0))
}

/// A loop over a binary function, run by `BinaryOp::with_fn` (the fast CPU loops implement it).
pub(crate) trait Binary {
    /// What the loop returns.
    type Out;
    /// Runs the loop with `f`.
    fn call<F: Fn(f32, f32) -> f32 + Copy + Sync>(self, f: F) -> Self::Out;
}

/// A loop over a unary function, run by `UnaryOp::with_fn`.
pub(crate) trait Unary {
    /// What the loop returns.
    type Out;
    /// Runs the loop with `f`.
    fn call<F: Fn(f32) -> f32 + Copy + Sync>(self, f: F) -> Self::Out;
}
