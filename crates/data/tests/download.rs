//! Downloads against a loopback HTTP server started by each test: a good
//! download with extraction, truncated transfers and their resume, checksum
//! mismatches, HTTP errors. Nothing here touches the internet.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wgrad_data::cifar::{self, Split};
use wgrad_data::download::{self, Checksum, Source};
use wgrad_data::DataError;

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgrad-download-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Serves at most `max_requests` connections (then stops; also after 20 s
/// without them) with `respond(request head) -> raw response bytes`. Returns
/// the base URL and a handle yielding the request heads seen.
fn serve(max_requests: usize, respond: impl Fn(&str) -> Vec<u8> + Send + 'static) -> (String, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut heads = Vec::new();
        while heads.len() < max_requests && Instant::now() < deadline {
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

fn ok(body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

/// Promises the whole body but sends only `sent` bytes, then closes.
fn cut(body: &[u8], sent: usize) -> Vec<u8> {
    let mut r = ok(body);
    r.truncate(r.len() - body.len() + sent);
    r
}

/// The `bytes=N-` start of a Range header, if any.
fn range_start(head: &str) -> Option<usize> {
    let line = head.lines().find(|l| l.to_ascii_lowercase().starts_with("range:"))?;
    line.split('=').nth(1)?.trim().trim_end_matches('-').parse().ok()
}

fn partial(body: &[u8], from: usize) -> Vec<u8> {
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

/// A CIFAR-10-shaped archive: `cifar-10-batches-bin/` with one tiny record
/// per batch file (label = batch number) and two test records.
fn cifar_archive() -> Vec<u8> {
    let rec = |label: u8| {
        let mut r = vec![label];
        r.extend((0..cifar::IMAGE_BYTES).map(|i| (i % 256) as u8));
        r
    };
    let mut files: Vec<(String, Vec<u8>)> = (1..=5).map(|b| (format!("data_batch_{b}.bin"), rec(b))).collect();
    files.push(("test_batch.bin".into(), [rec(7), rec(8)].concat()));
    files.push(("batches.meta.txt".into(), b"airplane\nautomobile\n".to_vec()));
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("cifar-10-batches-bin/{name}"), &data[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn good_download_is_verified_extracted_and_cached() {
    let archive = cifar_archive();
    let body = archive.clone();
    let (url, server) = serve(1, move |_| ok(&body));
    let cache = tmp("good");
    let source = Source::new(format!("{url}/cifar-10-binary.tar.gz"), Checksum::sha256(&archive));
    let dir = download::ensure_archive(&source, &cache, "cifar-10-batches-bin").unwrap();
    assert_eq!(dir, cache.join("cifar-10-batches-bin"));
    // The archive is kept, no .part or staging folder is left behind.
    assert_eq!(names_in(&cache), vec!["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]);
    assert_eq!(std::fs::read(cache.join("cifar-10-binary.tar.gz")).unwrap(), archive);
    let train = cifar::load_cifar10(&dir, Split::Train).unwrap();
    assert_eq!(train.labels, vec![1, 2, 3, 4, 5]);
    assert_eq!(cifar::load_cifar10(&dir, Split::Test).unwrap().labels, vec![7, 8]);
    let heads = server.join().unwrap();
    assert!(heads[0].starts_with("GET /cifar-10-binary.tar.gz HTTP/1.1"), "{}", heads[0]);
    // Present: no network (the official URL is unreachable here), no request.
    assert_eq!(download::ensure_cifar10(&cache).unwrap(), dir);
    assert_eq!(download::ensure_archive(&source, &cache, "cifar-10-batches-bin").unwrap(), dir);
    // The kept archive re-extracts without a download into a folder that
    // appears whole.
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(download::ensure_archive(&source, &cache, "cifar-10-batches-bin").unwrap(), dir);
    assert_eq!(names_in(&dir).len(), 7);
    let other = cache.join("copy");
    download::extract_tar_gz(&cache.join("cifar-10-binary.tar.gz"), &other).unwrap();
    assert_eq!(names_in(&other.join("cifar-10-batches-bin")), names_in(&dir));
    assert!(!names_in(&cache).iter().any(|n| n.starts_with('.')), "{:?}", names_in(&cache));
}

#[test]
fn truncated_transfer_is_an_error_leaves_no_file_and_resumes() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sum = Checksum::md5(&body);
    let b = body.clone();
    // First request: cut after 70,000 bytes; second: must resume from there.
    let (url, server) = serve(2, move |head| match range_start(head) {
        Some(from) => partial(&b, from),
        None => cut(&b, 70_000),
    });
    let cache = tmp("trunc");
    let source = Source::new(format!("{url}/blob.bin"), sum.clone());
    let e = download::download(&source, &cache).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DataError::Download { .. }), "{msg}");
    assert!(msg.contains("blob.bin") && msg.contains("interrupted after 70000 of 200000 bytes"), "{msg}");
    assert!(!cache.join("blob.bin").exists());
    assert_eq!(std::fs::metadata(cache.join("blob.bin.part")).unwrap().len(), 70_000);

    let done = download::download(&source, &cache).unwrap();
    assert_eq!(std::fs::read(&done).unwrap(), body);
    assert!(!cache.join("blob.bin.part").exists());
    let heads = server.join().unwrap();
    assert_eq!(range_start(&heads[1]), Some(70_000), "{}", heads[1]);
    sum.verify(&done).unwrap();
}

#[test]
fn wrong_content_length_and_server_without_range_restart_cleanly() {
    let body = vec![42u8; 5000];
    let b = body.clone();
    // Claims 6000 bytes, sends 5000 then closes; then ignores Range with a 200.
    let (url, server) = serve(2, move |head| {
        if range_start(head).is_some() {
            ok(&b)
        } else {
            let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 6000\r\nConnection: close\r\n\r\n".to_vec();
            r.extend_from_slice(&b);
            r
        }
    });
    let cache = tmp("length");
    let source = Source::new(format!("{url}/x.bin"), Checksum::sha256(&body));
    let e = download::download(&source, &cache).unwrap_err();
    assert!(e.to_string().contains("of 6000 bytes"), "{e}");
    assert!(!cache.join("x.bin").exists());
    // A 200 to a Range request restarts the .part instead of appending.
    assert_eq!(std::fs::read(download::download(&source, &cache).unwrap()).unwrap(), body);
    assert_eq!(server.join().unwrap().len(), 2);
}

#[test]
fn checksum_mismatch_names_both_digests_and_leaves_no_file() {
    let good = cifar_archive();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let (url, server) = serve(2, move |_| ok(&bad));
    let cache = tmp("mismatch");
    for (sum, algo) in [(Checksum::sha256(&good), "sha256"), (Checksum::md5(&good), "md5")] {
        let expected = match &sum {
            Checksum::Sha256(h) | Checksum::Md5(h) => h.clone(),
        };
        let source = Source::new(format!("{url}/cifar-10-binary.tar.gz"), sum);
        let e = download::ensure_archive(&source, &cache, "cifar-10-batches-bin").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::Format { .. }), "{msg}");
        assert!(msg.contains("cifar-10-binary.tar.gz.part") && msg.contains(&format!("{algo} checksum mismatch")));
        assert!(msg.contains(&format!("expected {expected}, actual ")), "{msg}");
        let actual = msg.rsplit("actual ").next().unwrap();
        assert!(actual.len() == expected.len() && actual != expected, "{msg}");
        assert!(names_in(&cache).is_empty(), "{:?}", names_in(&cache));
    }
    server.join().unwrap();
}

#[test]
fn http_errors_and_bad_archives_are_reported() {
    let not_tar = b"plain bytes, not a gzip stream".to_vec();
    let n = not_tar.clone();
    let (url, server) = serve(2, move |head| {
        if head.contains("/missing") {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
        } else {
            ok(&n)
        }
    });
    let cache = tmp("http");
    let e = download::download(&Source::new(format!("{url}/missing.bin"), Checksum::sha256(b"")), &cache).unwrap_err();
    assert!(e.to_string().contains("/missing.bin") && e.to_string().contains("HTTP status 404"), "{e}");
    assert!(names_in(&cache).is_empty());

    let source = Source::new(format!("{url}/junk.tar.gz"), Checksum::sha256(&not_tar));
    let e = download::ensure_archive(&source, &cache, "junk").unwrap_err();
    assert!(e.to_string().contains("junk.tar.gz") && e.to_string().contains("cannot extract"), "{e}");
    assert!(!cache.join("junk").exists());
    assert!(!names_in(&cache).iter().any(|n| n.starts_with('.')), "{:?}", names_in(&cache));
    server.join().unwrap();

    // Nobody listening: a connection error naming the URL.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = download::download(&Source::new(format!("http://127.0.0.1:{port}/a.bin"), Checksum::sha256(b"")), &cache)
        .unwrap_err();
    assert!(matches!(e, DataError::Download { .. }) && e.to_string().contains(&format!("127.0.0.1:{port}/a.bin")));
}

#[test]
fn sources_and_cache_dir() {
    assert_eq!(Checksum::md5(b"abc"), Checksum::Md5("900150983cd24fb0d6963f7d28e17f72".into()));
    assert_eq!(
        Checksum::sha256(b"abc"),
        Checksum::Sha256("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into())
    );
    assert_eq!(Source::cifar10().file_name, "cifar-10-binary.tar.gz");
    assert_eq!(Source::cifar100().checksum, Checksum::Md5("03b5dce01913d631647c71ecec9e9cb8".into()));
    let mnist: Vec<String> = Source::mnist().into_iter().map(|s| s.file_name).collect();
    assert_eq!(
        mnist,
        [
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz"
        ]
    );
    // Only the environment decides; with WGRAD_DATA_DIR set it wins.
    let dir = download::default_cache_dir();
    match std::env::var_os("WGRAD_DATA_DIR").filter(|d| !d.is_empty()) {
        Some(d) => assert_eq!(dir, PathBuf::from(d)),
        None => assert!(dir.ends_with(".cache/wgrad") || dir == Path::new("data"), "{}", dir.display()),
    }
}
