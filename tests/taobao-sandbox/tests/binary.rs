//! The real `taobao-sandbox` executable: first stdout line, flags, serving, SIGTERM.

// Tests and benches report failures by unwrapping; the sleeps here poll from plain
// threads, never from the runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_taobao-sandbox");

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // Only reached when an assertion failed before the orderly stop.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> (Running, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .trim()
        .strip_prefix("taobao-sandbox listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (Running(child), url)
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test]
async fn the_binary_prints_its_url_serves_the_seed_and_a_session_and_exits_cleanly_on_sigterm() {
    let (mut running, url) = start(&[
        "--listen",
        "127.0.0.1:0",
        "--session",
        "bin-session",
        "--seed",
    ]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let http = reqwest::Client::new();
    let (s, item) = {
        let r = http
            .get(format!("{url}/sandbox/items/600000000001"))
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(s, 200);
    assert_eq!(
        item["skus"].as_array().unwrap().len(),
        4,
        "demo catalogue loaded"
    );
    // A signed call with the pre-issued session passes the session checks.
    let clock: serde_json::Value = http
        .get(format!("{url}/sandbox/clock"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut params = vec![
        ("method", "taobao.item.seller.get".to_string()),
        ("app_key", "12345678".into()),
        ("session", "bin-session".into()),
        ("timestamp", clock["now"].as_str().unwrap().to_string()),
        ("v", "2.0".into()),
        ("format", "json".into()),
        ("simplify", "true".into()),
        ("sign_method", "hmac-sha256".into()),
        ("fields", "num_iid,skus".into()),
        ("num_iid", "600000000001".into()),
    ];
    let sign = taobao_sandbox::sign::sign(
        params.iter().map(|(k, v)| (*k, v.as_str())),
        "helloworld",
        taobao_sandbox::sign::SignMethod::HmacSha256,
    );
    params.push(("sign", sign));
    let v: serde_json::Value = http
        .post(format!("{url}/router/rest"))
        .form(&params)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["item"]["num_iid"], 600000000001i64, "{v}");
    let pid = running.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = wait_exit(&mut running.0, Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn help_documents_the_flags_and_defaults() {
    let out = Command::new(BIN).arg("--help").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--listen",
        "--app-key",
        "--app-secret",
        "--session",
        "--rate",
        "--seed",
        "12345678",
        "helloworld",
        "127.0.0.1:0",
    ] {
        assert!(text.contains(needle), "--help mentions {needle}:\n{text}");
    }
}

#[test]
fn bad_arguments_exit_2_and_an_unusable_address_exits_1() {
    let out = Command::new(BIN)
        .args(["--rate", "fast"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["--rate", "-1"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    // Port 1 on a non-local address cannot be bound.
    let out = Command::new(BIN)
        .args(["--listen", "192.0.2.1:1"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}
