//! What the benches share: running the PyTorch twin of a bench in the same
//! run, so every figure is printed next to PyTorch's on the same cores.

use std::process::Command;

/// Runs `benches/<script>` with `args` (and `--device` from
/// `WGRAD_TORCH_DEVICE` when set) and returns its `name ms` lines, or
/// why there are none (no python3, no torch). The script's first line names
/// the torch version and threads; it is echoed.
pub fn pytorch(script: &str, args: &[String]) -> Result<Vec<(String, f64)>, String> {
    let path = format!("{}/benches/{script}", env!("CARGO_MANIFEST_DIR"));
    // `WGRAD_TORCH_DEVICE=cuda` (the GPU script): PyTorch on the same card;
    // `none`: not run (a sweep that has PyTorch's figures already).
    let device: Vec<String> =
        std::env::var("WGRAD_TORCH_DEVICE").map_or(vec![], |d| vec!["--device".into(), d.trim().to_string()]);
    if device.last().is_some_and(|d| d == "none") {
        return Err("WGRAD_TORCH_DEVICE=none".into());
    }
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .args(&device)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "PyTorch script failed: {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    println!("pytorch: {}", text.lines().next().unwrap_or(""));
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (n, ms) = l.rsplit_once(' ')?;
            Some((n.to_string(), ms.trim().parse().ok()?))
        })
        .collect())
}

/// PyTorch's figure for `name`, if the script gave one.
pub fn lookup(torch: &Result<Vec<(String, f64)>, String>, name: &str) -> Option<f64> {
    torch.as_ref().ok()?.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// `ours / theirs` as "12.3x", or "-" without a PyTorch figure.
pub fn ratio(ours: f64, theirs: Option<f64>) -> String {
    theirs.map_or("-".into(), |t| format!("{:.2}x", ours / t))
}

/// PyTorch's figure as text, or "-".
pub fn show(theirs: Option<f64>) -> String {
    theirs.map_or("-".into(), |t| format!("{t:.1}"))
}
