//! `wms-node run`: load the config, set up logging, run the daemon until SIGTERM/SIGINT.
//!
//! The first SIGTERM or SIGINT cancels the daemon's token: in-flight work drains and the
//! process exits 0 within 5 s. A second signal while draining exits at once with 130 (the
//! store is crash-safe; this is for an operator who does not want to wait).

use super::{EXIT_USAGE, load_config};
use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wms_node::config::LogFormat;

/// Runs the node with the config at `path`.
pub fn run(path: &Path, log_format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    let Some(config) = load_config(path) else {
        // Under systemd stderr is the journal: the one line that says what to do.
        eprintln!(
            "what to do: fix the configuration ({}; `wms-node check-config` checks it), then \
             start the node again; exit 2: systemd does not restart it until then",
            path.display()
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let format = log_format.unwrap_or(config.log.format);
    if let Err(e) = wms_node::ops::log::init(&config.log.level, format) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(EXIT_USAGE));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wms-node")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = tokio::spawn(on_signals(shutdown.clone()));
        let result = wms_node::daemon::run(config, shutdown).await;
        signals.abort();
        result
    });
    // Blocking tasks (file I/O) that outlive the daemon must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    // Logged rather than printed: under systemd stderr is the journal, and the log line
    // carries the format the operator chose.
    match result {
        Ok(wms_node::daemon::Stopped::Requested) => Ok(ExitCode::SUCCESS),
        // systemd starts the unit again (RestartForceExitStatus=75): the launcher boots the
        // installed update on trial.
        Ok(wms_node::daemon::Stopped::ForUpdate) => {
            tracing::info!("stopped to boot an installed update");
            Ok(ExitCode::from(wms_node::ota::EXIT_RESTART_FOR_UPDATE))
        }
        // The one decision of which exits systemd restarts (daemon::Exit): a damaged or
        // too-new store, an unusable data dir or Taobao setup exit 2, which the unit does not
        // restart (RestartPreventExitStatus=2), instead of crash-looping; the rest exit 1 and
        // are restarted, each time later (the launcher), counted and alerted.
        Err(e) => match e.exit() {
            wms_node::daemon::Exit::Permanent { fix } => {
                tracing::error!("wms-node cannot run: {e}");
                tracing::error!(
                    "what to do: {fix}; exit 2: systemd does not restart it until then"
                );
                Ok(ExitCode::from(EXIT_USAGE))
            }
            wms_node::daemon::Exit::Transient => {
                tracing::error!("wms-node stopped: {e}; exit 1: systemd starts it again");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

/// Cancels `shutdown` on the first SIGTERM/SIGINT, exits the process on the second.
async fn on_signals(shutdown: CancellationToken) {
    let name = match wait_for_signal().await {
        Ok(name) => name,
        Err(e) => {
            // Without signal handlers the node can only be killed; say so, keep running.
            tracing::error!("cannot install signal handlers: {e}");
            return;
        }
    };
    tracing::info!(signal = name, "shutdown requested");
    shutdown.cancel();
    if let Ok(name) = wait_for_signal().await {
        tracing::warn!(signal = name, "second signal while stopping: exiting now");
        std::process::exit(130);
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        // systemd stop, `kill`, container runtimes.
        _ = term.recv() => Ok("SIGTERM"),
        // Ctrl-C at a terminal.
        _ = int.recv() => Ok("SIGINT"),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<&'static str> {
    tokio::signal::ctrl_c().await.map(|()| "Ctrl-C")
}
