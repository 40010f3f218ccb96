//! The status page in a real browser (headless Chromium), as the warehouse lead reads it on
//! a desk and on a phone: during a Taobao outage and after it, the header, the checks and the
//! tables of one page agree, and at a phone's 390 px nothing scrolls sideways.
//!
//! Skips with a message where Chromium is not installed, unless `WMS_REQUIRE_CHROMIUM=1`
//! (set by `.ci/run`, which installs Debian's `chromium`).
//!
//! `cargo test -p wms-e2e --test node_browser -- --ignored screenshots` retakes the README's
//! screenshots of the demo into `docs/screenshots/`.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;
use wms_e2e::browser::{self, Harness, Layout, page};
use wms_e2e::{Node, Sandbox, eventually, node_config};

const SESSION: &str = "e2e-session-browser";

/// The page fits `width`: no sideways scroll, nothing sticking out.
fn fits(l: &Layout, width: u64) {
    assert_eq!(l.inner_width, width, "viewport");
    assert!(
        l.scroll_width <= l.inner_width && l.offenders.is_empty(),
        "the page is {} px wide in a {} px viewport; sticking out: {:#?}",
        l.scroll_width,
        l.inner_width,
        l.offenders
    );
}

/// The header says the worst of the checks, and the Taobao check and the Taobao section's
/// link row say the same thing.
fn agrees(l: &Layout, what: &str) -> (String, Vec<(String, String)>) {
    let html = &l.html;
    let overall = page::overall(html).unwrap_or_else(|| panic!("{what}: no header\n{html}"));
    let checks = page::checks(html);
    assert!(!checks.is_empty(), "{what}: no checks\n{html}");
    let rank = |c: &str| match c {
        "ok" => 0,
        "degraded" => 1,
        "failing" => 2,
        other => panic!("{what}: unknown status class {other}"),
    };
    let worst = checks.iter().map(|(_, c)| rank(c)).max().unwrap_or(0);
    assert_eq!(
        rank(&overall),
        worst,
        "{what}: header {overall} but checks {checks:?}"
    );
    let taobao = page::check(html, "taobao").unwrap();
    let link = page::row(html, "Taobao", "link").unwrap_or_else(|| panic!("{what}\n{html}"));
    match taobao.as_str() {
        "ok" => assert!(link.starts_with("up since "), "{what}: ok but {link}"),
        _ => assert!(
            link.starts_with("down since "),
            "{what}: {taobao} but {link}"
        ),
    }
    // The outbox's link row agrees with the outbox check.
    if let (Some(outbox), Some(olink)) = (
        page::check(html, "outbox"),
        page::row(html, "Outbox", "link"),
    ) && olink.starts_with("down since")
    {
        assert_ne!(outbox, "ok", "{what}: outbox ok but its link is {olink}");
    }
    (overall, checks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_tells_one_story_on_a_desk_and_on_a_phone_during_an_outage_and_after() {
    let Some(chromium) = browser::chromium_or_skip("the browser test") else {
        return;
    };
    let sandbox = Sandbox::start(&["--session", SESSION]).unwrap();
    sandbox
        .post(
            "/sandbox/faults",
            serde_json::json!({"kind": "outage", "seconds": 600}),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = node_config(dir.path(), &sandbox, SESSION, "").unwrap();
    let node = Node::start(&config).await.unwrap();
    let harness = Harness::start(&node.http_url).await.unwrap();

    eventually(Duration::from_secs(15), "taobao degraded", || async {
        let (_, h) = node.get("/healthz").await?;
        Ok((h["checks"]["taobao"]["status"] == "degraded").then_some(()))
    })
    .await
    .unwrap();

    let during = (
        browser::load(&chromium, &harness, 1280, 900).await.unwrap(),
        browser::load(&chromium, &harness, 390, 844).await.unwrap(),
    );
    for (l, w, what) in [
        (&during.0, 1280, "desk, outage"),
        (&during.1, 390, "phone, outage"),
    ] {
        fits(l, w);
        let (overall, _) = agrees(l, what);
        assert_ne!(
            overall, "ok",
            "{what}: the header says ok during the outage"
        );
        assert_eq!(
            page::check(&l.html, "taobao").unwrap(),
            "degraded",
            "{what}"
        );
        let shown = page::row(&l.html, "Taobao", "last success").unwrap();
        assert_eq!(shown, "none since start", "{what}");
    }

    sandbox.delete("/sandbox/faults").await.unwrap();
    eventually(Duration::from_secs(30), "every check ok", || async {
        let (_, h) = node.get("/healthz").await?;
        Ok((h["status"] == "ok").then_some(()))
    })
    .await
    .unwrap();

    let desk = browser::load(&chromium, &harness, 1280, 900).await.unwrap();
    let phone = browser::load(&chromium, &harness, 390, 844).await.unwrap();
    for (l, w, what) in [(&desk, 1280, "desk, after"), (&phone, 390, "phone, after")] {
        fits(l, w);
        let (overall, checks) = agrees(l, what);
        assert_eq!(overall, "ok", "{what}: {checks:?}");
        assert!(
            page::row(&l.html, "Taobao", "last failure")
                .unwrap()
                .ends_with("(recovered since)"),
            "{what}"
        );
    }
    // On the phone the tables' header rows are hidden and every cell is a line of its own;
    // on the desk they are a table.
    assert!(phone.html.contains("id=\"checks-table\""));

    let (exit, _) = node.stop(Duration::from_secs(5)).unwrap();
    assert!(exit.success());
}

/// Retakes `docs/screenshots/status-{desktop,phone,phone-zh}.png` from `wms-node demo` after
/// its outage (authorised, with orders). Run by hand: it needs the demo feature (the default)
/// and, for the Chinese one, a CJK font (Debian: `fonts-wqy-microhei`), or the page's Chinese
/// shows as boxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/screenshots; run with --ignored screenshots"]
async fn screenshots_of_the_demo() {
    demo_screenshots(
        "en",
        &[
            (1280, 1500, "status-desktop.png"),
            (390, 1800, "status-phone.png"),
        ],
    )
    .await;
    demo_screenshots("zh", &[(390, 1800, "status-phone-zh.png")]).await;
}

/// Runs the demo in `language` and takes `shots` (width, height, file in docs/screenshots)
/// of its page once its script is through.
async fn demo_screenshots(language: &str, shots: &[(u32, u32, &str)]) {
    let chromium = browser::chromium().expect("chromium");
    let bin = wms_e2e::binary("wms-node", "wms-node").unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut demo = std::process::Command::new(bin)
        .args([
            "demo",
            "--orders",
            "12",
            "--outage",
            "6s",
            "--language",
            language,
        ])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The demo says when its script is through (orders shipped, stock pushed, checked
    // against the shop) and it only serves the page from then on.
    let stdout = demo.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("The node keeps running") {
                let _ = tx.send(());
            }
        }
    });
    let through = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(300)))
        .await
        .unwrap();
    if through.is_err() {
        let _ = demo.kill();
        panic!("the demo did not finish its script");
    }
    let url = format!("http://127.0.0.1:{port}");
    let ok = eventually(
        Duration::from_secs(60),
        "the demo's page, all ok",
        || async {
            let h: serde_json::Value = reqwest::get(format!("{url}/healthz")).await?.json().await?;
            Ok((h["status"] == "ok").then_some(()))
        },
    )
    .await;
    if let Err(e) = ok {
        let _ = demo.kill();
        panic!("{e}");
    }
    let harness = Harness::start(&url).await.unwrap();
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    let mut result = Ok(());
    for (w, h, file) in shots {
        result = browser::screenshot(&chromium, &harness, *w, *h, &docs.join(file)).await;
        if result.is_err() {
            break;
        }
    }
    let _ = demo.kill();
    let _ = demo.wait();
    result.unwrap();
}
