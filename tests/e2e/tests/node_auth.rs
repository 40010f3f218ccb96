//! `wms-node auth` while the node runs: the installer authorises a node that is already
//! serving (under systemd, say) without stopping it. The CLI catches the redirect, the running
//! node trades the code through its admin API and uses the tokens without a restart. Real
//! processes: the `taobao-sandbox` binary, `wms-node run`, and `wms-node auth`.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use wms_e2e::{Node, Sandbox, node_config};

/// Runs `wms-node auth ARGS` for the node at `node` (its real port: the config says 0).
fn auth(node: &Node, args: &[&str]) -> Output {
    auth_command(&node.config, node)
        .args(args)
        .output()
        .unwrap()
}

fn auth_command(config: &Path, node: &Node) -> Command {
    let mut cmd = Command::new(wms_e2e::binary("wms-node", "wms-node").unwrap());
    cmd.arg("--config")
        .arg(config)
        .arg("auth")
        .env(
            "WMS_NODE__HTTP__LISTEN",
            node.http_url.trim_start_matches("http://"),
        )
        .stdin(Stdio::null());
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_login_refresh_and_status_go_through_the_running_node() {
    // No pre-issued session: the node starts unauthorised.
    let sandbox = Sandbox::start(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = node_config(dir.path(), &sandbox, "", "").unwrap();
    // The node trades codes only for its configured callback; `auth login` listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let callback = format!("http://127.0.0.1:{port}/callback");
    let text_of = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text_of.replacen(
            "[taobao]\n",
            &format!("[taobao]\nredirect_uri = \"{callback}\"\n"),
            1,
        ),
    )
    .unwrap();
    let node = Node::start(&config).await.unwrap();

    // Not authorised yet: status says so and exits 1, through the node (the store is locked).
    let out = auth(&node, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "null");

    // Another callback is refused before anyone is asked to approve: the node would not
    // trade its code.
    let out = auth(
        &node,
        &["login", "--redirect-uri", "http://127.0.0.1:0/callback"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(&callback), "{}", text(&out));

    // `auth login`: print the URL, the "browser" follows it, the CLI catches the redirect.
    let mut login = auth_command(&config, &node)
        .args(["login", "--timeout", "20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = login.stdout.take().unwrap();
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("/authorize?") {
                let _ = url_tx.send(line.trim().to_owned());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let url = tokio::task::spawn_blocking(move || url_rx.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
        .unwrap();
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), 200);
    let exit = tokio::task::spawn_blocking(move || login.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let printed = reader.join().unwrap();
    assert!(
        exit.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&exit.stderr)
    );
    assert!(printed.contains("Authorised."), "{printed}");
    assert!(
        printed.contains(taobao_sandbox::DEFAULT_SELLER_NICK),
        "{printed}"
    );

    // The node has the tokens: status through it shows an OAuth, refreshable authorisation.
    let out = auth(&node, &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["origin"], "oauth", "{status}");
    assert_eq!(status["refreshable"], true, "{status}");
    assert_eq!(status["shop_nick"], taobao_sandbox::DEFAULT_SELLER_NICK);

    // `auth refresh` through the node stores a new pair: the expiry moves on. (Expiry is
    // kept to the second, so let one pass first.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = auth(&node, &["refresh"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("refresh:  automatic"), "{}", text(&out));
    let out = auth(&node, &["status", "--json"]);
    let refreshed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expiry = |v: &serde_json::Value| v["expires_at"].as_str().unwrap_or_default().to_owned();
    assert!(
        expiry(&refreshed) > expiry(&status),
        "{status} then {refreshed}"
    );

    // The node itself refuses a code for another callback, whoever asks (JSON 400).
    let r = reqwest::Client::new()
        .post(format!("{}/api/auth/code", node.http_url))
        .header("x-wms-node", "1")
        .json(&serde_json::json!({"code": "x", "redirect_uri": "https://evil.example/cb"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains(&callback),
        "{body}"
    );

    // A used code is refused with a hint, and the node keeps its tokens.
    let out = auth(&node, &["exchange", "not-a-code"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("hint: codes are single-use"),
        "{}",
        text(&out)
    );
    let out = auth(&node, &["status"]);
    assert!(out.status.success(), "{}", text(&out));

    let (exit, _) = node.stop(Duration::from_secs(5)).unwrap();
    assert!(exit.success());
}
