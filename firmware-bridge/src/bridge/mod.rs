//! The `wms-bridge` daemon: serial scanners and label printers joined to the node's MQTT floor
//! protocol (std only).
//!
//! ## Layout
//!
//! | module | role |
//! |---|---|
//! | [`config`] | the TOML file, validation, compiled-in example |
//! | [`serial`] | termios serial ports as `embedded-io`, wakers, pseudo-terminals for tests |
//! | [`spool`] | the durable per-device queue (fsync before publish, removed on PUBACK) |
//! | [`session`] | one MQTT session per device: delivery, state birth/will, commands |
//! | [`device`] | one thread per serial device running the `no_std` drivers |
//!
//! Reconnects and reopens wait with [`retries`]: the workspace's one backoff
//! ([`crate::pace::Backoff`]) with a floor.
//!
//! ```text
//!            ┌───────────── device thread ─────────────┐      ┌──── session task ────┐
//!  serial ──▶│ Scanner::poll → Scan → Spool::push(fsync)│─note▶│ publish QoS 1 ──────▶│ broker
//!  port   ◀──│ beep · print job ◀──── DeviceCmd ◀───────│◀─cmd─│ cmd topic ◀──────────│
//!            └──────────────────────────────────────────┘      │ PUBACK → Spool::ack  │
//!                                                              └──────────────────────┘
//! ```
//!
//! Each device is its own MQTT client (`{prefix}-{site}-{class}-{id}`), so each has its own last
//! will and can have its own credentials.
//!
//! ## Shutdown
//!
//! [`run`] returns after `shutdown` is cancelled: device threads stop (no new scans), sessions
//! publish their offline state and disconnect within [`session::SHUTDOWN_GRACE`], and the
//! threads are joined with a deadline; a thread that misses it is named in the log. What is
//! still in a spool stays there for the next start.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub mod config;
pub mod device;
pub mod serial;
pub mod session;
pub mod spool;

use config::{Config, ConfigError, LinkKind, parse_broker};
use device::{DeviceCtx, DeviceSender};
use serial::Waker;
use session::{SessionConfig, Topics};
use spool::{Spool, SpoolError};

use crate::proto::topic::Topic;
use crate::proto::{Channel, DeviceClass};

/// Retries for one broker connection or serial port: full jitter from `base` doubling up to
/// `max`, never below a tenth of `base` (at least 10 ms), so that a zero draw does not turn a
/// reconnect loop into a busy loop. Draw each wait with `next_delay(rand::random())`.
pub fn retries(base: Duration, max: Duration) -> crate::pace::Retries {
    let floor = (base / 10).max(Duration::from_millis(10));
    crate::pace::Retries::new(crate::pace::Backoff::new(base, max).with_floor(floor))
}

/// How long shutdown waits for device threads.
pub const THREAD_GRACE: Duration = Duration::from_secs(3);

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// Local I/O failed (spool directory, thread start).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl BridgeError {
    /// Configuration problems are not retryable; I/O and spool problems may be (disk full).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, BridgeError::Config(_))
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BridgeError {
    let what = what.into();
    move |source| BridgeError::Io { what, source }
}

/// Runs every configured device until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), BridgeError> {
    let broker = parse_broker(&config.mqtt.broker).map_err(|e| {
        BridgeError::Config(ConfigError::Invalid {
            path: PathBuf::from("<config>"),
            problems: vec![e],
        })
    })?;
    let spool_dir = &config.bridge.spool_dir;
    std::fs::create_dir_all(spool_dir).map_err(io(format!(
        "cannot create spool directory {}",
        spool_dir.display()
    )))?;

    let mut sessions = Vec::new();
    let mut threads = Vec::new();
    for d in &config.devices {
        let path = spool_dir.join(format!("{}-{}.spool", d.class, d.id));
        let (spool, recovered) = Spool::open(&path, config.bridge.max_queued)?;
        if recovered.pending > 0 || recovered.damaged > 0 {
            info!(
                device = %d.id,
                pending = recovered.pending,
                damaged = recovered.damaged,
                "spool recovered; pending events will be published"
            );
        }
        let spool = Arc::new(Mutex::new(spool));
        let topic = |channel| {
            Topic {
                site: config.bridge.site.as_str(),
                class: d.class,
                id: d.id.as_str(),
                channel,
            }
            .to_string()
        };
        let topics = Topics {
            evt: topic(Channel::Evt),
            cmd: topic(Channel::Cmd),
            reply: topic(Channel::Reply),
            state: topic(Channel::State),
        };
        let session_cfg = SessionConfig {
            client_id: format!(
                "{}-{}-{}-{}",
                config.mqtt.client_id_prefix, config.bridge.site, d.class, d.id
            ),
            broker: broker.clone(),
            credentials: config.credentials(d)?,
            keep_alive: config.mqtt.keep_alive,
            reconnect_min: config.mqtt.reconnect_min,
            reconnect_max: config.mqtt.reconnect_max,
            max_packet_bytes: config.mqtt.max_packet_bytes,
            topics,
            class: d.class,
            heartbeat: config.bridge.heartbeat,
            device: d.id.clone(),
        };
        let (note_tx, note_rx) = tokio::sync::mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
        let waker = Waker::new().map_err(io("cannot create waker"))?;
        let wake = waker.handle().map_err(io("cannot create waker"))?;
        let stop_wake = waker.handle().map_err(io("cannot create waker"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = DeviceCtx {
            cfg: d.clone(),
            spool: spool.clone(),
            notes: note_tx,
            cmds: cmd_rx,
            waker,
            stop: stop.clone(),
        };
        let name = format!("{}-{}", d.class, d.id);
        let (class, link) = (d.class, d.link);
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || match (link, class) {
                (LinkKind::Frame, _) => device::run_framed(ctx),
                (LinkKind::Line, DeviceClass::Printer) => device::run_printer(ctx),
                (LinkKind::Line, _) => device::run_scanner(ctx),
            })
            .map_err(io(format!("cannot start thread {name}")))?;
        threads.push((name, thread, stop, stop_wake));
        sessions.push(tokio::spawn(session::run(
            session_cfg,
            spool,
            note_rx,
            DeviceSender::new(cmd_tx, wake),
            shutdown.clone(),
        )));
    }
    info!(devices = config.devices.len(), site = %config.bridge.site, "wms-bridge running");

    shutdown.cancelled().await;
    info!("shutting down");
    // Devices first: no new scans while the sessions say goodbye.
    for (_, _, stop, wake) in &threads {
        stop.store(true, Ordering::Relaxed);
        wake.wake();
    }
    for s in sessions {
        let _ = s.await;
    }
    let deadline = tokio::time::Instant::now() + THREAD_GRACE;
    for (name, thread, _, _) in threads {
        let joined = tokio::task::spawn_blocking(move || thread.join());
        match tokio::time::timeout_at(deadline, joined).await {
            Ok(_) => {}
            Err(_) => warn!(thread = %name, "device thread did not stop in time"),
        }
    }
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_waits_stay_between_the_floor_and_a_doubling_cap() {
        let mut r = retries(Duration::from_millis(500), Duration::from_secs(30));
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            let ceiling = r.ceiling();
            ceilings.push(ceiling);
            let d = r.next_delay(rand::random());
            assert!(
                d >= Duration::from_millis(50) && d <= ceiling,
                "{d:?} outside [50ms, {ceiling:?}]"
            );
        }
        assert_eq!(r.next_delay(0.0), Duration::from_millis(50));
        assert_eq!(ceilings[0], Duration::from_millis(500));
        assert_eq!(ceilings[5], Duration::from_secs(16));
        assert_eq!(ceilings[9], Duration::from_secs(30));
        // A tiny base still never spins: the floor is at least 10 ms.
        let mut tiny = retries(Duration::from_millis(20), Duration::from_millis(20));
        assert_eq!(tiny.next_delay(0.0), Duration::from_millis(10));
    }
}
