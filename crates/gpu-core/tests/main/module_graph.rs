//! Keeps gpu-core's module graph acyclic, as docs/architecture.md draws it.
//!
//! The test reads the crate's sources, builds the graph of which file
//! module names which (`crate::`, `super::`, `self::` and child-module
//! paths, in `use` declarations and in code; a name reached through a
//! re-export counts as a reference to the module that defines it), leaves
//! out `#[cfg(test)]` items, comments and strings, and fails on any
//! strongly connected component of more than one module, naming its
//! members. A cycle is how layering erodes: once the descriptors' layer
//! names a backend, nothing stops the backend naming the op files back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A file module's parsed form.
#[derive(Default)]
struct Module {
    /// Declared child modules (`mod x;`), by short name.
    children: BTreeSet<String>,
    /// Names brought in by `use`: local name → (path, re-exported).
    aliases: BTreeMap<String, (Vec<String>, bool)>,
    /// Glob imports (`use path::*`): (path, re-exported).
    globs: Vec<(Vec<String>, bool)>,
    /// The source with comments, strings, test items and `use` declarations blanked.
    code: String,
}

/// The file-level module graph of the crate whose `src/` is `src`: each
/// module's path (`crate`, `ops`, `ops::matmul`, …) and the modules it names.
pub fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules = BTreeMap::new();
    read_dir(src, src, &mut modules);
    let names: Vec<String> = modules.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for name in &names {
        let m = &modules[name];
        let mut to = BTreeSet::new();
        let mut add = |target: Option<String>| {
            if let Some(t) = target {
                if &t != name {
                    to.insert(t);
                }
            }
        };
        for (local, (path, public)) in &m.aliases {
            // A re-export alone is an alias, not a use; it is one when the module's own code names it.
            if !public || has_word(&m.code, local) {
                add(resolve(&modules, name, path, 0));
            }
        }
        for (path, _) in &m.globs {
            add(resolve(&modules, name, path, 0));
        }
        for path in paths_in(&m.code) {
            let first = path[0].as_str();
            let known = matches!(first, "crate" | "$crate" | "super" | "self")
                || m.children.contains(first)
                || m.aliases.contains_key(first);
            if known && path.len() > 1 {
                add(resolve(&modules, name, &path, 0));
            }
        }
        graph.insert(name.clone(), to);
    }
    graph
}

/// The strongly connected components of `graph` with more than one member.
pub fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on_stack.remove(w);
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

/// `graph` with each module replaced by its layer: its first path segment
/// (`ops::matmul` → `ops`), the granularity of docs/architecture.md's drawing.
pub fn layer_graph(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let layer = |m: &str| m.split("::").next().unwrap().to_string();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in graph {
        let f = layer(from);
        let entry = out.entry(f.clone()).or_default();
        for to in tos {
            let t = layer(to);
            if t != f {
                entry.insert(t);
            }
        }
    }
    out
}

fn read_dir(root: &Path, dir: &Path, out: &mut BTreeMap<String, Module>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_dir(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).unwrap().with_extension("");
            let mut segs: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            if segs.last().is_some_and(|s| s == "mod") {
                segs.pop();
            }
            let name = if segs == ["lib"] { "crate".to_string() } else { segs.join("::") };
            out.insert(name, parse(&std::fs::read_to_string(&p).unwrap()));
        }
    }
}

fn parse(text: &str) -> Module {
    let code = strip_tests(&blank_comments_and_strings(text));
    let mut m = Module::default();
    let bytes = code.as_bytes();
    let mut kept = String::with_capacity(code.len());
    let mut i = 0;
    while i < code.len() {
        if word_at(bytes, i, "use") {
            let end = code[i..].find(';').map_or(code.len(), |e| i + e + 1);
            let public = code[..i].trim_end().ends_with(')') && visibility_before(&code[..i])
                || code[..i].trim_end().ends_with("pub");
            for (path, local) in expand_use(&code[i + 3..end - 1]) {
                match local {
                    None => m.globs.push((path, public)),
                    Some(l) if l == "_" => {}
                    Some(l) => {
                        m.aliases.insert(l, (path, public));
                    }
                }
            }
            kept.extend(std::iter::repeat_n(' ', end - i));
            i = end;
        } else if word_at(bytes, i, "mod") {
            let rest = &code[i + 3..];
            let name: String = rest.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if rest.trim_start()[name.len()..].trim_start().starts_with(';') {
                m.children.insert(name);
            }
            kept.push_str("mod");
            i += 3;
        } else {
            let c = code[i..].chars().next().unwrap();
            kept.push(c);
            i += c.len_utf8();
        }
    }
    // `pub(in crate::x)` names a module for visibility, not for use.
    m.code = blank_visibility_paths(&kept);
    m
}

/// Whether the text before a `use` ends in a `pub(...)` visibility.
fn visibility_before(before: &str) -> bool {
    let t = before.trim_end();
    t.rfind("pub").is_some_and(|p| t[p + 3..].trim_start().starts_with('(') && !t[p..].contains(';'))
}

fn blank_visibility_paths(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(p) = out[from..].find("pub(in ") {
        let start = from + p;
        let end = out[start..].find(')').map_or(out.len(), |e| start + e + 1);
        out.replace_range(start..end, &" ".repeat(end - start));
        from = end;
    }
    out
}

/// Expands a `use` tree (the text between `use` and `;`) into (path,
/// local name); the name is `None` for a glob.
fn expand_use(tree: &str) -> Vec<(Vec<String>, Option<String>)> {
    let spaced = tree.replace("::", " :: ").replace('{', " { ").replace('}', " } ").replace(',', " , ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut out = Vec::new();
    let mut at = 0;
    use_tree(&tokens, &mut at, &[], &mut out);
    out
}

/// Parses one use tree from `tokens[*at..]` under `prefix`.
fn use_tree(tokens: &[&str], at: &mut usize, prefix: &[String], out: &mut Vec<(Vec<String>, Option<String>)>) {
    let mut path = prefix.to_vec();
    loop {
        match tokens.get(*at).copied() {
            Some("::") => *at += 1,
            Some("{") => {
                *at += 1;
                while tokens.get(*at).is_some_and(|t| *t != "}") {
                    use_tree(tokens, at, &path, out);
                    if tokens.get(*at) == Some(&",") {
                        *at += 1;
                    }
                }
                *at += 1;
                return;
            }
            Some("*") => {
                *at += 1;
                out.push((path, None));
                return;
            }
            Some(t) if t != "," && t != "}" => {
                *at += 1;
                path.push(t.to_string());
                if tokens.get(*at) == Some(&"::") {
                    continue;
                }
                let mut local = path.last().cloned().unwrap();
                if tokens.get(*at) == Some(&"as") {
                    local = tokens.get(*at + 1).map_or(local, |a| a.to_string());
                    *at += 2;
                }
                if path.last().is_some_and(|s| s == "self") {
                    path.pop();
                    if local == "self" {
                        local = path.last().cloned().unwrap_or_default();
                    }
                }
                out.push((path, Some(local)));
                return;
            }
            _ => return,
        }
    }
}

fn word_at(b: &[u8], i: usize, w: &str) -> bool {
    let is_id = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$';
    b[i..].starts_with(w.as_bytes()) && (i == 0 || !is_id(b[i - 1])) && b.get(i + w.len()).is_none_or(|&c| !is_id(c))
}

fn has_word(code: &str, w: &str) -> bool {
    let b = code.as_bytes();
    code.match_indices(w).any(|(i, _)| word_at(b, i, w))
}

/// Every `a::b::c` path in `code` that is not itself the tail of a longer path.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let b = code.as_bytes();
    let is_id = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_id(b[i]) && (i == 0 || !is_id(b[i - 1])) && !(i >= 2 && &b[i - 2..i] == b"::") {
            let mut segs = Vec::new();
            let mut j = i;
            loop {
                let s = j;
                while j < b.len() && is_id(b[j]) {
                    j += 1;
                }
                segs.push(code[s..j].to_string());
                if b[j..].starts_with(b"::") && b.get(j + 2).is_some_and(|&c| is_id(c)) {
                    j += 2;
                } else {
                    break;
                }
            }
            i = j;
            out.push(segs);
        } else {
            i += 1;
        }
    }
    out
}

fn parent(m: &str) -> String {
    m.rsplit_once("::").map_or("crate".to_string(), |(p, _)| p.to_string())
}

fn child(m: &str, c: &str) -> String {
    if m == "crate" {
        c.to_string()
    } else {
        format!("{m}::{c}")
    }
}

/// The module that defines what `path`, written in module `from`, names;
/// `None` for another crate's item.
fn resolve(modules: &BTreeMap<String, Module>, from: &str, path: &[String], depth: usize) -> Option<String> {
    if depth > 16 || path.is_empty() {
        return None;
    }
    let mut cur = from.to_string();
    let mut rest = path;
    match path[0].as_str() {
        "crate" | "$crate" => {
            cur = "crate".into();
            rest = &path[1..];
        }
        "self" => rest = &path[1..],
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                cur = parent(&cur);
                rest = &rest[1..];
            }
        }
        first => {
            let m = modules.get(&cur)?;
            if !m.children.contains(first) {
                let (target, _) = m.aliases.get(first)?;
                let mut full = target.clone();
                full.extend(rest[1..].iter().cloned());
                return resolve(modules, &cur, &full, depth + 1);
            }
        }
    }
    for (k, seg) in rest.iter().enumerate() {
        let sub = child(&cur, seg);
        if modules.contains_key(&sub) {
            cur = sub;
            continue;
        }
        let m = &modules[&cur];
        if let Some((target, _)) = m.aliases.get(seg) {
            let mut full = target.clone();
            full.extend(rest[k + 1..].iter().cloned());
            return resolve(modules, &cur, &full, depth + 1);
        }
        if !defines(&m.code, seg) {
            for (g, _) in &m.globs {
                let mut full = g.clone();
                full.push(seg.clone());
                if let Some(t) = resolve(modules, &cur, &full, depth + 1) {
                    return Some(t);
                }
            }
        }
        return Some(cur);
    }
    Some(cur)
}

/// Whether `code` defines an item named `name`.
fn defines(code: &str, name: &str) -> bool {
    ["fn", "struct", "enum", "trait", "type", "const", "static", "union", "macro_rules!"].iter().any(|kw| {
        code.match_indices(kw).any(|(i, _)| {
            let after = code[i + kw.len()..].trim_start();
            after.starts_with(name)
                && after[name.len()..].chars().next().is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
        })
    })
}

/// `text` with comments, string and char literals replaced by spaces (newlines kept).
fn blank_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = text[i..].find('\n').map_or(b.len(), |e| i + e);
            blank(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            let mut j = i;
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if b[i] == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric() && b[i - 1] != b'_')
        {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let start = i + 2 + hashes;
            let end = text[start..].find(&close).map_or(b.len(), |e| start + e + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, (j + 1).min(b.len()));
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                text[i + 2..].find('\'').map(|e| i + 2 + e + 1)
            } else {
                let c = text[i + 1..].chars().next();
                c.and_then(|c| (b.get(i + 1 + c.len_utf8()) == Some(&b'\'')).then(|| i + 2 + c.len_utf8()))
            };
            match end {
                Some(e) => {
                    blank(&mut out, i, e);
                    i = e;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// `code` with every `#[cfg(test)]` item blanked.
fn strip_tests(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(start) = out.find("#[cfg(test)]") {
        let b = out.as_bytes();
        let mut j = start + "#[cfg(test)]".len();
        let (mut paren, mut brace) = (0i32, 0i32);
        while j < b.len() {
            match b[j] {
                b'(' | b'[' => paren += 1,
                b')' | b']' => paren -= 1,
                b'{' => brace += 1,
                b'}' => {
                    brace -= 1;
                    if brace == 0 && paren == 0 {
                        j += 1;
                        break;
                    }
                }
                b';' if paren == 0 && brace == 0 => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let blanked: String = out[start..j].chars().map(|c| if c == '\n' { '\n' } else { ' ' }).collect();
        out.replace_range(start..j, &blanked);
    }
    out
}

fn describe(graph: &BTreeMap<String, BTreeSet<String>>, comps: &[Vec<String>]) -> String {
    let mut s = String::new();
    for comp in comps {
        s.push_str(&format!("cycle of {} modules:\n", comp.len()));
        for m in comp {
            let inside: Vec<&str> = graph[m].iter().filter(|t| comp.contains(t)).map(|t| t.as_str()).collect();
            s.push_str(&format!("  {m} -> {}\n", inside.join(", ")));
        }
    }
    s
}

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// File-level cycles that predate this test, each a group that may only
/// shrink: none are left (the last, the GPU recorder's files, came apart
/// when the `GpuContext`'s recording methods, the batch's state, windows,
/// launches and pipeline keys went to files of their own). Kept so that a
/// cycle that cannot be avoided for a while is listed here, visibly.
const KNOWN_CYCLES: &[&[&str]] = &[];

#[test]
fn file_modules_form_no_new_cycle() {
    let graph = module_graph(&src());
    let comps = cycles(&graph);
    let new: Vec<Vec<String>> = comps
        .into_iter()
        .filter(|c| !KNOWN_CYCLES.iter().any(|known| c.iter().all(|m| known.contains(&m.as_str()))))
        .collect();
    assert!(new.is_empty(), "gpu-core's modules import each other in a new cycle:\n{}", describe(&graph, &new));
}

#[test]
fn layers_form_no_cycle() {
    let graph = layer_graph(&module_graph(&src()));
    let comps = cycles(&graph);
    assert!(comps.is_empty(), "gpu-core's layers import each other in a cycle:\n{}", describe(&graph, &comps));
}

/// The layers `kernels/` (what each kernel computes: descriptors and
/// reference twins) must not name: the op launches, either backend, device
/// memory, or the device. Naming `ops/` would also be a cycle; naming
/// `cpu/`, `gpu/` or `buffer` would not, which is why they are listed.
const BELOW_KERNELS: &[&str] = &["ops", "cpu", "gpu", "buffer", "device", "reservation", "readback", "step_graph"];

/// Each `kernels` module's references into [`BELOW_KERNELS`] layers, and
/// each one that names the `wgpu` crate, as "module -> target" lines.
fn kernels_reaching_down(src: &Path) -> Vec<String> {
    let graph = module_graph(src);
    let mut out = Vec::new();
    for (from, tos) in graph.iter().filter(|(m, _)| m.split("::").next() == Some("kernels")) {
        for to in tos {
            if BELOW_KERNELS.contains(&to.split("::").next().unwrap()) {
                out.push(format!("{from} -> {to}"));
            }
        }
    }
    let mut files = Vec::new();
    let mut stack = vec![src.join("kernels")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    for p in files {
        let code = strip_tests(&blank_comments_and_strings(&std::fs::read_to_string(&p).unwrap()));
        if has_word(&code, "wgpu") {
            out.push(format!("{} -> wgpu", p.strip_prefix(src).unwrap().display()));
        }
    }
    out
}

#[test]
fn kernels_name_no_op_backend_buffer_or_wgpu() {
    let found = kernels_reaching_down(&src());
    assert!(found.is_empty(), "kernels/ names a layer it must stay below:\n{}", found.join("\n"));
    // The check can fail: a twin that takes a Buffer, one that calls an op
    // and one that names wgpu are each found.
    let dir = std::env::temp_dir().join(format!("wgrad-kernels-leaf-{}", std::process::id()));
    let write = |p: &str, s: &str| {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    write("lib.rs", "mod buffer;\nmod kernels;\nmod ops;\npub use buffer::Buffer;\n");
    write("buffer.rs", "pub struct Buffer;\n");
    write("ops/mod.rs", "pub(crate) fn run() {}\n");
    write(
        "kernels/mod.rs",
        "pub(crate) mod a;\npub(crate) mod b;\n/// wgpu in a comment is no edge\npub(crate) mod c;\n",
    );
    write("kernels/a.rs", "use crate::Buffer;\npub(crate) fn twin(_: &Buffer) {}\n");
    write("kernels/b.rs", "pub(crate) fn twin() { crate::ops::run() }\n");
    write("kernels/c.rs", "pub(crate) fn twin(_: &wgpu::Buffer) {}\n");
    let caught = kernels_reaching_down(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(caught, ["kernels::a -> buffer", "kernels::b -> ops", "kernels/c.rs -> wgpu"]);
}

/// The analysis itself: a back edge written into a copy of a small tree is
/// found, through a re-export, a `use` group and a `super::` path.
#[test]
fn an_injected_back_edge_is_found() {
    let dir = std::env::temp_dir().join(format!("wgrad-module-graph-{}", std::process::id()));
    let write = |p: &str, s: &str| {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    write("lib.rs", "mod leaf;\nmod ops;\npub use leaf::Desc;\n");
    write("leaf.rs", "/// crate::ops::run in a comment is no edge\npub struct Desc;\n#[cfg(test)]\nmod tests { use crate::ops::run; }\n");
    write("ops/mod.rs", "mod unary;\npub use unary::apply;\npub(crate) fn run() {}\n");
    write("ops/unary.rs", "use crate::{Desc, ops::run as go};\npub fn apply(_: Desc) { super::run(); go(); }\n");
    let clean = module_graph(&dir);
    assert!(cycles(&clean).is_empty(), "{clean:?}");
    assert_eq!(clean["ops::unary"], ["leaf", "ops"].iter().map(|s| s.to_string()).collect());
    write("leaf.rs", "pub struct Desc;\npub fn back() { crate::ops::apply(Desc) }\n");
    let cyclic = module_graph(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(cycles(&cyclic), vec![vec!["leaf".to_string(), "ops::unary".to_string()]]);
}

/// Every launch of the op files goes through `ops/launch.rs` (`dispatch`
/// and its variants): no other op file calls the recorder's `launch`,
/// `launch_windows` or `defer` on a `GpuContext` (named `g`, `gpu`, `ctx`
/// or `self.g` throughout the op files) itself.
#[test]
fn only_ops_launch_hands_launches_to_the_recorder() {
    let calls: Vec<String> = ["g", "gpu", "ctx"]
        .iter()
        .flat_map(|r| ["launch(", "launch_windows(", "defer("].map(|m| format!("{r}.{m}")))
        .collect();
    let calls_in = |code: &str| {
        calls.iter().any(|c| {
            code.match_indices(c.as_str())
                .any(|(i, _)| code[..i].chars().next_back().is_none_or(|ch| !(ch.is_alphanumeric() || ch == '_')))
        })
    };
    // The op files, and those of ops that are folders (`ops/matmul/`).
    fn offenders(dir: &Path, calls_in: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                out.extend(offenders(&p, calls_in));
                continue;
            }
            if p.file_name().is_some_and(|n| n == "launch.rs") && p.parent() == Some(&src().join("ops")) {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if calls_in(code) {
                    out.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                }
            }
        }
        out
    }
    let found = offenders(&src().join("ops"), &calls_in);
    assert!(found.is_empty(), "launches recorded outside ops/launch.rs:\n{}", found.join("\n"));
    // The check can fail: a file that calls the recorder directly is found.
    let dir = std::env::temp_dir().join(format!("wgrad-launch-path-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(dir.join("folder")).unwrap();
    std::fs::write(dir.join("op.rs"), "fn f(g: &G) { g.launch(&l); }\n").unwrap();
    std::fs::write(dir.join("folder/launch.rs"), "fn f(g: &G) { g.launch(&l); }\n").unwrap();
    let caught = offenders(&dir, &calls_in);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(caught.len(), 2, "{caught:?}");
}
