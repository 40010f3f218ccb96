//! `run(config, shutdown)`: the task tree and its orderly shutdown.
//!
//! ```text
//!  start:  data_dir ─▶ ops HTTP port bound ─▶ store opens ─▶ alerts restored from it
//!          ─▶ Taobao client, outbox ─▶ tasks spawned (alerts, outbox, auth-resume, carriers,
//!          intake, ops-http) ─▶ READY=1 (systemd)
//!  serve:  until the shutdown token is cancelled (SIGTERM/SIGINT, or the caller) or a task fails
//!  stop:   STOPPING=1 ─▶ cancel ─▶ wait ≤ SHUTDOWN_DEADLINE ─▶ abort stragglers, by name
//!          ─▶ store closes last ─▶ return
//! ```
//!
//! The port is bound first, so a port clash (another node, a leftover process) fails before
//! the store is opened or any task runs.
//!
//! Every task is spawned through one [`Tasks`] (a `TaskTracker` that knows names), and every
//! task watches the same cancellation token, so a SIGTERM drains in-flight work and the
//! process exits within 5 s. A task that fails or panics stops the whole node with an error
//! (systemd restarts it) instead of leaving it half-alive. With systemd's `Type=notify` the
//! node says READY=1 once it serves, pings WATCHDOG=1 at half of `WATCHDOG_USEC`, and says
//! STOPPING=1 when it begins to stop; without systemd these are no-ops.
//!
//! Must never: block the runtime, exit without closing the store, or give up on shutdown
//! silently (every straggler is named in the log).

use crate::alert::Alerts;
use crate::config::Config;
use crate::ops::http::OpsState;
use crate::ops::restarts::{Ended, Restarts};
use crate::outbox::Outbox;
use crate::status::StatusSource;
use crate::status::health::Health;
use crate::store::{OpenError, Store, StoreError};
use crate::taobao::outbox::TaobaoOp;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long tasks get to finish after shutdown begins, before they are aborted. Together
/// with [`FORCE_WAIT`] and closing the store this stays under systemd's and our 5 s.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(4);

/// How long aborted tasks get to unwind.
pub const FORCE_WAIT: Duration = Duration::from_millis(500);

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// `node.data_dir` could not be created. Fix permissions or the path.
    #[error("cannot create data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The ops HTTP address could not be bound (in use, or not an address of this host).
    #[error("cannot listen for ops HTTP on {addr} ({key}): {source}")]
    Bind {
        /// `http.listen` or `http.status_listen`.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened (in use by another process, unreadable, too new).
    #[error("store: {0}")]
    Store(#[from] OpenError),
    /// The Taobao client could not be built (bad endpoint) or its tokens not loaded.
    #[error("taobao: {0}")]
    Taobao(#[source] crate::taobao::setup::SetupError),
    /// The floor could not start: the embedded broker's port (`mqtt.listen`) is taken, a TLS
    /// file is unreadable, or the device registry could not be read.
    #[error("floor: {0}")]
    Floor(#[from] crate::floor::FloorError),
    /// A task failed or panicked; the node stopped the others.
    #[error("task `{task}` failed: {message}")]
    Task {
        /// Its name.
        task: &'static str,
        /// What it said (no secrets: tasks report ids and classes).
        message: String,
    },
}

/// Whether a restart can cure what stopped the node: the one decision of which exits
/// systemd restarts (the unit's `RestartPreventExitStatus=2`; docs/OPERATIONS.md, *Starting,
/// stopping, exit codes*).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Starting again changes nothing (a bad configuration, a damaged store, a store written
    /// by a newer release): exit 2, not restarted. `fix` is the one line that says what to do.
    Permanent {
        /// What the operator does about it.
        fix: String,
    },
    /// It may pass (a full disk, an I/O error, a port still held, a failed or panicked
    /// task): exit 1, restarted, each time a little later, counted and alerted from the third
    /// in a row ([`crate::ops::restarts`]).
    Transient,
}

impl DaemonError {
    /// Whether a restart may cure this; see [`Exit`].
    pub fn exit(&self) -> Exit {
        let permanent = |fix: String| Exit::Permanent { fix };
        match self {
            DaemonError::DataDir { path, source } if is_permission(source) => permanent(format!(
                "make {} writable by the service user (the unit's StateDirectory= creates \
                 /var/lib/wms-node), then start the node again",
                path.display()
            )),
            // A full or failing disk may recover.
            DaemonError::DataDir { .. } => Exit::Transient,
            DaemonError::Bind { key, addr, source } if is_permission(source) => permanent(format!(
                "{key} {addr} needs privileges the node does not have: use a port above \
                 1023, then start the node again"
            )),
            // A port still held by the previous instance frees up; at boot an address may
            // not be assigned yet.
            DaemonError::Bind { .. } => Exit::Transient,
            DaemonError::Task { .. } => Exit::Transient,
            DaemonError::Store(e) => store_exit(e),
            DaemonError::Taobao(crate::taobao::setup::SetupError::Build(_)) => permanent(
                "fix [taobao] in the config file (`wms-node check-config` checks it), then \
                 start the node again"
                    .into(),
            ),
            DaemonError::Taobao(crate::taobao::setup::SetupError::Tokens(e)) => {
                match e.disposition() {
                    crate::taobao::Disposition::Retry { .. } => Exit::Transient,
                    _ => permanent(
                        "the stored Taobao authorisation cannot be read: with the node stopped, \
                         run `wms-node auth login` (it writes a fresh one), then start the node"
                            .into(),
                    ),
                }
            }
            // A broker port still held by the previous instance frees up; a registry that
            // cannot be read waits for the store like the store itself.
            DaemonError::Floor(crate::floor::FloorError::Broker(_)) => Exit::Transient,
            DaemonError::Floor(crate::floor::FloorError::Store(e))
                if e.disposition() != crate::store::Disposition::Permanent =>
            {
                Exit::Transient
            }
            DaemonError::Floor(crate::floor::FloorError::Client(e)) => permanent(format!(
                "fix [mqtt]'s TLS files ({e}; `wms-node check-config` checks them), then start \
                 the node again"
            )),
            DaemonError::Floor(crate::floor::FloorError::Files(_)) => Exit::Transient,
            DaemonError::Floor(crate::floor::FloorError::Store(_)) => permanent(
                "the device registry in the store cannot be read: keep the store and report \
                 the error above"
                    .into(),
            ),
        }
    }

    /// Whether starting again may help without changing anything (systemd's restart).
    pub fn is_retryable(&self) -> bool {
        self.exit() == Exit::Transient
    }
}

fn is_permission(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}

/// The store's failures to open as exits. Permanent: another process holds the file (a
/// second node or a command started by hand: restarting would only collide with it again), a
/// damaged file, one from a newer release, a file format or a migration step this build
/// cannot get past, a permission. Transient: a full disk and I/O errors (space is freed, a
/// device comes back), and a migration or set-up step that failed on them.
fn store_exit(e: &OpenError) -> Exit {
    let damaged = |what: String| Exit::Permanent {
        fix: format!(
            "{what} is damaged: keep it (it holds the queue), move it aside \
             (`mv FILE FILE.damaged`), restore the last backup or start empty, then start the \
             node again (docs/OPERATIONS.md, Troubleshooting)"
        ),
    };
    let store = |path: &std::path::Path| format!("the store {}", path.display());
    match e {
        OpenError::InUse { path } => Exit::Permanent {
            fix: format!(
                "another process holds the store {} (a second `wms-node run`, or a command \
                 started by hand on it): stop that process, then start the node again",
                path.display()
            ),
        },
        OpenError::Damaged { path, source } => match &**source {
            redb::DatabaseError::UpgradeRequired(_) => Exit::Permanent {
                fix: format!(
                    "{} is in a file format this build cannot read: start the release that \
                     wrote it, or restore a backup",
                    path.display()
                ),
            },
            _ => damaged(store(path)),
        },
        OpenError::SchemaTooNew { path, .. } => Exit::Permanent {
            fix: format!(
                "{} was written by a newer wms-node: install that version again (package or \
                 OTA), never start empty over it (docs/OPERATIONS.md, Troubleshooting)",
                path.display()
            ),
        },
        OpenError::Convert { legacy, .. } => Exit::Permanent {
            fix: format!(
                "the earlier release's store {} cannot be converted: keep it (the earlier \
                 release still reads it), move it aside to start empty, or run that release \
                 (docs/OPERATIONS.md, Troubleshooting)",
                legacy.display()
            ),
        },
        OpenError::Io { path, source } if is_permission(source) => Exit::Permanent {
            fix: format!(
                "make {} readable and writable by the service user, then start the node again",
                path.display()
            ),
        },
        OpenError::DiskFull { .. } | OpenError::Io { .. } => Exit::Transient,
        // A step that ran out of room or hit an I/O error is retried at the next start, which
        // succeeds once there is space; one that failed otherwise fails the same way again.
        OpenError::Migration { source, .. } if waits_for_the_disk(source) => Exit::Transient,
        OpenError::Migration { part, to, .. } => Exit::Permanent {
            fix: format!(
                "migrating the store's {part} schema to version {to} failed (nothing was \
                 changed): keep the store, run the previous release again and report the error \
                 above"
            ),
        },
        // Its metadata does not read: damage. Anything else (the disk, a bug) is left to the
        // restarts, whose loop is alerted.
        OpenError::Setup { path, source } if is_corruption(source) => damaged(store(path)),
        OpenError::Setup { .. } => Exit::Transient,
    }
}

/// A full disk or an I/O error (not damage found in the file).
fn waits_for_the_disk(e: &StoreError) -> bool {
    !is_corruption(e) && e.disposition() == crate::store::Disposition::WaitForStore
}

fn is_corruption(e: &StoreError) -> bool {
    match e {
        StoreError::Corrupt { .. } => true,
        StoreError::Database(db) => matches!(**db, redb::Error::Corrupted(_)),
        _ => false,
    }
}

/// Why the node stopped without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Its shutdown token was cancelled (SIGTERM, SIGINT, the embedding code).
    Requested,
    /// It stopped so that the launcher boots an installed update (`POST /api/ota/restart`);
    /// the CLI exits with [`crate::ota::EXIT_RESTART_FOR_UPDATE`].
    ForUpdate,
}

/// Runs the node until `shutdown` is cancelled, then stops it in order. Returns how it
/// stopped after a requested shutdown, or the first failure that made it stop by itself.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<Stopped, DaemonError> {
    start(config, shutdown).await?.serve().await
}

/// A node that has started: its tasks run and it has said READY. Code that embeds the node
/// (`wms-node demo`) uses its parts, then calls [`serve`](Started::serve).
pub struct Started {
    /// The outbox of Taobao effects (producers enqueue into it).
    pub outbox: Outbox<TaobaoOp>,
    /// Where the ops HTTP server listens (the real port when the config says 0).
    pub http_addr: SocketAddr,
    /// Where the read-only status views listen (`http.status_listen`), if configured.
    pub status_addr: Option<SocketAddr>,
    /// The node's health checks.
    pub health: Health,
    /// Committed warehouse events (orders arrived, held, released, …).
    pub bus: crate::wms::Bus,
    /// The order intake's progress.
    pub intake: crate::sync::intake::IntakeHandle,
    /// The store (for embedding code that commits through `wms/`).
    pub store: Store,
    /// Goods out: stock, shipments, waybills, reconciliation (the admin API's backend).
    pub goods: crate::ops::goods::GoodsAdmin,
    /// Where the embedded MQTT broker listens (the real port when `mqtt.listen` says 0);
    /// `None` with an external broker.
    pub mqtt_addr: Option<SocketAddr>,
    /// Publishes the node's alert messages on `wms/{site}/gateway/{id}/alert`.
    pub alert_publisher: crate::floor::alerts::AlertPublisher,
    /// The floor's devices (`wms-node devices …` on this node: the broker follows at once).
    pub devices: crate::floor::admin::DeviceAdmin,
    taobao: crate::taobao::setup::Taobao,
    tasks: Tasks,
    failures: mpsc::UnboundedReceiver<(&'static str, String)>,
    token: CancellationToken,
    restart: crate::ota::admin::RestartHandle,
    restarts: Restarts,
}

/// Starts the node, in this order: the data directory, the ops HTTP port (bound first, so a
/// port clash fails before anything else starts), the store, the Taobao side and the outbox,
/// then every task (the ops server among them) and READY. Stopping is [`Started::serve`]'s
/// job.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Started, DaemonError> {
    log_start(&config);
    create_data_dir(&config)?;
    let alerts = Alerts::new();
    // The recorder first: the restart count is recorded right below.
    let _ = crate::ops::metrics::handle();
    // How the previous run ended: a restart after a crash or a failure is counted (and
    // alerted from the third in a row) before anything else can fail.
    let restarts = Restarts::begin(
        &config.node.data_dir,
        alerts.clone(),
        crate::store::now_ms(),
        crate::ops::restarts::boot_id(),
    );
    match start_parts(config, shutdown, alerts, restarts.clone()).await {
        Ok(started) => Ok(started),
        Err(e) => {
            restarts.end(ended_by(&e));
            Err(e)
        }
    }
}

/// How a run that stops with `e` ended, for the restart record.
fn ended_by(e: &DaemonError) -> Ended {
    match e.exit() {
        Exit::Permanent { .. } => Ended::Permanent {
            reason: e.to_string(),
        },
        Exit::Transient => Ended::Failed {
            reason: e.to_string(),
        },
    }
}

async fn start_parts(
    config: Config,
    shutdown: CancellationToken,
    alerts: Alerts,
    restarts: Restarts,
) -> Result<Started, DaemonError> {
    // Our own child token: a failing task cancels it without touching the caller's.
    let token = shutdown.child_token();
    let listener = bind_ops("http.listen", config.http.listen).await?;
    let status_listener = match config.http.status_listen {
        Some(addr) => Some(bind_ops("http.status_listen", addr).await?),
        None => None,
    };
    let health = Health::new();
    let metrics = crate::ops::metrics::handle();
    metrics::gauge!("wms_node_build_info", "version" => crate::VERSION).set(1.0);

    let store = open_store(&config, &alerts, &health).await?;
    // Alerts: restored from the store, kept in it, told to people. Started before the
    // other parts so that what they raise at start is merged into the stored episodes.
    let mut notifier =
        crate::ops::notify::Notifier::new(alerts.clone(), store.clone(), config.alerts_options())
            .with_health(health.clone());
    if let Err(e) = notifier.restore().await {
        tracing::error!(error = %e, "cannot read the alerts from the store yet; trying again");
    }
    let notices = notifier.outbox().clone();
    let taobao =
        crate::taobao::setup::connect(&config.taobao_options(), store.clone(), alerts.clone())
            .await
            .map_err(DaemonError::Taobao)?;
    let outbox: Outbox<TaobaoOp> =
        Outbox::new(store.clone(), config.outbox_options(), alerts.clone())
            .with_health(health.clone());

    // OTA: the restart that boots an installed update, its status, and the alert for an
    // update that failed or was rolled back (decided by the launcher before we started).
    let restart = crate::ota::admin::RestartHandle::new(token.clone());
    let launched = std::env::var_os(crate::ota::LAUNCHED_ENV).is_some();
    let ota = crate::ota::admin::OtaAdmin::new(config.ota_options(), restart.clone(), launched);
    ota.raise_alerts(&alerts);

    let warehouse = Warehouse::new(&config, &taobao, &store, &outbox, &health, &alerts);
    // The floor: the embedded broker binds here, so a taken MQTT port fails the start. Its
    // flows' changes go on the warehouse's bus; orders going on hold come back from it; the
    // node's own `cmd` topic (OTA updates from a fleet link) goes to ota/.
    let (floor_events, floor_events_rx) = tokio::sync::mpsc::unbounded_channel();
    let (ota_commands, ota_commands_rx) = tokio::sync::mpsc::channel(8);
    let flows = crate::floor::flows::Flows::new(warehouse.shop.clone())
        .with_goods(crate::floor::flows::Goods {
            outbox: outbox.clone(),
            merge: config.shipping.merge_orders,
        })
        .with_stations(config.floor_stations())
        .with_lang(config.floor_language());
    let floor = crate::floor::Floor::start(
        config.floor_options(),
        store.clone(),
        flows,
        Some(floor_events),
    )
    .await?
    .with_holds_from(&warehouse.bus, warehouse.shop.as_str())
    .with_gateway_commands(ota_commands)
    .with_labels(warehouse.shop.clone(), Arc::new(warehouse.labels.clone()));
    let mqtt_addr = floor.broker_addr;
    let devices = floor.admin.clone();
    let floor_devices = devices.clone();
    let floor_section = crate::floor::status::FloorSection::new(
        store.clone(),
        floor.presence.clone(),
        floor.connected.clone(),
        match (mqtt_addr, config.mqtt.broker()) {
            (Some(addr), _) => format!("embedded, listening on {addr}"),
            (None, Ok(crate::config::Broker::External { host, port, tls })) => format!(
                "external: {}://{host}:{port}",
                if tls { "mqtts" } else { "mqtt" }
            ),
            (None, _) => "external".to_owned(),
        },
    );

    let (tasks, failures) = Tasks::new();
    tasks.spawn("alerts", notifier.run(token.clone()));
    let (alert_publisher, alert_task) = crate::floor::alerts::publisher(
        floor.client.clone(),
        &config.node.site,
        &config.node.id,
        token.clone(),
    );
    tasks.spawn("floor-alerts", alert_task);
    tasks.spawn(
        "alerts-mqtt",
        publish_alerts(
            alerts.clone(),
            alert_publisher.clone(),
            config.node.id.clone(),
            config.node.site.clone(),
            token.clone(),
        ),
    );
    // Before a restart into an update, devices are told to wait until the new build runs;
    // this build runs, so the trial (if any) was decided: the floor works again.
    let pause = crate::floor::pause::FloorPause::new(
        floor.client.clone(),
        &config.node.site,
        floor.admin.clone(),
        config.floor_language(),
    );
    if ota.floor_paused() {
        let (pause, ota) = (pause.clone(), ota.clone());
        tokio::spawn(async move {
            pause.set(false).await;
            ota.set_floor_paused(false);
        });
    }
    {
        let ota = ota.clone();
        restart.before_restart(Arc::new(move || {
            let (pause, ota) = (pause.clone(), ota.clone());
            Box::pin(async move {
                ota.set_floor_paused(true);
                pause.set(true).await;
            })
        }));
    }
    match crate::ota::Installer::new(config.ota_options()) {
        Ok(installer) => tasks.spawn(
            "ota-mqtt",
            crate::ota::mqtt::MqttUpdates::new(
                installer,
                floor.client.clone(),
                &config.node.site,
                &config.node.id,
                ota.clone(),
                alerts.clone(),
            )
            .run(ota_commands_rx, token.clone()),
        ),
        // The node runs without its MQTT update path; `ota apply` says the same error.
        Err(e) => tracing::error!(error = %e, "OTA over MQTT is off: cannot set up the installer"),
    }
    tasks.spawn("floor", floor.run(token.clone()));
    tasks.spawn(
        "floor-events",
        forward_events(
            floor_events_rx,
            warehouse.bus.clone(),
            warehouse.shop.clone(),
            token.clone(),
        ),
    );
    spawn_jobs(
        &tasks, &outbox, &taobao, &store, &health, &alerts, &token, &warehouse,
    );
    tasks.spawn("intake", warehouse.intake.run(token.clone()));
    tasks.spawn("stock-feed", warehouse.feed.run(token.clone()));
    tasks.spawn("deadlines", warehouse.deadlines.run(token.clone()));
    tasks.spawn("reconcile", warehouse.reconcile.run(token.clone()));
    tasks.spawn("restarts", restarts.clone().watch(token.clone()));
    tasks.spawn(
        "ota-alerts",
        ota.clone()
            .watch_alerts(alerts.clone(), Duration::from_secs(30), token.clone()),
    );
    let ops = OpsState {
        local: config.local_time(),
        lang: config.node.language,
        node_id: config.node.id.clone(),
        site: config.node.site.clone(),
        health: health.clone(),
        alerts: alerts.clone(),
        metrics,
        sections: {
            let mut v = vec![
                Arc::new(crate::taobao::status::TaobaoSection::new(
                    taobao.client.clone(),
                    taobao.tokens.clone(),
                )) as Arc<dyn StatusSource>,
                Arc::new(warehouse.section) as Arc<dyn StatusSource>,
                Arc::new(warehouse.goods_section) as Arc<dyn StatusSource>,
                Arc::new(floor_section) as Arc<dyn StatusSource>,
                Arc::new(outbox.clone()) as Arc<dyn StatusSource>,
                Arc::new(store.clone()) as Arc<dyn StatusSource>,
            ];
            if config.alerts.webhook != crate::config::AlertWebhook::None {
                v.push(Arc::new(notices) as Arc<dyn StatusSource>);
            }
            v
        },
    };
    let admin = crate::ops::http::admin_api(
        axum::Router::new()
            .merge(crate::outbox::admin::router(outbox.admin()))
            .merge(crate::ops::orders::router(warehouse.admin))
            .merge(crate::ops::goods::router(warehouse.goods.clone()))
            .merge(crate::taobao::admin::router(
                taobao.tokens.clone(),
                config.taobao.oauth_options(None),
            ))
            .merge(crate::ota::admin::router(ota))
            .merge(crate::ops::notify::router(alerts.clone()))
            .merge(crate::floor::admin::router(devices)),
    );
    tasks.spawn("observe", observe(ops.clone(), token.clone()));
    let mut status_addr = None;
    if let Some(l) = status_listener {
        // The read-only views for the warehouse network; the admin API is not served here.
        let addr = l.local_addr().ok();
        status_addr = addr;
        let app = crate::ops::http::guard(
            crate::ops::http::router(ops.clone()),
            config.http.hosts.clone(),
        );
        tasks.spawn(
            "status-http",
            crate::ops::http::serve(l, app, config.http_options(), token.clone()),
        );
        tracing::info!(addr = ?addr, "status page listening (read-only, no admin API)");
    }
    let http_addr = spawn_ops_http(
        &tasks,
        listener,
        ops,
        admin,
        config.http.hosts.clone(),
        config.http_options(),
        &token,
    );
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        tasks.spawn("watchdog", watchdog(timeout, token.clone()));
    }
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("serving"),
    ]);
    tracing::info!("ready");
    Ok(Started {
        outbox,
        http_addr,
        status_addr,
        health,
        bus: warehouse.bus,
        intake: warehouse.handle,
        goods: warehouse.goods,
        store,
        mqtt_addr,
        alert_publisher,
        devices: floor_devices,
        taobao,
        tasks,
        failures,
        token,
        restart,
        restarts,
    })
}

fn log_start(config: &Config) {
    tracing::info!(
        version = crate::VERSION,
        node_id = %config.node.id,
        site = %config.node.site,
        data_dir = %config.node.data_dir.display(),
        "wms-node starting"
    );
}

fn create_data_dir(config: &Config) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&config.node.data_dir).map_err(|source| DaemonError::DataDir {
        path: config.node.data_dir.clone(),
        source,
    })
}

/// Binds `http.listen`. Nothing is served until [`spawn_ops_http`]; connections wait in the
/// backlog meanwhile.
async fn bind_ops(
    key: &'static str,
    addr: SocketAddr,
) -> Result<tokio::net::TcpListener, DaemonError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { key, addr, source })
}

/// Opens the store off the runtime: opening repairs after a power cut and never blocks on
/// another process (a second `wms-node` gets a clear "in use" error).
async fn open_store(
    config: &Config,
    alerts: &Alerts,
    health: &Health,
) -> Result<Store, DaemonError> {
    let store_opts = config.store_options();
    let alerts = alerts.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(store_opts, alerts))
        .await
        .map_err(|e| DaemonError::Task {
            task: "store-open",
            message: e.to_string(),
        })??;
    health.ok(crate::status::health::CheckName::Store, "open");
    Ok(store)
}

/// Takes a snapshot every 5 s, so check changes are logged and gauges move while nobody
/// looks at the page (each request takes its own as well).
async fn observe(ops: OpsState, token: CancellationToken) -> Result<(), Infallible> {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = tick.tick() => {
                let _ = crate::ops::http::Snapshot::take(&ops, crate::status::i18n::Lang::En);
            }
        }
    }
}

/// The node's alerts (raised, updated, resolved) onto its MQTT topic
/// `wms/{site}/gateway/{id}/alert`, for supervisors' tools on the warehouse network. The
/// alerts active at start (restored from the store, or raised before this task ran: a restart
/// loop is found before the floor starts) are announced first as `raised`, and again after
/// falling behind. The alerts themselves are kept in the store; a message the broker did not
/// take is not retried here (the status page, `/healthz` and the webhooks carry the same
/// alerts).
async fn publish_alerts(
    alerts: Alerts,
    publisher: crate::floor::alerts::AlertPublisher,
    node: String,
    site: String,
    token: CancellationToken,
) -> Result<(), Infallible> {
    use tokio::sync::broadcast::error::RecvError;
    let mut events = alerts.subscribe();
    let announce = |kind, a: &crate::alert::Alert| {
        if !publisher.publish(&a.to_message(kind, &node, &site)) {
            tracing::debug!(code = %a.code, "alert not published on MQTT (queue full)");
        }
    };
    for a in alerts.active() {
        announce(crate::alert::AlertEventKind::Raised, &a);
    }
    loop {
        let event = tokio::select! {
            // Shutdown.
            _ = token.cancelled() => return Ok(()),
            // The next change of an alert.
            e = events.recv() => e,
        };
        match event {
            Ok(e) => announce(e.kind, &e.alert),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    skipped = n,
                    "alert changes not published on MQTT (too many at once); the active ones again"
                );
                for a in alerts.active() {
                    announce(crate::alert::AlertEventKind::Raised, &a);
                }
            }
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

/// The floor's committed changes onto the warehouse's bus (the status page, holds).
async fn forward_events(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<crate::wms::Event>,
    bus: crate::wms::Bus,
    shop: crate::wms::ShopId,
    token: CancellationToken,
) -> Result<(), Infallible> {
    loop {
        tokio::select! {
            // Shutdown.
            _ = token.cancelled() => return Ok(()),
            // A committed change of the floor.
            e = rx.recv() => match e {
                Some(e) => bus.publish(shop.as_str(), vec![e]),
                None => return Ok(()),
            },
        }
    }
}

/// Mirrors the store's health into the `store` check until shutdown.
async fn report_store_health(
    mut watch: tokio::sync::watch::Receiver<crate::store::StoreHealth>,
    health: Health,
    token: CancellationToken,
) -> Result<(), Infallible> {
    use crate::status::health::{CheckName, Status};
    loop {
        let now = watch.borrow_and_update().clone();
        match now.problem {
            None => health.ok(CheckName::Store, "open; writes are durable"),
            Some(problem) => health.set(CheckName::Store, Status::Failing, problem),
        }
        tokio::select! {
            // Shutdown: the store closes last, after this task.
            _ = token.cancelled() => return Ok(()),
            // The writer failed, or writes again.
            changed = watch.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}

/// The warehouse's parts: order intake, the stock feeder, the deadline watcher and
/// reconciliation (none running yet), the event bus, the operators' order, SKU and goods
/// API, and the status page's "Orders" block.
struct Warehouse {
    bus: crate::wms::Bus,
    shop: crate::wms::ShopId,
    clock: crate::taobao::time::Clock,
    intake: crate::sync::intake::Intake,
    handle: crate::sync::intake::IntakeHandle,
    admin: crate::ops::orders::OrdersAdmin,
    goods: crate::ops::goods::GoodsAdmin,
    section: crate::sync::intake::IntakeSection,
    stock: crate::sync::stock::StockOptions,
    feed: crate::sync::stock::StockFeed,
    deadlines: crate::sync::deadlines::Deadlines,
    reconcile: crate::sync::reconcile::ReconcileJob,
    labels: FloorLabels,
    goods_section: crate::sync::goods_status::GoodsSection,
}

/// The floor's labels come from goods out's e-waybills: the same `waybill get` as the CLI
/// (a package with a waybill reuses it; a lost answer is looked up before asking again).
#[derive(Clone)]
struct FloorLabels(crate::sync::waybill::Issuer);

impl crate::floor::labels::LabelSource for FloorLabels {
    fn label(
        &self,
        tid: u64,
    ) -> futures::future::BoxFuture<
        '_,
        Result<crate::floor::labels::Label, crate::floor::labels::LabelError>,
    > {
        use crate::floor::labels::{Label, LabelError};
        use crate::sync::waybill::WaybillGetError as E;
        Box::pin(async move {
            let i = &self.0;
            match crate::sync::waybill::get(
                &i.client,
                &i.store,
                &i.bus,
                &i.alerts,
                &i.clock,
                &i.opts,
                tid,
                None,
                Vec::new(),
            )
            .await
            {
                Ok((_, job, view)) => Ok(Label {
                    job,
                    waybill_code: view.waybill_code,
                    carrier: view.real_cp_code,
                }),
                Err(e @ (E::Refused(_) | E::NoOrder(_) | E::Cainiao { .. })) => {
                    Err(LabelError::Refused(e.to_string()))
                }
                Err(e @ (E::Unknown { .. } | E::Store(_))) => Err(LabelError::Later(e.to_string())),
            }
        })
    }
}

impl Warehouse {
    fn new(
        config: &Config,
        taobao: &crate::taobao::setup::Taobao,
        store: &Store,
        outbox: &Outbox<TaobaoOp>,
        health: &Health,
        alerts: &Alerts,
    ) -> Warehouse {
        let clock = crate::taobao::time::Clock::system();
        let bus = crate::wms::Bus::new();
        let intake_opts = config.intake_options();
        let shop = intake_opts.shop.clone();
        let (intake, handle) = crate::sync::intake::Intake::new(
            taobao.client.clone(),
            store.clone(),
            outbox.clone(),
            bus.clone(),
            alerts.clone(),
            health.clone(),
            clock.clone(),
            intake_opts,
        );
        let admin = crate::ops::orders::OrdersAdmin::new(
            store.clone(),
            shop.clone(),
            config.rules(),
            bus.clone(),
            alerts.clone(),
        )
        .with_clock(clock.clone())
        .with_sync(Arc::new(crate::sync::skus::SkuSync {
            client: taobao.client.clone(),
            store: store.clone(),
            shop: shop.clone(),
            rules: config.rules(),
            bus: bus.clone(),
            clock: clock.clone(),
        }));
        let section = crate::sync::intake::IntakeSection::new(
            handle.clone(),
            taobao.client.clone(),
            shop.clone(),
            clock.clone(),
            config.intake.lag_alert,
        );
        let stock = config.stock_options();
        let feed = crate::sync::stock::StockFeed::new(
            store.clone(),
            outbox.clone(),
            bus.clone(),
            clock.clone(),
            stock.clone(),
        );
        let deadlines = crate::sync::deadlines::Deadlines::new(
            store.clone(),
            outbox.clone(),
            alerts.clone(),
            clock.clone(),
            config.deadline_options(),
        );
        let rec = crate::sync::reconcile::Reconciler::new(
            taobao.client.clone(),
            store.clone(),
            outbox.admin(),
            alerts.clone(),
            clock.clone(),
            config.reconcile_options(),
        );
        let state = crate::sync::reconcile::SharedState::default();
        let reconcile = crate::sync::reconcile::ReconcileJob::new(
            rec.clone(),
            state.clone(),
            Some(handle.watch()),
        );
        let issuer = crate::sync::waybill::Issuer {
            client: taobao.client.clone(),
            store: store.clone(),
            bus: bus.clone(),
            alerts: alerts.clone(),
            clock: clock.clone(),
            opts: config.waybill_options(),
        };
        let goods = crate::ops::goods::GoodsAdmin::new(
            store.clone(),
            outbox.clone(),
            shop.clone(),
            config.shipping.merge_orders,
            config.stock.max_intake_lag,
            bus.clone(),
            alerts.clone(),
            clock.clone(),
        )
        .with_waybills(Arc::new(issuer.clone()))
        .with_reconcile(Arc::new(crate::sync::reconcile::Runner {
            rec,
            state: state.clone(),
        }));
        let goods_section = crate::sync::goods_status::GoodsSection::new(
            store.clone(),
            shop.clone(),
            clock.clone(),
            config.shipping.deadline_warning,
            config.shipping.deadline_critical,
            state,
        );
        Warehouse {
            labels: FloorLabels(issuer),
            bus,
            shop,
            clock,
            intake,
            handle,
            admin,
            goods,
            section,
            stock,
            feed,
            deadlines,
            reconcile,
            goods_section,
        }
    }
}

/// The jobs: outbox delivery to Taobao (stock pushes decided from the ledger, shipments
/// through the pre-consign check), resuming it when new tokens arrive, the carrier list.
#[allow(clippy::too_many_arguments)]
fn spawn_jobs(
    tasks: &Tasks,
    outbox: &Outbox<TaobaoOp>,
    taobao: &crate::taobao::setup::Taobao,
    store: &Store,
    health: &Health,
    alerts: &Alerts,
    token: &CancellationToken,
    warehouse: &Warehouse,
) {
    tasks.spawn("outbox", {
        let outbox = outbox.clone();
        let sink = crate::sync::taobao_sink(
            &taobao.client,
            &outbox,
            &warehouse.bus,
            alerts,
            &warehouse.clock,
            &warehouse.stock,
        );
        let token = token.clone();
        async move {
            outbox.run(sink, token).await;
            Ok::<(), Infallible>(())
        }
    });
    tasks.spawn(
        "auth-resume",
        resume_on_renewal(outbox.clone(), taobao.tokens.renewals(), token.clone()),
    );
    // The store's real state, not "open" once: a full disk or an I/O error makes it refuse
    // writes until it has reopened itself (store/mod.rs, "When the disk fails").
    tasks.spawn(
        "store-health",
        report_store_health(store.watch_health(), health.clone(), token.clone()),
    );
    tasks.spawn(
        "call-count",
        crate::taobao::budget::keep(
            taobao.client.clone(),
            store.clone(),
            crate::taobao::budget::KEEP_EVERY,
            token.clone(),
        ),
    );
    tasks.spawn(
        "carriers",
        crate::sync::carriers::run(
            taobao.client.clone(),
            store.clone(),
            health.clone(),
            crate::sync::carriers::Schedule::default(),
            token.clone(),
        ),
    );
}

/// Serves `/healthz`, `/metrics`, the status page and the admin API on the bound listener;
/// returns the address it listens on (the real port when the config says 0).
fn spawn_ops_http(
    tasks: &Tasks,
    listener: tokio::net::TcpListener,
    ops: OpsState,
    admin: axum::Router,
    hosts: Vec<String>,
    opts: crate::ops::http::HttpOptions,
    token: &CancellationToken,
) -> SocketAddr {
    let fallback = SocketAddr::from(([0, 0, 0, 0], 0));
    let addr = listener.local_addr().unwrap_or(fallback);
    let app = crate::ops::http::guard(crate::ops::http::router(ops).merge(admin), hosts);
    tasks.spawn(
        "ops-http",
        crate::ops::http::serve(listener, app, opts, token.clone()),
    );
    tracing::info!(addr = %addr, "ops HTTP server listening");
    addr
}

impl Started {
    /// Serves until the shutdown token is cancelled or a task fails, then stops in order:
    /// STOPPING, cancel, wait for the tasks (abort stragglers by name), close the store last.
    pub async fn serve(self) -> Result<Stopped, DaemonError> {
        let Started {
            outbox,
            store,
            taobao,
            tasks,
            mut failures,
            token,
            restart,
            restarts,
            ..
        } = self;
        let failure = tokio::select! {
            // The operator (SIGTERM/SIGINT via the CLI) or the embedding code asked us to stop.
            _ = token.cancelled() => None,
            // A task died: stop everything else too, and report it.
            Some((task, message)) = failures.recv() => Some(DaemonError::Task { task, message }),
        };

        notify(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status("stopping"),
        ]);
        tracing::info!("shutting down");
        token.cancel();
        tasks.shutdown(SHUTDOWN_DEADLINE, FORCE_WAIT).await;
        // The store closes last, after every task that writes to it has stopped.
        drop(outbox);
        drop(taobao);
        if let Err(e) = store.close().await {
            tracing::error!(error = %e, "closing the store failed");
        }
        tracing::info!("stopped");
        restarts.end(failure.as_ref().map_or(Ended::Clean, ended_by));
        match failure {
            Some(e) => Err(e),
            None if restart.requested() => Ok(Stopped::ForUpdate),
            None => Ok(Stopped::Requested),
        }
    }
}

/// Resumes an outbox paused for authorisation as soon as new tokens are stored (`wms-node
/// auth`, a refresh, or a restart with a new `taobao.session`). Nothing is lost while paused:
/// the ops stay queued in order.
async fn resume_on_renewal(
    outbox: Outbox<TaobaoOp>,
    mut renewals: tokio::sync::watch::Receiver<u64>,
    token: CancellationToken,
) -> Result<(), Infallible> {
    loop {
        tokio::select! {
            // Shutdown.
            _ = token.cancelled() => return Ok(()),
            // New tokens: delivery can go on (a no-op when it was not paused).
            changed = renewals.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                if outbox.is_paused() {
                    tracing::info!("new Taobao tokens stored; resuming delivery");
                    outbox.resume();
                }
            }
        }
    }
}

/// Pings systemd's watchdog at half its timeout for as long as the runtime is alive.
async fn watchdog(timeout: Duration, token: CancellationToken) -> Result<(), std::io::Error> {
    let mut tick = tokio::time::interval(timeout / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(timeout = ?timeout, "systemd watchdog enabled");
    loop {
        tokio::select! {
            // Shutdown: systemd stops expecting pings after STOPPING=1.
            _ = token.cancelled() => return Ok(()),
            // A missed tick means the runtime was stuck; the ping is late, as it should be.
            _ = tick.tick() => notify(&[sd_notify::NotifyState::Watchdog]),
        }
    }
}

/// Tells systemd, if we run under it; a failure is logged, never fatal.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// The node's task set: one tracker, the names of the tasks still running, and a channel
/// on which failed or panicked tasks are reported.
pub struct Tasks {
    tracker: TaskTracker,
    running: Arc<Mutex<BTreeMap<u64, Running>>>,
    next_id: AtomicU64,
    failures: mpsc::UnboundedSender<(&'static str, String)>,
}

struct Running {
    name: &'static str,
    abort: Option<AbortHandle>,
}

impl Tasks {
    /// A task set and the receiver of its failures.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<(&'static str, String)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Tasks {
                tracker: TaskTracker::new(),
                running: Arc::new(Mutex::new(BTreeMap::new())),
                next_id: AtomicU64::new(0),
                failures: tx,
            },
            rx,
        )
    }

    /// Spawns `fut` as the task `name`. It must return when the shared token is cancelled.
    /// An `Err` or a panic is logged and reported on the failure channel.
    pub fn spawn<F, E>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        // Boxed behind one type, so the runtime's task machinery (and the tracker's wrapper)
        // is compiled once for every task rather than once per task's future type.
        self.spawn_boxed(
            name,
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) }),
        );
    }

    fn spawn_boxed(&self, name: &'static str, fut: Pin<Box<dyn Future<Output = TaskEnd> + Send>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.running).insert(id, Running { name, abort: None });
        let guard = TaskGuard {
            id,
            name,
            running: self.running.clone(),
            failures: self.failures.clone(),
        };
        let handle = self.tracker.spawn(async move {
            let guard = guard;
            match fut.await {
                Ok(()) => tracing::debug!(task = name, "task finished"),
                Err(e) => {
                    tracing::error!(task = name, "task failed: {e}");
                    let _ = guard.failures.send((name, e));
                }
            }
        });
        // The task may already be gone, in which case its guard removed the entry.
        if let Some(r) = lock(&self.running).get_mut(&id) {
            r.abort = Some(handle.abort_handle());
        }
    }

    /// The names of the tasks still running.
    pub fn running(&self) -> Vec<&'static str> {
        lock(&self.running).values().map(|r| r.name).collect()
    }

    /// Waits for every task to finish (the caller has cancelled their token), up to
    /// `deadline`; then aborts and names the stragglers, and waits up to `force` more.
    pub async fn shutdown(&self, deadline: Duration, force: Duration) {
        self.tracker.close();
        tracing::debug!(tasks = ?self.running(), "waiting for tasks to finish");
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
        {
            return;
        }
        for r in lock(&self.running).values() {
            tracing::warn!(
                task = r.name,
                "task missed the {deadline:?} shutdown deadline; aborting it"
            );
            if let Some(a) = &r.abort {
                a.abort();
            }
        }
        if tokio::time::timeout(force, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::error!(tasks = ?self.running(), "tasks still running after abort; exiting anyway");
        }
    }
}

/// How a task ended: `Err` with its error's text.
type TaskEnd = Result<(), String>;

/// Removes a task from the running set however it ends, and reports a panic.
struct TaskGuard {
    id: u64,
    name: &'static str,
    running: Arc<Mutex<BTreeMap<u64, Running>>>,
    failures: mpsc::UnboundedSender<(&'static str, String)>,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        lock(&self.running).remove(&self.id);
        // Tokio drops a panicking task's future while unwinding.
        if std::thread::panicking() {
            tracing::error!(task = self.name, "task panicked");
            let _ = self.failures.send((self.name, "panicked".into()));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn exits_are_permanent_only_where_a_restart_cannot_help() {
        use std::io::{Error, ErrorKind};
        let path = PathBuf::from("/var/lib/wms-node/wms-node.v3.redb");
        let store = |e: OpenError| DaemonError::Store(e);
        let damaged = |e: redb::DatabaseError| {
            store(OpenError::Damaged {
                path: path.clone(),
                source: Arc::new(e),
            })
        };
        let io = |e: Error| {
            store(OpenError::Io {
                path: path.clone(),
                source: Arc::new(e),
            })
        };
        let corrupted = || StoreError::Database(Arc::new(redb::Error::Corrupted("page".into())));
        let permanent = [
            store(OpenError::InUse { path: path.clone() }),
            damaged(redb::DatabaseError::Storage(redb::StorageError::Corrupted(
                "bad page".into(),
            ))),
            damaged(redb::DatabaseError::Storage(redb::StorageError::Io(
                Error::from(ErrorKind::InvalidData),
            ))),
            damaged(redb::DatabaseError::RepairAborted),
            store(OpenError::SchemaTooNew {
                path: path.clone(),
                part: "store",
                found: 9,
                compat: 9,
                supported: 1,
            }),
            store(OpenError::Migration {
                part: "outbox",
                to: 4,
                source: StoreError::Corrupt {
                    table: "outbox".into(),
                    key: "7".into(),
                },
            }),
            store(OpenError::Migration {
                part: "outbox",
                to: 4,
                source: StoreError::Aborted("a step refused".into()),
            }),
            store(OpenError::Migration {
                part: "outbox",
                to: 4,
                source: corrupted(),
            }),
            store(OpenError::Setup {
                path: path.clone(),
                source: corrupted(),
            }),
            store(OpenError::Convert {
                legacy: "/var/lib/wms-node/wms-node.redb".into(),
                reason: "not a store".into(),
            }),
            io(Error::from(ErrorKind::PermissionDenied)),
            DaemonError::DataDir {
                path: "/data".into(),
                source: Error::from(ErrorKind::PermissionDenied),
            },
        ];
        for e in permanent {
            match e.exit() {
                Exit::Permanent { fix } => assert!(!fix.is_empty() && !fix.contains('\n'), "{e}"),
                Exit::Transient => panic!("{e} should be permanent"),
            }
        }
        let transient = [
            store(OpenError::DiskFull { path: path.clone() }),
            io(Error::from_raw_os_error(5)),
            store(OpenError::Migration {
                part: "outbox",
                to: 4,
                source: StoreError::DiskFull,
            }),
            store(OpenError::Migration {
                part: "outbox",
                to: 4,
                source: StoreError::Database(Arc::new(redb::Error::PreviousIo)),
            }),
            store(OpenError::Setup {
                path: path.clone(),
                source: StoreError::Unavailable("an I/O error".into()),
            }),
            DaemonError::DataDir {
                path: "/data".into(),
                source: Error::from_raw_os_error(28),
            },
            DaemonError::Bind {
                key: "http.listen",
                addr: "127.0.0.1:9870".parse().unwrap(),
                source: Error::from(ErrorKind::AddrInUse),
            },
            DaemonError::Task {
                task: "outbox",
                message: "panicked".into(),
            },
        ];
        for e in transient {
            assert_eq!(e.exit(), Exit::Transient, "{e}");
        }
    }

    fn config(dir: &std::path::Path) -> Config {
        let mut c = Config::default();
        c.node.id = "gw-test".into();
        c.node.data_dir = dir.join("data");
        c.taobao.app_key = "12345678".into();
        c.taobao.app_secret = Some(Secret::new("x"));
        // Nothing listens there: the node must run (and stop) with Taobao unreachable.
        c.taobao.endpoint = "http://127.0.0.1:9/router/rest".into();
        c.taobao.oauth_url = "http://127.0.0.1:9/oauth".into();
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.mqtt.listen = "127.0.0.1:0".parse().unwrap();
        c
    }

    #[tokio::test]
    async fn a_cancelled_node_stops_cleanly_and_creates_its_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let token = CancellationToken::new();
        let node = tokio::spawn(run(config(dir.path()), token.clone()));
        // Poll for the data dir rather than sleeping a fixed time.
        let data = dir.path().join("data");
        for _ in 0..500 {
            if data.is_dir() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(data.is_dir());
        token.cancel();
        let result = tokio::time::timeout(Duration::from_secs(5), node)
            .await
            .expect("stopped within 5 s")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
    }

    /// Issue 17: the page may listen on the LAN while the admin API stays on `listen`.
    #[tokio::test]
    async fn the_status_listener_serves_the_views_but_never_the_admin_api() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.http.status_listen = Some("127.0.0.1:0".parse().unwrap());
        let token = CancellationToken::new();
        let started = start(c, token.clone()).await.unwrap();
        let status = started.status_addr.expect("a status address");
        let admin = started.http_addr;
        let get = |addr: SocketAddr, path: &'static str| async move {
            reqwest::get(format!("http://{addr}{path}"))
                .await
                .unwrap()
                .status()
                .as_u16()
        };
        assert_eq!(get(status, "/").await, 200);
        assert_eq!(get(status, "/metrics").await, 200);
        assert_eq!(get(status, "/status.js").await, 200);
        assert_eq!(get(status, "/api/queue/stats").await, 404);
        assert_eq!(get(status, "/api/alerts").await, 404);
        assert_eq!(get(admin, "/api/queue/stats").await, 200);
        token.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(10), started.serve()).await;
        assert!(matches!(stopped, Ok(Ok(_))), "{stopped:?}");
    }

    #[tokio::test]
    async fn a_taken_http_port_is_a_bind_error() {
        let dir = tempfile::tempdir().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = config(dir.path());
        c.http.listen = taken.local_addr().unwrap();
        let data_file = c.store_options().path;
        let err = run(c, CancellationToken::new()).await.unwrap_err();
        assert!(matches!(err, DaemonError::Bind { .. }), "{err}");
        assert!(err.to_string().contains("http.listen"));
        // It failed before anything started: the store was never opened (or created).
        assert!(!data_file.exists(), "{}", data_file.display());
    }

    #[tokio::test]
    async fn a_failing_task_is_reported_and_a_panicking_one_too() {
        let (tasks, mut failures) = Tasks::new();
        tasks.spawn("fails", async { Err::<(), _>("boom") });
        let (name, msg) = failures.recv().await.unwrap();
        assert_eq!((name, msg.as_str()), ("fails", "boom"));
        tasks.spawn("panics", async {
            if true {
                panic!("test panic");
            }
            Ok::<(), String>(())
        });
        let (name, msg) = failures.recv().await.unwrap();
        assert_eq!((name, msg.as_str()), ("panics", "panicked"));
        tasks.shutdown(Duration::from_secs(1), FORCE_WAIT).await;
        assert!(tasks.running().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn stragglers_are_aborted_after_the_deadline() {
        let (tasks, _failures) = Tasks::new();
        let token = CancellationToken::new();
        let t = token.clone();
        tasks.spawn("polite", async move {
            t.cancelled().await;
            Ok::<(), String>(())
        });
        tasks.spawn("stubborn", async {
            std::future::pending::<()>().await;
            Ok::<(), String>(())
        });
        assert_eq!(tasks.running(), ["polite", "stubborn"]);
        token.cancel();
        let started = tokio::time::Instant::now();
        tasks.shutdown(SHUTDOWN_DEADLINE, FORCE_WAIT).await;
        assert!(tasks.running().is_empty());
        assert!(started.elapsed() >= SHUTDOWN_DEADLINE);
        assert!(started.elapsed() < SHUTDOWN_DEADLINE + FORCE_WAIT);
    }
}
