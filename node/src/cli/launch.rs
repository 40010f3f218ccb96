//! `wms-node launch`: what the systemd unit runs. Decides which build runs (the package's
//! binary or a committed OTA slot), runs a build on trial through its self-test, commits it
//! or rolls it back, then replaces itself (`exec`, same PID) with the chosen build's
//! `wms-node run`. See `wms_node::ota::launch` for the decision and docs/OTA.md.

use super::LogFormatArg;
use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use wms_node::config::LogFormat;
use wms_node::ota::launch::{self, ProcessGate};

/// `wms-node launch` options.
#[derive(Debug, clap::Args)]
pub struct LaunchArgs {
    /// Start every build through this program (e.g. `qemu-aarch64`, to run ARM builds on a
    /// PC that has no binfmt_misc handler for them). Not for gateways.
    #[arg(long, value_name = "PROGRAM", hide = true)]
    pub exec_via: Option<PathBuf>,
}

/// Runs the launcher; returns only if no build could be started.
pub fn run(
    args: LaunchArgs,
    config: &Path,
    log_format: Option<LogFormatArg>,
) -> anyhow::Result<ExitCode> {
    let _ = wms_node::ops::log::init("info", log_format.map_or(LogFormat::Text, LogFormat::from));
    let (opts, warnings) = wms_node::config::launch_options(config);
    for w in warnings {
        tracing::warn!("launcher: {w}");
    }
    let package = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find the launcher's own binary: {e}"))?;
    let mut global: Vec<OsString> = vec!["--config".into(), config.as_os_str().to_owned()];
    if let Some(f) = log_format {
        global.push("--log-format".into());
        global.push(
            match f {
                LogFormatArg::Text => "text",
                LogFormatArg::Json => "json",
            }
            .into(),
        );
    }
    wait_before_restart(&opts.data_dir);
    let gate = ViaGate {
        inner: ProcessGate {
            global_args: global.clone(),
        },
        via: args.exec_via.clone(),
    };
    let choice = launch::prepare(&opts, &package, wms_node::VERSION, &gate);
    tracing::info!(version = %choice.version, slot = ?choice.slot.map(|s| s.name()), "starting {}", choice.binary.display());
    let err = command(args.exec_via.as_deref(), &choice.binary)
        .args(&global)
        .arg("run")
        .env(wms_node::ota::LAUNCHED_ENV, wms_node::VERSION)
        .exec();
    tracing::error!("cannot start {}: {err}", choice.binary.display());
    if choice.slot.is_some() {
        // The slot's binary vanished or is not executable: the package's build still runs.
        let err = command(args.exec_via.as_deref(), &package)
            .args(&global)
            .arg("run")
            .env(wms_node::ota::LAUNCHED_ENV, wms_node::VERSION)
            .exec();
        tracing::error!("cannot start the package's build either: {err}");
    }
    Ok(ExitCode::FAILURE)
}

/// systemd 252 restarts after a fixed `RestartSec=`; a node that keeps failing is started a
/// little later each time here instead (`ops::restarts::launch_delay`), with systemd's start
/// timeout extended to match and the wait shown in `systemctl status`.
fn wait_before_restart(data_dir: &Path) {
    use wms_node::ops::restarts::{Record, boot_id, launch_delay};
    let record = Record::load(data_dir).ok().flatten();
    let Some((wait, why)) = launch_delay(record.as_ref(), boot_id().as_deref()) else {
        return;
    };
    tracing::warn!("launcher: {why}");
    // The unit's TimeoutStartSec= (90 s) is for the start itself; the wait comes on top.
    let extend = wait + std::time::Duration::from_secs(90);
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::ExtendTimeoutUsec(
            u32::try_from(extend.as_micros()).unwrap_or(u32::MAX),
        ),
        sd_notify::NotifyState::Status(&why),
    ]);
    // The launcher is a plain process with no runtime: a plain sleep.
    #[allow(clippy::disallowed_methods)]
    std::thread::sleep(wait);
}

fn command(via: Option<&Path>, binary: &Path) -> Command {
    match via {
        Some(p) => {
            let mut c = Command::new(p);
            c.arg(binary);
            c
        }
        None => Command::new(binary),
    }
}

/// [`ProcessGate`] started through `--exec-via`.
struct ViaGate {
    inner: ProcessGate,
    via: Option<PathBuf>,
}

impl launch::GateRunner for ViaGate {
    fn run(
        &self,
        binary: &Path,
        version: &str,
        store_copy: &Path,
        deadline: std::time::Duration,
    ) -> launch::Verdict {
        match &self.via {
            None => self.inner.run(binary, version, store_copy, deadline),
            Some(via) => {
                let mut args = vec![binary.as_os_str().to_owned()];
                args.extend(self.inner.global_args.iter().cloned());
                ProcessGate { global_args: args }.run(via, version, store_copy, deadline)
            }
        }
    }
}
