//! Headless Chromium driven over the Chrome DevTools Protocol (a WebSocket; no driver to
//! install), for the tests that open a page: the voice page (`tests/browser.rs`) and the A/B
//! run's `report.html` (`tests/report_html.rs`).

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A minimal DevTools Protocol client: one page target.
#[derive(Debug)]
pub struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next: u64,
}

impl Cdp {
    /// Sends `method` with `params` and returns its result (panics on an error or after 20 s
    /// without an answer).
    pub async fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next += 1;
        let id = self.next;
        let msg = serde_json::json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::Text(msg.to_string().into())).await.unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(20), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer"))
                .expect("devtools socket open")
                .unwrap();
            let Message::Text(t) = m else { continue };
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `expr` in the page and returns its JSON value.
    pub async fn eval(&mut self, expr: &str) -> serde_json::Value {
        let r = self
            .call("Runtime.evaluate", serde_json::json!({ "expression": expr, "returnByValue": true }))
            .await;
        r["result"]["value"].clone()
    }
}

/// One Chromium at a time: the tests run in parallel, and two browsers' audio processing on a
/// two-core CI machine starve each other's echo canceller and playout (a caller's words lost).
static ONE_BROWSER: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Headless Chromium (Debian's `chromium`) on one page; killed on drop. One runs at a time
/// per test binary.
#[derive(Debug)]
pub struct Browser {
    child: std::process::Child,
    _profile: tempfile::TempDir,
    devtools_port: u16,
    _turn: tokio::sync::SemaphorePermit<'static>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Opens `url` in a new headless Chromium (1280×900, its own profile, DevTools on a free
    /// port) with `extra` flags (a fake microphone, autoplay…), once no other is running.
    pub async fn launch(url: &str, extra: &[String]) -> Browser {
        let turn = ONE_BROWSER.acquire().await.expect("never closed");
        let profile = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromium runs (installed by scripts/setup.sh)");
        // Chromium writes its DevTools port here once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let mut port = None;
        for _ in 0..300 {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Some(p) = text.lines().next().and_then(|l| l.trim().parse().ok())
            {
                port = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Browser {
            child,
            _profile: profile,
            devtools_port: port.expect("chromium's DevTools port"),
            _turn: turn,
        }
    }

    /// A DevTools connection to the browser's page.
    pub async fn page(&self) -> Cdp {
        let list = format!("http://127.0.0.1:{}/json/list", self.devtools_port);
        for _ in 0..100 {
            if let Ok(r) = reqwest::get(&list).await
                && let Ok(targets) = r.json::<serde_json::Value>().await
                && let Some(ws) = targets
                    .as_array()
                    .and_then(|a| a.iter().find(|t| t["type"] == "page"))
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            {
                let (ws, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
                return Cdp { ws, next: 0 };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no page target");
    }
}
