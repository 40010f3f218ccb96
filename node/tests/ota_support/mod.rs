//! A gateway box in a temp dir for the OTA tests: its config with a trusted key, an update
//! server on port 0 (HTTP Range, and a cut or a slow body on demand), test builds (shell
//! scripts that exec `examples/ota_fake_build.rs`), and the real `wms-node` as launcher/CLI.
#![allow(dead_code)]

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wms_node::ota::state::State as OtaState;
use wms_node::ota::verify::SigningKey;
use wms_node::ota::{Manifest, manifest};

pub const BIN: &str = env!("CARGO_BIN_EXE_wms-node");

/// The fake build, built on first use (`cargo test --test ota` does not build examples).
pub fn fake_build() -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let bin = PathBuf::from(BIN);
    let path = bin.parent().unwrap().join("examples/ota_fake_build");
    let _g = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "wms-node", "--example", "ota_fake_build"])
            .status()
            .expect("cargo build")
            .success();
        assert!(ok && path.exists(), "cannot build the fake build");
    }
    path
}

/// What the update server was asked.
#[derive(Default)]
pub struct Served {
    files: Mutex<HashMap<String, Vec<u8>>>,
    /// Cut the next full-body answer after this many bytes (0: do not).
    pub cut_next: AtomicUsize,
    /// Send bodies slowly (1 KiB every 20 ms).
    pub slow: AtomicBool,
    /// The Range header of every artifact request.
    pub ranges: Mutex<Vec<Option<String>>>,
}

pub struct Server {
    pub url: String,
    pub served: Arc<Served>,
    _thread: std::thread::JoinHandle<()>,
}

impl Server {
    pub fn start() -> Server {
        let served = Arc::new(Served::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = served.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new()
                    .route("/{name}", axum::routing::get(serve_file))
                    .with_state(state);
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                let _ = axum::serve(l, app).await;
            });
        });
        Server {
            url,
            served,
            _thread: thread,
        }
    }

    pub fn put(&self, name: &str, bytes: Vec<u8>) -> String {
        self.served
            .files
            .lock()
            .unwrap()
            .insert(name.to_owned(), bytes);
        format!("{}/{name}", self.url)
    }
}

async fn serve_file(
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    State(s): State<Arc<Served>>,
) -> Response {
    let Some(data) = s.files.lock().unwrap().get(&name).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !name.ends_with(".sig") && !name.ends_with(".manifest") {
        s.ranges.lock().unwrap().push(range.clone());
    }
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse().ok())
        .unwrap_or(0);
    if start >= data.len() && !data.is_empty() {
        return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    }
    let body = data[start..].to_vec();
    let len = body.len();
    let mut resp = Response::builder().header(header::CONTENT_LENGTH, len);
    resp = if range.is_some() {
        resp.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{}", data.len() - 1, data.len()),
        )
    } else {
        resp.status(StatusCode::OK)
    };
    let cut = s.cut_next.swap(0, Ordering::SeqCst);
    let slow = s.slow.load(Ordering::SeqCst);
    let body = if cut > 0 && cut < len {
        // Half the body, then the connection breaks.
        let first = axum::body::Bytes::from(body[..cut].to_vec());
        Body::from_stream(futures::StreamExt::then(
            futures::stream::iter([Some(first), None]),
            |c| async move {
                match c {
                    Some(c) => Ok(c),
                    None => {
                        // Let the first half reach the client before the connection breaks.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Err(std::io::Error::other("cut"))
                    }
                }
            },
        ))
    } else if slow {
        let chunks: Vec<axum::body::Bytes> = body
            .chunks(1024)
            .map(|c| axum::body::Bytes::from(c.to_vec()))
            .collect();
        Body::from_stream(futures::StreamExt::then(
            futures::stream::iter(chunks),
            |c| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, std::io::Error>(c)
            },
        ))
    } else {
        Body::from(body)
    };
    resp.body(body).unwrap()
}

/// One gateway box.
pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub data: PathBuf,
    pub key: SigningKey,
    pub server: Server,
    pub http_port: u16,
}

impl Gateway {
    pub fn new() -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (key, _) = SigningKey::generate().unwrap();
        // A fixed free port, so `ota apply` finds the running node's admin API.
        let http_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("node.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\nid = \"gw-ota\"\ndata_dir = \"{}\"\n\
                 [taobao]\napp_key = \"12345678\"\napp_secret = \"test-secret-31337\"\n\
                 endpoint = \"http://127.0.0.1:9/router/rest\"\noauth_url = \"http://127.0.0.1:9/oauth\"\n\
                 [mqtt]\nlisten = \"127.0.0.1:0\"\n\
                 [http]\nlisten = \"127.0.0.1:{http_port}\"\n\
                 [ota]\npublic_keys = [\"{}\"]\ngate_timeout = \"5s\"\nstall_timeout = \"2s\"\n\
                 download_retries = 3\n",
                data.display(),
                key.public_key()
            ),
        )
        .unwrap();
        Gateway {
            dir,
            config,
            data,
            key,
            server: Server::start(),
            http_port,
        }
    }

    /// `wms-node --config C ARGS…` with a clean environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_with(&self.config, args)
    }

    /// `wms-node --config CONFIG ARGS…` with a clean environment.
    fn cmd_with(&self, config: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(config).args(args);
        for (k, _) in std::env::vars_os() {
            let s = k.to_string_lossy();
            if s.starts_with("WMS_NODE")
                || s == "RUST_LOG"
                || s.starts_with("NOTIFY_SOCKET")
                || s.starts_with("WATCHDOG_")
            {
                cmd.env_remove(&k);
            }
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// [`Gateway::run`] with `[node] language = "zh"` (the same config otherwise).
    #[allow(dead_code)]
    pub fn run_zh(&self, args: &[&str]) -> Output {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let zh = self.dir.path().join("node-zh.toml");
        std::fs::write(
            &zh,
            text.replacen("[node]\n", "[node]\nlanguage = \"zh\"\n", 1),
        )
        .unwrap();
        self.cmd_with(&zh, args).output().unwrap()
    }

    /// A test build: a script that execs the fake build with `behaviour`.
    pub fn build(&self, name: &str, behaviour: &str) -> PathBuf {
        let dir = self.dir.path().join("builds");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nexec '{}' '{behaviour}' \"$@\"\n",
                fake_build().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A test build that is the real `wms-node` (its gate opens and migrates the real store).
    pub fn real_build(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join("builds");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\nexec '{BIN}' \"$@\"\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Serves `artifact` and writes a signed manifest for it, as `ota sign` would; `edit`
    /// may spoil the manifest before it is signed.
    pub fn publish(
        &self,
        artifact: &Path,
        version: &str,
        edit: impl FnOnce(&mut Manifest),
    ) -> PathBuf {
        let bytes = std::fs::read(artifact).unwrap();
        let name = artifact.file_name().unwrap().to_string_lossy().into_owned();
        let url = self.server.put(&name, bytes.clone());
        let (size, sha256) = wms_node::ota::install::sha256_file(artifact).unwrap();
        let mut m = Manifest {
            version: version.into(),
            url,
            size,
            sha256,
            key_id: self.key.public_key().key_id(),
        };
        edit(&mut m);
        let mbytes = m.to_bytes();
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let path = self
            .dir
            .path()
            .join(format!("{name}-{version}-{n}.manifest"));
        std::fs::write(&path, &mbytes).unwrap();
        std::fs::write(
            path.with_extension("manifest.sig"),
            manifest::encode_signature(&self.key.sign(&mbytes)),
        )
        .unwrap();
        path
    }

    pub fn apply(&self, manifest: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["ota", "apply", manifest.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    pub fn state(&self) -> OtaState {
        OtaState::load(&wms_node::ota::Paths::new(&self.data)).unwrap()
    }

    pub fn slot_files(&self) -> Vec<PathBuf> {
        let paths = wms_node::ota::Paths::new(&self.data);
        [wms_node::ota::Slot::A, wms_node::ota::Slot::B]
            .into_iter()
            .map(|s| paths.slot_binary(s))
            .filter(|p| p.exists())
            .collect()
    }

    /// Starts the launcher (as systemd would) in its own process group, output to files.
    pub fn launch(&self, label: &str) -> Launched {
        let out = self.dir.path().join(format!("launch-{label}.log"));
        let f = std::fs::File::create(&out).unwrap();
        let child = self
            .cmd(&["launch"])
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .process_group(0)
            .spawn()
            .unwrap();
        Launched { child, log: out }
    }

    /// Waits until the launcher has started a build with `version` and no trial is left.
    pub fn wait_launched(&self, l: &mut Launched, version: &str) -> OtaState {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.state();
            if s.trial.is_none() && s.launched.as_ref().is_some_and(|x| x.version == version) {
                return s;
            }
            if let Ok(Some(status)) = l.child.try_wait() {
                panic!("the launcher exited with {status}:\n{}", l.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "no launch of {version}: {s:?}\n{}",
                l.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub struct Launched {
    pub child: Child,
    pub log: PathBuf,
}

impl Launched {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL to the whole process group (the launcher and any gate it runs): a power cut
    /// as far as these processes are concerned.
    pub fn kill_group(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.wait();
    }

    /// Waits for the log to contain `text`.
    pub fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log_text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no `{text}` in:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_group();
        }
    }
}

impl Gateway {
    /// The SHA-256 a manifest names (the partial download's file name).
    pub fn state_download_sha(&self, manifest: &Path) -> String {
        let m: Manifest = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
        m.sha256
    }
}

impl Gateway {
    /// Gives the embedded broker a fixed free port (instead of 0), so an MQTT client finds it
    /// again after the node restarts into an update; returns it.
    pub fn fix_mqtt_port(&self) -> u16 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = std::fs::read_to_string(&self.config).unwrap();
        let fixed = cfg.replace(
            "[mqtt]\nlisten = \"127.0.0.1:0\"",
            &format!("[mqtt]\nlisten = \"127.0.0.1:{port}\""),
        );
        assert_ne!(cfg, fixed, "the config has an [mqtt] listen on port 0");
        std::fs::write(&self.config, fixed).unwrap();
        port
    }

    /// `devices add ID --class gateway --json` on the stopped node: the fleet link's password.
    pub fn add_fleet_link(&self, id: &str) -> String {
        let out = self.run(&["devices", "add", id, "--class", "gateway", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["device"]["username"], format!("gateway/{id}"));
        v["password"].as_str().unwrap().to_owned()
    }
}
