//! Keeps the documentation's relative links working: every `[text](path)`
//! and `[text](path#heading)` in README.md and docs/ (history included,
//! where moved passages keep links that were written for another folder)
//! names a file that exists and, for a Markdown file, a heading it has
//! (GitHub's anchors: lower case, punctuation dropped, spaces as hyphens).
//! Web addresses and links inside code blocks are not checked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every `.md` file under docs/.
fn documents() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let mut out = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut out);
    out.sort();
    out
}

/// The text of `doc` without its fenced code blocks (lines kept, emptied).
fn prose(doc: &str) -> String {
    let mut fenced = false;
    let lines = doc.lines().map(|line| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return "";
        }
        if fenced {
            ""
        } else {
            line
        }
    });
    lines.collect::<Vec<_>>().join("\n")
}

/// GitHub's anchor for a heading's text.
fn anchor(heading: &str) -> String {
    let kept: String = heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || c == '-' || c == '_' || c == ' ')
        .collect();
    kept.replace(' ', "-")
}

/// The anchors of `doc`'s headings.
fn anchors(doc: &str) -> BTreeSet<String> {
    prose(doc).lines().filter_map(|l| l.strip_prefix('#')).map(|h| anchor(h.trim_start_matches('#'))).collect()
}

/// The targets of `doc`'s inline links, with the line each is on.
fn links(doc: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose(doc).lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            out.push((n + 1, rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn relative_links_name_files_and_headings_that_exist() {
    let mut broken = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let here = doc.parent().unwrap();
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            let (path, heading) = target.split_once('#').map_or((target.as_str(), None), |(p, h)| (p, Some(h)));
            let file = if path.is_empty() { doc.clone() } else { here.join(path) };
            let shown = format!("{}:{line}: ({target})", doc.strip_prefix(root()).unwrap().display());
            if !file.exists() {
                broken.push(format!("{shown}: no file {}", file.display()));
            } else if let Some(h) = heading.filter(|_| file.extension().is_some_and(|x| x == "md")) {
                if !anchors(&std::fs::read_to_string(&file).unwrap()).contains(h) {
                    broken.push(format!("{shown}: no heading #{h}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_finds_what_it_must() {
    // A heading's anchor, a link in prose, none in a code block.
    assert_eq!(anchor(" CPU backend: tables per host (2026-11-28)"), "cpu-backend-tables-per-host-2026-11-28");
    let doc = "# Top\n\nSee [a](b.md#top) and [c](d.png).\n```\n[e](f.md)\n```\n## Two words\n";
    assert_eq!(links(doc), vec![(3, "b.md#top".to_string()), (3, "d.png".to_string())]);
    assert_eq!(anchors(doc), BTreeSet::from(["top".to_string(), "two-words".to_string()]));
}
