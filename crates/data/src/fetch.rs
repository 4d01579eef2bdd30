//! Fetching a URL into a `.part` file over HTTPS (ureq, rustls), resuming
//! from its length, with a progress bar: the network half of
//! [`download`](crate::download::download). Behind the `download` feature
//! (default): the browser build has no downloads, and its `fetch` says so.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::download::{io, remove_quietly};
use crate::DataError;

fn is_loopback(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or("");
    let host = rest.split(['/', ':']).next().unwrap_or("");
    rest.starts_with("[::1]") || matches!(host, "127.0.0.1" | "localhost")
}

fn agent(url: &str) -> ureq::Agent {
    // Proxies from the environment apply except to loopback, which a proxy
    // cannot reach anyway; statuses are handled here (206/416 are not errors).
    let proxy = if is_loopback(url) { None } else { ureq::Proxy::try_from_env() };
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(proxy)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn progress(total: Option<u64>, name: &str) -> indicatif::ProgressBar {
    // Drawn on stderr only when it is a terminal (indicatif hides otherwise).
    let pb = indicatif::ProgressBar::with_draw_target(total, indicatif::ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(name.to_string());
    pb
}

/// Fetches `url` into `part`, resuming from its current length.
pub(crate) fn fetch(url: &str, part: &Path, name: &str) -> Result<(), DataError> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let derr = |what: String| DataError::Download { url: url.to_string(), what };
    let mut req = agent(url).get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let mut resp = req.call().map_err(|e| derr(e.to_string()))?;
    let status = resp.status().as_u16();
    let resumed = match status {
        206 if have > 0 => {
            // Only append when the server resumes exactly where we stopped.
            let range = resp.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
            if !range.starts_with(&format!("bytes {have}-")) {
                remove_quietly(part);
                return Err(derr(format!(
                    "resumed at {range:?} instead of byte {have}; the partial file was removed, retry"
                )));
            }
            true
        }
        200 => false,
        // The .part already holds the whole file: the checksum decides.
        416 if have > 0 => return Ok(()),
        _ => return Err(derr(format!("HTTP status {status}"))),
    };
    let offset = if resumed { have } else { 0 };
    let length = resp.body().content_length();
    let mut out =
        if resumed { OpenOptions::new().append(true).open(part) } else { File::create(part) }.map_err(io(part))?;
    let pb = progress(length.map(|l| l + offset), name);
    pb.set_position(offset);
    let mut reader = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    let result = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                out.write_all(&buf[..n]).map_err(io(part))?;
                received += n as u64;
                pb.inc(n as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e.to_string()),
        }
    };
    out.flush().map_err(io(part))?;
    pb.finish_and_clear();
    let short = length.is_some_and(|l| received < l);
    if let Err(e) = result.and_then(|()| if short { Err("connection closed early".into()) } else { Ok(()) }) {
        let of = length.map(|l| format!(" of {l}")).unwrap_or_default();
        return Err(derr(format!(
            "transfer interrupted after {received}{of} bytes ({e}); {} is kept and resumed next time",
            part.display()
        )));
    }
    Ok(())
}
