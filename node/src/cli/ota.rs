//! `wms-node ota`: over-the-air updates of the node's own software (docs/OTA.md).
//!
//! `apply` and `status` are for the box (its operator or a fleet tool over ssh); `keygen`
//! and `sign` are the fleet operator's tools on their own machine; `gate` is the self-test
//! the launcher runs a build on trial with (not for people).

use super::{EXIT_USAGE, load_config, load_for_command};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use std::io::{IsTerminal as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wms_node::config::{Broker, Config, LogFormat};
use wms_node::ota::admin::StatusView;
use wms_node::ota::gate::{self, BrokerCheck, Report};
use wms_node::ota::manifest::{self, Manifest};
use wms_node::ota::source::{Answer, Origin};
use wms_node::ota::state::{Outcome, State};
use wms_node::ota::verify::SigningKey;
use wms_node::ota::{
    Installed, Installer, OtaError, OtaEvent, Reporter, SignedManifest, UpdateRequest,
};
use wms_node::status::i18n::{Lang, Msg, pad};

/// `wms-node ota` options.
#[derive(Debug, Args)]
pub struct OtaArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: OtaCommand,
}

/// `wms-node ota` subcommands.
#[derive(Debug, Subcommand)]
pub enum OtaCommand {
    /// Show the running version, both slots, the trial, a download in progress and the last
    /// outcome (from the running node, or from the state file when it is stopped).
    Status {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download, verify and install the update a signed manifest describes, then ask the
    /// running node to restart into it (the launcher runs its self-test and commits it or
    /// brings the previous build back).
    Apply {
        /// The manifest: a file (its signature is `FILE.sig` beside it) or an http(s) URL
        /// (its signature is fetched from `URL.sig`).
        source: String,
        /// Install even an older version (a downgrade) or the running one again.
        #[arg(long)]
        force: bool,
        /// Install only; do not ask the running node to restart.
        #[arg(long)]
        no_restart: bool,
    },
    /// Make a new signing key pair (for the fleet operator, not on a gateway): writes the
    /// private key to FILE (mode 0600) and prints the public key for `[ota] public_keys`.
    Keygen {
        /// Where to write the private key; never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write a signed manifest for a build: ARTIFACT.manifest and ARTIFACT.manifest.sig.
    Sign {
        /// The `wms-node` binary to publish.
        artifact: PathBuf,
        /// The private key file from `ota keygen`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where gateways will download ARTIFACT from.
        #[arg(long)]
        url: String,
        /// The build's version; read from ARTIFACT when not given (and checked against it).
        #[arg(long, value_name = "VERSION")]
        artifact_version: Option<String>,
        /// The manifest to write (its signature goes to MANIFEST.sig).
        #[arg(long, value_name = "MANIFEST")]
        out: Option<PathBuf>,
    },
    /// The self-test of a build on trial, run by the launcher: prints a JSON report, exits 0
    /// if every check passed.
    #[command(hide = true)]
    Gate {
        /// The version the manifest promised.
        #[arg(long)]
        expect_version: String,
        /// Where the store keeps its old file if this build migrates it.
        #[arg(long)]
        store_copy: PathBuf,
    },
}

/// Runs an OTA command.
pub fn run(
    args: OtaArgs,
    config: &Path,
    log_format: Option<LogFormat>,
) -> anyhow::Result<ExitCode> {
    match args.command {
        OtaCommand::Keygen { out } => keygen(&out),
        OtaCommand::Sign {
            artifact,
            key,
            url,
            artifact_version,
            out,
        } => sign(&artifact, &key, &url, artifact_version.as_deref(), out),
        OtaCommand::Gate {
            expect_version,
            store_copy,
        } => Ok(gate(config, log_format, &expect_version, store_copy)),
        OtaCommand::Status { json } => {
            let Some(config) = load_for_command(config, log_format) else {
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            status(&config, json)
        }
        OtaCommand::Apply {
            source,
            force,
            no_restart,
        } => {
            let Some(config) = load_for_command(config, log_format) else {
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            apply(&config, &source, force, no_restart)
        }
    }
}

// ---- apply ----------------------------------------------------------------------------------

fn apply(config: &Config, source: &str, force: bool, no_restart: bool) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let opts = config.ota_options();
        let signed = match read_signed(source, opts.connect_timeout).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e:#}");
                return Ok(ExitCode::FAILURE);
            }
        };
        let lang = config.node.language;
        let installer = Installer::new(opts)?;
        let bar = Bar::new(lang);
        let request = UpdateRequest {
            signed,
            force,
            origin: Origin::Cli,
        };
        let result = installer.handle(&request, &bar).await;
        let installed = match result {
            Ok(i) => i,
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!("{}", lang.t(Msg::OtaNothingInstalled));
                return Ok(ExitCode::FAILURE);
            }
        };
        outln!(
            "{}",
            lang.f(Msg::OtaInstalled, &[&installed.version, &installed.slot])
        );
        if no_restart {
            outln!("{}", lang.t(Msg::OtaNoRestart));
            return Ok(ExitCode::SUCCESS);
        }
        match request_restart(&config.admin_url()).await {
            Ok(()) => outln!("{}", lang.t(Msg::OtaRestarting)),
            Err(RestartError::NotRunning) => {
                outln!("{}", lang.f(Msg::OtaNotRunning, &[&installed.version]));
            }
            Err(RestartError::Refused(msg)) => {
                outln!("{}", lang.f(Msg::OtaRestartRefused, &[&msg]));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The manifest and its signature from a file (`FILE.sig`) or a URL (`URL.sig`). A missing
/// signature is not an error here: the installer refuses it, and records why.
async fn read_signed(source: &str, connect_timeout: Duration) -> anyhow::Result<SignedManifest> {
    let sig_source = format!("{source}.sig");
    let (manifest, sig) = if source.starts_with("http://") || source.starts_with("https://") {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(Duration::from_secs(60))
            .build()?;
        let get = |url: String| {
            let client = client.clone();
            async move {
                let shown = wms_node::ota::error::display_url(&url);
                let resp = client
                    .get(&url)
                    .send()
                    .await
                    .with_context(|| format!("cannot fetch {shown}"))?;
                anyhow::ensure!(
                    resp.status().is_success(),
                    "{shown}: HTTP {}",
                    resp.status()
                );
                let body = resp
                    .bytes()
                    .await
                    .with_context(|| format!("cannot read {shown}"))?;
                anyhow::ensure!(
                    body.len() <= manifest::MAX_MANIFEST_BYTES,
                    "{shown} is larger than a manifest"
                );
                Ok::<_, anyhow::Error>(body.to_vec())
            }
        };
        let manifest = get(source.to_owned()).await?;
        let sig = match get(sig_source.clone()).await {
            Ok(s) => String::from_utf8_lossy(&s).into_owned(),
            Err(e) => {
                eprintln!("no signature: {e:#}");
                String::new()
            }
        };
        (manifest, sig)
    } else {
        let manifest = std::fs::read(source).with_context(|| format!("cannot read {source}"))?;
        let sig = match std::fs::read_to_string(&sig_source) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("no signature: cannot read {sig_source}: {e}");
                String::new()
            }
        };
        (manifest, sig)
    };
    Ok(SignedManifest::from_parts(manifest, &sig))
}

enum RestartError {
    NotRunning,
    Refused(String),
}

async fn request_restart(base: &str) -> Result<(), RestartError> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| RestartError::Refused(e.to_string()))?;
    let (name, value) = wms_node::outbox::admin::ADMIN_HEADER;
    let resp = client
        .post(format!("{base}/api/ota/restart"))
        .header(name, value)
        .send()
        .await
        .map_err(|_| RestartError::NotRunning)?;
    if resp.status().is_success() {
        return Ok(());
    }
    let body: serde_json::Value = resp
        .bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    Err(RestartError::Refused(
        body["error"].as_str().unwrap_or("refused").to_owned(),
    ))
}

/// Download progress on stderr: a redrawn bar on a terminal, a line per 10 % otherwise.
struct Bar {
    tty: bool,
    lang: Lang,
    inner: Mutex<BarState>,
}

struct BarState {
    started: Instant,
    drawn: Option<Instant>,
    last_tenth: u64,
    first_done: Option<u64>,
    open_line: bool,
}

impl Bar {
    fn new(lang: Lang) -> Bar {
        Bar {
            tty: std::io::stderr().is_terminal(),
            lang,
            inner: Mutex::new(BarState {
                started: Instant::now(),
                drawn: None,
                last_tenth: 0,
                first_done: None,
                open_line: false,
            }),
        }
    }

    fn finish(&self) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if s.open_line {
            eprintln!();
            s.open_line = false;
        }
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / 1_048_576.0
}

/// `b` in MiB with one decimal, as the progress lines show it.
fn mib1(b: u64) -> String {
    format!("{:.1}", mib(b))
}

impl Answer for Bar {
    fn finished(&self, _: &Result<Installed, OtaError>) {
        self.finish();
    }
}

impl Reporter for Bar {
    fn report(&self, event: &OtaEvent) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut err = std::io::stderr().lock();
        let lang = self.lang;
        match event {
            OtaEvent::Accepted { version, size } => {
                let _ = writeln!(
                    err,
                    "{}",
                    lang.f(Msg::OtaVerified, &[version, &mib1(*size)])
                );
            }
            OtaEvent::Downloading { done, total } => {
                let first = *s.first_done.get_or_insert(*done);
                if first > 0 && first == *done && s.drawn.is_none() {
                    let _ = writeln!(err, "{}", lang.f(Msg::OtaResuming, &[&mib1(first)]));
                }
                let pct = if *total == 0 { 100 } else { done * 100 / total };
                if self.tty {
                    let due = s
                        .drawn
                        .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
                    if due || done == total {
                        let secs = s.started.elapsed().as_secs_f64().max(0.001);
                        let rate = mib(done.saturating_sub(first)) / secs;
                        let filled = usize::try_from(pct / 4).unwrap_or(25).min(25);
                        let _ = write!(
                            err,
                            "\r  [{}{}] {pct:>3}%  {:.1}/{:.1} MiB  {rate:.1} MiB/s ",
                            "#".repeat(filled),
                            ".".repeat(25 - filled),
                            mib(*done),
                            mib(*total)
                        );
                        s.drawn = Some(Instant::now());
                        s.open_line = true;
                    }
                } else if pct / 10 > s.last_tenth || (s.drawn.is_none() && *done == 0) {
                    s.last_tenth = pct / 10;
                    s.drawn = Some(Instant::now());
                    let line = lang.f(Msg::OtaProgress, &[&pct, &mib1(*done), &mib1(*total)]);
                    let _ = writeln!(err, "  {line}");
                }
            }
            OtaEvent::Retrying {
                attempt,
                after,
                error,
            } => {
                if s.open_line {
                    let _ = writeln!(err);
                    s.open_line = false;
                }
                let after = humantime::format_duration(*after);
                let line = lang.f(Msg::OtaInterrupted, &[error, &after, attempt]);
                let _ = writeln!(err, "  {line}");
            }
            OtaEvent::Checking => {
                if s.open_line {
                    let _ = writeln!(err);
                    s.open_line = false;
                }
                let _ = writeln!(err, "{}", lang.t(Msg::OtaChecking));
            }
            OtaEvent::Installed { .. } => {}
        }
    }
}

// ---- status ---------------------------------------------------------------------------------

fn status(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let opts = config.ota_options();
    let view = match from_running_node(&config.admin_url()) {
        Some(v) => v,
        None => StatusView::read(&opts, false)?,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{}",
        render_status(&view, &opts.paths(), config.node.language)
    );
    Ok(ExitCode::SUCCESS)
}

fn from_running_node(base: &str) -> Option<StatusView> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        let resp = client
            .get(format!("{base}/api/ota/status"))
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.bytes().await.ok()?;
        serde_json::from_slice::<StatusView>(&body).ok()
    })
}

fn when(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn render_status(v: &StatusView, paths: &wms_node::ota::Paths, lang: Lang) -> String {
    use std::fmt::Write as _;
    let s: &State = &v.state;
    let mut out = String::new();
    let mut row = |k: &str, val: String| {
        let _ = writeln!(out, "{} {val}", pad(k, 12));
    };
    let answering = if v.from_running_node {
        ""
    } else {
        lang.t(Msg::OtaNotAnswering)
    };
    row(
        lang.t(Msg::OtaRunning),
        match &s.launched {
            Some(l) => match l.slot {
                Some(slot) => lang.f(Msg::OtaRunningSlot, &[&l.version, &slot, &answering]),
                None => lang.f(
                    Msg::OtaRunningPackage,
                    &[&l.version, &l.package_path, &answering],
                ),
            },
            None => lang.f(Msg::OtaRunningNoLauncher, &[&v.running_version, &answering]),
        },
    );
    if let Some(l) = &s.launched {
        row(
            lang.t(Msg::OtaPackage),
            format!("{} {}", l.package_version, l.package_path),
        );
    }
    for slot in [wms_node::ota::Slot::A, wms_node::ota::Slot::B] {
        let what = if let Some(b) = s.committed.as_ref().filter(|b| b.slot == slot) {
            lang.f(Msg::OtaCommitted, &[&b.version])
        } else if let Some(t) = s.trial.as_ref().filter(|t| t.build.slot == slot) {
            lang.f(Msg::OtaOnTrial, &[&t.build.version, &t.attempts])
        } else if let Some(p) = s.previous.as_ref().filter(|p| p.slot == slot) {
            lang.f(Msg::OtaPrevious, &[&p.version])
        } else if paths.slot_binary(slot).is_file() {
            lang.t(Msg::OtaUnused).into()
        } else {
            lang.t(Msg::OtaEmpty).into()
        };
        row(&lang.f(Msg::OtaSlot, &[&slot]), what);
    }
    if let Some(d) = &s.download {
        row(
            lang.t(Msg::OtaDownload),
            lang.f(
                Msg::OtaDownloadPartial,
                &[
                    &d.version,
                    &mib1(v.download_bytes.unwrap_or(0)),
                    &mib1(d.size),
                ],
            ),
        );
    }
    let last = match &s.last {
        None => lang.t(Msg::OtaNoUpdate).to_owned(),
        Some(Outcome::Installed { version, at_ms }) => {
            lang.f(Msg::OtaLastInstalled, &[version, &when(*at_ms)])
        }
        Some(Outcome::Committed { version, at_ms }) => {
            lang.f(Msg::OtaLastCommitted, &[version, &when(*at_ms)])
        }
        Some(Outcome::RolledBack {
            version,
            reason,
            at_ms,
        }) => lang.f(Msg::OtaLastRolledBack, &[version, &when(*at_ms), reason]),
        Some(Outcome::Failed {
            version,
            reason,
            at_ms,
            ..
        }) => lang.f(
            Msg::OtaLastFailed,
            &[
                &version.as_deref().unwrap_or(lang.t(Msg::OtaAnUpdate)),
                &when(*at_ms),
                reason,
            ],
        ),
    };
    row(lang.t(Msg::OtaLast), last);
    if v.store_copy_kept {
        row(
            lang.t(Msg::OtaStoreCopy),
            lang.f(
                Msg::OtaStoreCopyKept,
                &[&paths.trial_store_copy().display()],
            ),
        );
    }
    row(
        lang.t(Msg::OtaKeys),
        if v.key_ids.is_empty() {
            lang.t(Msg::OtaNoKeys).into()
        } else {
            v.key_ids.join(", ")
        },
    );
    out
}

// ---- gate -----------------------------------------------------------------------------------

fn gate(
    config: &Path,
    log_format: Option<LogFormat>,
    expect: &str,
    store_copy: PathBuf,
) -> ExitCode {
    let mut report = Report::new();
    let loaded = load_config(config);
    if let Some(c) = &loaded {
        let _ = wms_node::ops::log::init("warn", log_format.unwrap_or(c.log.format));
    }
    match loaded {
        None => report.push(
            "config",
            Err(format!("{} is not valid for this build", config.display())),
        ),
        Some(c) => {
            report.push("config", Ok(format!("{} is valid", config.display())));
            let mut store = c.store_options();
            store.migration_copy = Some(store_copy);
            let broker = match c.mqtt.broker() {
                Ok(Broker::Embedded) => BrokerCheck::Embedded(c.mqtt.listen),
                Ok(Broker::External { host, port, .. }) => BrokerCheck::External { host, port },
                Err(_) => BrokerCheck::None,
            };
            gate::run(&mut report, store, &broker, expect);
        }
    }
    outln!("{}", serde_json::to_string(&report).unwrap_or_default());
    if report.passed {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "gate failed: {}",
            report.failure().unwrap_or_else(|| "unknown".into())
        );
        ExitCode::FAILURE
    }
}

// ---- keygen and sign ------------------------------------------------------------------------

fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    let (key, text) = SigningKey::generate().map_err(anyhow::Error::msg)?;
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "error: {} exists; a signing key is never overwritten",
                out.display()
            );
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", out.display())),
    };
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    let pk = key.public_key();
    outln!(
        "private key: {} (keep it secret, off the gateways)",
        out.display()
    );
    outln!("key id:      {}", pk.key_id());
    outln!("public key:  {pk}");
    outln!();
    outln!("On every gateway, in /etc/wms-node/node.toml:");
    outln!("[ota]");
    outln!("public_keys = [\"{pk}\"]");
    Ok(ExitCode::SUCCESS)
}

fn sign(
    artifact: &Path,
    key: &Path,
    url: &str,
    version: Option<&str>,
    out: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(key).with_context(|| format!("cannot read {}", key.display()))?;
    let key =
        SigningKey::from_text(&text).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
    let bytes =
        std::fs::read(artifact).with_context(|| format!("cannot read {}", artifact.display()))?;
    let found = embedded_version(&bytes);
    let version = match (version, found.as_deref()) {
        (Some(v), Some(f)) if v != f => {
            eprintln!(
                "error: --artifact-version {v}, but {} is version {f}",
                artifact.display()
            );
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        (Some(v), _) => v.to_owned(),
        (None, Some(f)) => f.to_owned(),
        (None, None) => {
            eprintln!(
                "error: {} carries no wms-node version marker; name its version with --artifact-version",
                artifact.display()
            );
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let (size, sha256) = wms_node::ota::install::sha256_file(artifact)
        .with_context(|| format!("cannot read {}", artifact.display()))?;
    let m = Manifest {
        version,
        url: url.to_owned(),
        size,
        sha256,
        key_id: key.public_key().key_id(),
    };
    if let Err(e) = m.check() {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let bytes = m.to_bytes();
    let sig = manifest::encode_signature(&key.sign(&bytes));
    let out = out.unwrap_or_else(|| {
        let mut p = artifact.as_os_str().to_owned();
        p.push(".manifest");
        PathBuf::from(p)
    });
    let mut sig_path = out.as_os_str().to_owned();
    sig_path.push(".sig");
    let sig_path = PathBuf::from(sig_path);
    std::fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    std::fs::write(&sig_path, format!("{sig}\n"))
        .with_context(|| format!("cannot write {}", sig_path.display()))?;
    outln!("manifest:  {}", out.display());
    outln!("signature: {}", sig_path.display());
    out!("{}", String::from_utf8_lossy(&bytes));
    Ok(ExitCode::SUCCESS)
}

/// The version in a `wms-node` binary's marker (`\0wms-node-version=X\0`, see
/// `wms_node::VERSION_MARKER`).
fn embedded_version(bytes: &[u8]) -> Option<String> {
    const PREFIX: &[u8] = b"\0wms-node-version=";
    let mut from = 0;
    while let Some(pos) = bytes[from..]
        .windows(PREFIX.len())
        .position(|w| w == PREFIX)
    {
        let start = from + pos + PREFIX.len();
        let tail = &bytes[start..bytes.len().min(start + 64)];
        if let Some(end) = tail.iter().position(|&b| b == 0)
            && let Ok(v) = std::str::from_utf8(&tail[..end])
            && semver::Version::parse(v).is_ok()
        {
            return Some(v.to_owned());
        }
        from = start;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_marker_is_found_among_decoys() {
        let mut b = b"junk\0wms-node-version=\0more\0wms-node-version=1.2.3-rc.1\0tail".to_vec();
        assert_eq!(embedded_version(&b).as_deref(), Some("1.2.3-rc.1"));
        b.truncate(10);
        assert_eq!(embedded_version(&b), None);
        assert_eq!(
            embedded_version(&wms_node::VERSION_MARKER).as_deref(),
            Some(wms_node::VERSION)
        );
    }
}
