//! `wms-node auth` as the operator runs it: the real binary against the in-process sandbox.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod taobao_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use taobao_support::{APP_KEY, APP_SECRET, Env};

const BIN: &str = env!("CARGO_BIN_EXE_wms-node");

/// A config for the sandbox, with its data dir in `dir`.
fn write_config(env: &Env, dir: &Path, redirect_uri: Option<&str>) -> PathBuf {
    let redirect = redirect_uri
        .map(|r| format!("redirect_uri = \"{r}\"\n"))
        .unwrap_or_default();
    let text = format!(
        "[node]\nid = \"test-gw\"\ndata_dir = \"{}\"\n\n[taobao]\nendpoint = \"{}\"\n\
         oauth_url = \"{}\"\napp_key = \"{APP_KEY}\"\napp_secret = \"{APP_SECRET}\"\n{redirect}",
        dir.join("data").display(),
        env.sandbox.rest_url(),
        env.sandbox.oauth_url(),
    );
    let path = dir.join("node.toml");
    if let Err(e) = std::fs::write(&path, text) {
        panic!("{e}");
    }
    path
}

fn wms(config: &Path, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("auth")
        .args(args)
        .output();
    match out {
        Ok(o) => o,
        Err(e) => panic!("cannot run {BIN}: {e}"),
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `auth login`: the binary prints the URL, the "browser" opens it, the binary catches the
/// redirect, stores the tokens and exits 0.
async fn login(config: &Path) -> String {
    let mut child = match Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args([
            "auth",
            "login",
            "--redirect-uri",
            "http://127.0.0.1:0/callback",
            "--timeout",
            "20s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let stdout = match child.stdout.take() {
        Some(s) => s,
        None => panic!("no stdout"),
    };
    // Read lines until the URL shows up; keep the rest for the assertions.
    let (url_tx, url_rx) = tokio::sync::oneshot::channel();
    let reader = std::thread::spawn(move || {
        let mut url_tx = Some(url_tx);
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("/authorize?")
                && let Some(tx) = url_tx.take()
            {
                let _ = tx.send(line.trim().to_owned());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let url = match tokio::time::timeout(Duration::from_secs(20), url_rx).await {
        Ok(Ok(url)) => url,
        other => {
            let _ = child.kill();
            panic!("no URL printed: {other:?}");
        }
    };
    assert!(
        url.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A"),
        "{url}"
    );
    assert!(!url.contains("%3A0%2F"), "port 0 must be replaced: {url}");
    let page = reqwest::get(&url).await;
    assert!(page.is_ok_and(|p| p.status() == 200));
    let status = tokio::task::spawn_blocking(move || child.wait()).await;
    let printed = reader.join().unwrap_or_default();
    match status {
        Ok(Ok(s)) => assert!(s.success(), "login failed: {printed}"),
        other => panic!("{other:?}"),
    }
    printed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_status_shows_the_shop_and_never_a_token() {
    let env = Env::start().await;
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let config = write_config(&env, dir.path(), None);
    let printed = login(&config).await;
    if std::env::var_os("SHOW_OUTPUT").is_some() {
        eprintln!("{printed}");
        eprintln!("{}", text(&wms(&config, &["status"])));
    }
    assert!(printed.contains("Authorised."), "{printed}");
    assert!(
        printed.contains(taobao_sandbox::DEFAULT_SELLER_NICK),
        "{printed}"
    );
    // Sandbox tokens start with 6200/6201 followed by hex: none may be printed.
    assert!(
        !printed.contains("6200") && !printed.contains("6201"),
        "{printed}"
    );

    let status = wms(&config, &["status"]);
    let shown = text(&status);
    assert!(status.status.success(), "{shown}");
    assert!(
        shown.contains(taobao_sandbox::DEFAULT_SELLER_NICK),
        "{shown}"
    );
    assert!(shown.contains("refresh:  automatic"), "{shown}");
    assert!(
        !shown.contains("6200") && !shown.contains(APP_SECRET),
        "{shown}"
    );

    // With `node.language = "zh"` the same status in Chinese, the values in one column.
    let zh = config.with_file_name("node-zh.toml");
    let toml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &zh,
        toml.replacen("[node]\n", "[node]\nlanguage = \"zh\"\n", 1),
    )
    .unwrap();
    let shown = text(&wms(&zh, &["status"]));
    let lines: Vec<&str> = shown.lines().collect();
    assert!(lines[0].starts_with("店铺："), "{shown}");
    assert!(
        shown.contains("令牌到期：") && shown.contains("后"),
        "{shown}"
    );
    let refresh = lines.iter().find(|l| l.starts_with("自动续期：")).unwrap();
    assert!(refresh.contains("自动，最晚可续到"), "{shown}");
    let nick = taobao_sandbox::DEFAULT_SELLER_NICK;
    let col = |l: &str, w: &str| wms_node::status::i18n::width(&l[..l.find(w).unwrap()]);
    assert_eq!(col(lines[0], nick), col(refresh, "自动，"), "{shown}");

    let json = wms(&config, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap_or_default();
    assert_eq!(v["refreshable"], true);
    assert_eq!(v["expired"], false);
    assert_eq!(v["origin"], "oauth");

    let refresh = wms(&config, &["refresh"]);
    assert!(refresh.status.success(), "{}", text(&refresh));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_code_and_a_missing_callback_fail_with_clear_messages() {
    let env = Env::start().await;
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let config = write_config(&env, dir.path(), None);
    // No callback configured: usage error (2).
    let url = wms(&config, &["url"]);
    assert_eq!(url.status.code(), Some(2), "{}", text(&url));
    assert!(text(&url).contains("redirect_uri"));
    // With one, the URL is printed.
    let url = wms(&config, &["url", "--redirect-uri", "http://127.0.0.1:9/cb"]);
    assert!(url.status.success());
    assert!(String::from_utf8_lossy(&url.stdout).contains("response_type=code"));
    // A code Taobao never issued: refused (1).
    let bad = wms(
        &config,
        &[
            "exchange",
            "not-a-code",
            "--redirect-uri",
            "http://127.0.0.1:9/cb",
        ],
    );
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("refused"), "{}", text(&bad));
    // Never authorised: status says so and exits 1.
    let status = wms(&config, &["status"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(text(&status).contains("auth login"), "{}", text(&status));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_node_holding_the_store_is_named() {
    let env = Env::start().await;
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let config = write_config(&env, dir.path(), Some("http://127.0.0.1:9/cb"));
    let opts =
        wms_node::store::StoreOptions::new(dir.path().join("data").join(wms_node::store::FILE));
    let held = match wms_node::store::Store::open(opts, wms_node::ops::alert::Alerts::new()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let status = wms(&config, &["status"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(
        text(&status).contains("the node is running"),
        "{}",
        text(&status)
    );
    let _ = held.close().await;
}
