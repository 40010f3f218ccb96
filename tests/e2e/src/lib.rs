//! Harness for the end-to-end tests: the real `wms-node` and `taobao-sandbox` binaries,
//! started as processes on free ports, talked to over real HTTP.
//!
//! Binaries are taken from the same target directory as the test executable
//! (`target/debug/`); `cargo test --workspace` builds them before any test runs. When one is
//! missing (e.g. `cargo test -p wms-e2e` on a fresh tree), it is built once with the cargo that
//! runs the tests.
//!
//! Every process is killed when its handle drops, so a failing test leaves nothing behind.

use anyhow::{Context, Result, anyhow, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod browser;

static BUILD: Mutex<()> = Mutex::new(());

/// The path of the workspace binary `name` of package `package`, building it if missing.
pub fn binary(package: &str, name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("test executable path")?;
    // target/<profile>/deps/<test>-<hash> → target/<profile>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("unexpected test executable path {}", exe.display()))?;
    let path = dir.join(name);
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--bin", name])
            .status()
            .context("running cargo build")?;
        if !status.success() || !path.exists() {
            bail!("cannot build {name} ({status})");
        }
    }
    Ok(path)
}

/// A child process that is killed when dropped.
pub struct Proc {
    child: Option<Child>,
    name: &'static str,
}

impl Proc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends SIGTERM (through `kill`, to avoid an unsafe libc call here).
    pub fn terminate(&self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.name);
        }
        Ok(())
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Result<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("{} already reaped", self.name))?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {limit:?}", self.name);
            }
            // Called from tests' plain threads, never from a runtime.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process wrote to stderr so far is in `log` (see [`Node::log`]).
    fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.as_mut().and_then(|c| c.stderr.take())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running `taobao-sandbox` binary.
pub struct Sandbox {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    proc: Proc,
}

/// The sandbox's default app credentials (those of TAOBAO.md's vectors).
pub const APP_KEY: &str = "12345678";
/// See [`APP_KEY`].
pub const APP_SECRET: &str = "helloworld";

impl Sandbox {
    /// Starts the sandbox on a free port with `extra` flags (e.g. `--session TOKEN`).
    pub fn start(extra: &[&str]) -> Result<Sandbox> {
        let bin = binary("taobao-sandbox", "taobao-sandbox")?;
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting taobao-sandbox")?;
        let stdout = child.stdout.take().context("sandbox stdout")?;
        let proc = Proc {
            child: Some(child),
            name: "taobao-sandbox",
        };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the sandbox's first line")?;
        let base_url = line
            .trim()
            .strip_prefix("taobao-sandbox listening on ")
            .ok_or_else(|| anyhow!("unexpected first line from the sandbox: {line:?}"))?
            .to_owned();
        Ok(Sandbox { base_url, proc })
    }

    /// `…/router/rest`.
    pub fn rest_url(&self) -> String {
        format!("{}/router/rest", self.base_url)
    }

    /// `…/oauth`.
    pub fn oauth_url(&self) -> String {
        format!("{}/oauth", self.base_url)
    }

    /// GET an admin path (`/sandbox/...`) as JSON.
    pub async fn get(&self, path: &str) -> Result<serde_json::Value> {
        let r = reqwest::get(format!("{}{path}", self.base_url)).await?;
        let status = r.status();
        let v = r.json().await?;
        if !status.is_success() {
            bail!("GET {path}: {status} {v}");
        }
        Ok(v)
    }

    /// POST JSON to an admin path.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value> {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base_url))
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("POST {path}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// DELETE an admin path.
    pub async fn delete(&self, path: &str) -> Result<()> {
        let r = reqwest::Client::new()
            .delete(format!("{}{path}", self.base_url))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("DELETE {path}: {}", r.status());
        }
        Ok(())
    }

    /// The calls of `method` the sandbox has seen.
    pub async fn calls(&self, method: &str) -> Result<Vec<serde_json::Value>> {
        let v = self.get(&format!("/sandbox/calls?method={method}")).await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Stops the sandbox.
    pub fn stop(self) {
        drop(self.proc);
    }
}

/// A running `wms-node run`.
pub struct Node {
    /// The ops HTTP base URL, `http://127.0.0.1:PORT`.
    pub http_url: String,
    /// The config file it runs with.
    pub config: PathBuf,
    proc: Proc,
    log: std::sync::Arc<Mutex<String>>,
}

/// Writes a node config into `dir` for a sandbox at `sandbox` with a pre-issued `session`
/// (`""`: none, the node starts unauthorised), plus `extra` TOML appended (sections of your
/// own).
pub fn node_config(dir: &Path, sandbox: &Sandbox, session: &str, extra: &str) -> Result<PathBuf> {
    let path = dir.join("node.toml");
    let session = if session.is_empty() {
        String::new()
    } else {
        format!("session = \"{session}\"\n")
    };
    let toml = format!(
        "[node]\nid = \"gw-e2e\"\nsite = \"e2e\"\ndata_dir = \"{data}\"\n\n\
         [taobao]\nendpoint = \"{rest}\"\noauth_url = \"{oauth}\"\napp_key = \"{APP_KEY}\"\n\
         app_secret = \"{APP_SECRET}\"\n{session}\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nlisten = \"127.0.0.1:0\"\n\n{extra}",
        data = dir.join("data").display(),
        rest = sandbox.rest_url(),
        oauth = sandbox.oauth_url(),
    );
    std::fs::write(&path, toml)?;
    Ok(path)
}

impl Node {
    /// Starts `wms-node run --config CONFIG --log-format json` and waits until its ops
    /// server answers (the address is read from its log).
    pub async fn start(config: &Path) -> Result<Node> {
        let bin = binary("wms-node", "wms-node")?;
        let mut cmd = Command::new(bin);
        cmd.args(["run", "--log-format", "json", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("WMS_NODE")
                || k == "RUST_LOG"
                || k == "NOTIFY_SOCKET"
            {
                cmd.env_remove(k);
            }
        }
        let child = cmd.spawn().context("starting wms-node")?;
        let mut proc = Proc {
            child: Some(child),
            name: "wms-node",
        };
        let stderr = proc.take_stderr().context("node stderr")?;
        let log = std::sync::Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("ops HTTP server listening") {
                        let _ = tx.send(line.clone());
                    }
                    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let line = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(20)))
            .await?
            .map_err(|_| anyhow!("wms-node did not start its ops server"))?;
        let v: serde_json::Value = serde_json::from_str(&line)?;
        let addr = v
            .get("addr")
            .and_then(|a| a.as_str())
            .ok_or_else(|| anyhow!("no addr in {line}"))?;
        Ok(Node {
            http_url: format!("http://{addr}"),
            config: config.to_owned(),
            proc,
            log,
        })
    }

    /// GET a path of the ops server as JSON, whatever the status code.
    pub async fn get(&self, path: &str) -> Result<(u16, serde_json::Value)> {
        let r = reqwest::get(format!("{}{path}", self.http_url)).await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await?))
    }

    /// Everything the node logged so far (JSON lines).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(mut self, limit: Duration) -> Result<(ExitStatus, Duration)> {
        let started = Instant::now();
        self.proc.terminate()?;
        let status = self.proc.wait_for_exit(limit)?;
        Ok((status, started.elapsed()))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
