//! `report.html` in a real browser: an A/B run on the in-process fakes (virtual clock), then
//! Debian's headless Chromium opens the page from disk (`file://`), every `<audio>` element is
//! there and loads its WAV, and a screenshot (kept in `target/browser-artifacts/`) is not blank.

use std::time::Duration;
use voxpipe_e2e::chromium::Browser;
use voxpipe_e2e::*;
use voxpipe_eval::{AbOptions, run_ab};

const BOOKING: &str = r#"
[[turns]]
say = "Hello, I need to book an appointment."
[[turns]]
say = "Tomorrow morning, please."
gap_ms = 3000
reply_must_contain = ["afternoon"]

[[fake.realtime.responses]]
user_transcript = "Hello, I need to book an appointment."
text = "Sure, when would <you> like to come in?"
[[fake.realtime.responses]]
user_transcript = "Tomorrow morning please."
text = "Booked for tomorrow morning."
"#;

#[tokio::test(start_paused = true)]
async fn report_html_opens_in_headless_chromium_with_every_turn_s_audio_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir_all(scenarios.join("booking")).unwrap();
    std::fs::write(scenarios.join("booking/scenario.toml"), BOOKING).unwrap();
    let out = dir.path().join("out");
    let pipeline = repo_path("pipelines/native-fake.toml");
    let mut opts = AbOptions::new(vec![pipeline.clone(), pipeline], scenarios, out.clone());
    opts.start_fakes = true;
    opts.progress = false;
    let report = run_ab(opts).await.unwrap();
    assert_eq!(report.failures().count(), 0);
    // Chromium runs on the real clock.
    tokio::time::resume();

    let url = format!("file://{}", report.html.display());
    let browser = Browser::launch("about:blank", &[]).await;
    let mut page = browser.page().await;
    page.call("Page.navigate", serde_json::json!({ "url": url })).await;
    let loaded = format!("location.href === {url:?} && document.readyState");
    let mut state = serde_json::Value::Null;
    for _ in 0..100 {
        state = page.eval(&loaded).await;
        if state == "complete" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "complete");
    assert_eq!(page.eval("document.title").await, "voxpipe A/B report");
    assert_eq!(
        page.eval("document.querySelectorAll('.check.fail').length").await,
        2,
        "A's and B's failed check"
    );

    // Every turn's caller and both replies: 2 turns × 3, each pointing at a WAV beside the page
    // that Chromium decodes.
    page.eval("document.querySelectorAll('audio').forEach(a => { a.preload = 'auto'; a.load(); })").await;
    let audio = "Array.from(document.querySelectorAll('audio')).map(a => \
                 ({src: a.src, ready: a.readyState, error: a.error && a.error.code, duration: a.duration}))";
    let mut elements = Vec::new();
    for _ in 0..100 {
        elements = page.eval(audio).await.as_array().cloned().unwrap_or_default();
        if elements.iter().all(|a| a["ready"].as_u64() >= Some(1) || !a["error"].is_null()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(elements.len(), 6, "{elements:?}");
    let base = format!("file://{}/", out.display());
    for a in &elements {
        let src = a["src"].as_str().unwrap();
        let rel = src.strip_prefix(&base).unwrap_or_else(|| panic!("{src} is beside the report"));
        assert!(out.join(rel).is_file(), "{src}");
        assert!(a["error"].is_null() && a["ready"].as_u64() >= Some(1), "Chromium loads {src}: {a}");
        assert!(a["duration"].as_f64().unwrap_or(0.0) > 0.2, "{src} holds audio: {a}");
    }

    // The first turn: the caller above both pipelines' replies side by side.
    page.eval("document.querySelector('.turn').scrollIntoView()").await;
    use base64::Engine;
    let shot = page.call("Page.captureScreenshot", serde_json::json!({ "format": "png" })).await;
    let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
    let artifacts = repo_path("target/browser-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let path = artifacts.join("report-html.png");
    std::fs::write(&path, &png).unwrap();
    // A blank 1280×900 page compresses to a few KB; the report's tables and plots do not.
    assert!(png.len() > 20_000, "screenshot of {} bytes looks blank ({})", png.len(), path.display());
}
