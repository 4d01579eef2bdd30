//! Downloads against a loopback HTTP server started by each test: a good
//! download with extraction, truncated transfers and their resume, checksum
//! mismatches, HTTP errors. Nothing here touches the internet.

use crate::common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use common::download::{cut, gzip, ok, partial, range_start, serve, tar};
use wgrad_data::cifar::{self, Split};
use wgrad_data::download::{self, Checksum, Source};
use wgrad_data::DataError;

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgrad-download-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A CIFAR-10-shaped archive: `cifar-10-batches-bin/` with one tiny record
/// per batch file (label = batch number) and two test records.
fn cifar_archive() -> Vec<u8> {
    let rec = |label: u8| {
        let mut r = vec![label];
        r.extend((0..cifar::IMAGE_BYTES).map(|i| (i % 256) as u8));
        r
    };
    let dir = "cifar-10-batches-bin";
    let mut files: Vec<(String, Vec<u8>)> = (1..=5).map(|b| (format!("{dir}/data_batch_{b}.bin"), rec(b))).collect();
    files.push((format!("{dir}/test_batch.bin"), [rec(7), rec(8)].concat()));
    files.push((format!("{dir}/batches.meta.txt"), b"airplane\nautomobile\n".to_vec()));
    gzip(&tar(&files))
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
