//! A loopback HTTP server for the download tests, with the responses they
//! need (whole, cut short, resumed), and `.tar.gz` archives built in memory.
//! Nothing here touches the internet.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Serves at most `max_requests` connections (then stops; also 20 s after it
/// started, or when `stop` is set) with `respond(request head) -> raw
/// response bytes`. Returns the base URL and a handle yielding the request
/// heads seen.
pub fn serve_until(
    max_requests: usize,
    stop: Arc<AtomicBool>,
    respond: impl Fn(&str) -> Vec<u8> + Send + 'static,
) -> (String, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut heads = Vec::new();
        while heads.len() < max_requests && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            let mut stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                Err(e) => panic!("accept: {e}"),
            };
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            // The client may give up mid-body (that is what some tests check).
            let _ = stream.write_all(&respond(&head));
            let _ = stream.flush();
            heads.push(head);
        }
        heads
    });
    (url, handle)
}

/// [`serve_until`] without a stop flag.
pub fn serve(
    max_requests: usize,
    respond: impl Fn(&str) -> Vec<u8> + Send + 'static,
) -> (String, JoinHandle<Vec<String>>) {
    serve_until(max_requests, Arc::new(AtomicBool::new(false)), respond)
}

/// A 200 response carrying `body`.
pub fn ok(body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

/// Promises the whole body but sends only `sent` bytes, then closes.
pub fn cut(body: &[u8], sent: usize) -> Vec<u8> {
    let mut r = ok(body);
    r.truncate(r.len() - body.len() + sent);
    r
}

/// The `bytes=N-` start of a Range header, if any.
pub fn range_start(head: &str) -> Option<usize> {
    let line = head.lines().find(|l| l.to_ascii_lowercase().starts_with("range:"))?;
    line.split('=').nth(1)?.trim().trim_end_matches('-').parse().ok()
}

/// A 206 response carrying `body[from..]`.
pub fn partial(body: &[u8], from: usize) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len() - 1,
        body.len(),
        body.len() - from
    )
    .into_bytes();
    r.extend_from_slice(&body[from..]);
    r
}

/// What a server that honours `Range` answers for `body`: the whole body,
/// the rest from the requested byte, or 416 when that is at or past the end.
pub fn ranged(body: &[u8], head: &str) -> Vec<u8> {
    match range_start(head) {
        None => ok(body),
        Some(from) if from < body.len() => partial(body, from),
        Some(_) => format!(
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes(),
    }
}

/// An uncompressed tar of `files` (path inside the archive, contents).
pub fn tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, &data[..]).unwrap();
    }
    tar.into_inner().unwrap()
}

/// `bytes` gzipped.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}
