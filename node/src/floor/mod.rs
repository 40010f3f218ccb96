//! The warehouse floor over MQTT: the embedded broker, the node's session, the device
//! registry and the dispatch pipeline the flows plug into.
//!
//! # Topics (DESIGN.md, *Floor*; wire types in `firmware_bridge::proto`)
//!
//! | topic | direction | QoS | what |
//! |---|---|---|---|
//! | `wms/{site}/{class}/{id}/evt` | device → node | 1 | `scan`, `request_task`, `short`, `heartbeat` |
//! | `wms/{site}/{class}/{id}/cmd` | node → device | 1 | `feedback`, `task`, `hold`, `print`; `pause` retained ([`pause`]) |
//! | `wms/{site}/{class}/{id}/reply` | device → node | 1 | `print_result`, `hold_ack`, `reject` |
//! | `wms/{site}/{class}/{id}/state` | device → anyone | 1, retained | birth / will |
//! | `wms/{site}/gateway/{node}/state` | node → anyone | 1, retained | the node's birth / will |
//! | `wms/{site}/gateway/{node}/alert` | node → anyone | 1 | the node's alerts ([`alerts`]) |
//! | `wms/{site}/gateway/{node}/cmd` | fleet link → node | 1 | `ota_update` (handed to `ota/`, [`Floor::with_gateway_commands`]) |
//! | `wms/{site}/gateway/{node}/reply` | node → fleet link | 1 | `ota_progress`, `ota_result` (`ota::mqtt`) |
//!
//! # Parts
//!
//! ```text
//!  devices ──TCP (nodelay)──▶ broker ([`broker`]: embedded rmqtt, or Mosquitto/EMQX by URL)
//!                               │  CONNECT: registry credentials; PUBLISH: own topics only
//!                               ▼
//!                      node session ([`client`]: rumqttc, nodelay, persistent, manual acks)
//!                               │ publish
//!                               ▼
//!                      pipeline ([`pipeline`]): decode → known device → dedupe → flow
//!                               │ store job (group commit, fsync)   ([`flow::FlowHandler`])
//!                               ▼ after commit
//!                      feedback / commands published, then the event's PUBACK
//! ```
//!
//! [`devices`] owns the registry (table `floor_devices`), [`passwd`] the Mosquitto `$7$`
//! hashes, [`acl`] the one publish/subscribe rule (enforced by the embedded broker, written as
//! a Mosquitto ACL for external brokers), [`presence`] who is online, [`admin`] `wms-node
//! devices …` and `/api/devices`. The answers remembered for dedupe live with the warehouse
//! state (`wms::dedupe`); [`expire_answers`] forgets those older than `floor.dedupe_retention`.
//!
//! Must never: publish an answer before its event is committed, apply an event twice, stop on
//! anything a device sends, or log a password.

pub mod acl;
pub mod admin;
pub mod alerts;
pub mod broker;
pub mod client;
pub mod devices;
pub mod flow;
pub mod flows;
#[cfg(test)]
mod flows_tests;
pub mod holds;
pub mod labels;
pub mod passwd;
pub mod pause;
pub mod pipeline;
pub mod presence;
pub mod putback;
pub mod say;
pub mod status;

use crate::secret::Secret;
use crate::status::i18n::Lang;
use crate::store::{Store, StoreError, now_ms};
use admin::{DeviceAdmin, Live, MosquittoFiles};
use broker::{BrokerOptions, Embedded};
use client::{ClientOptions, Session, TlsFiles};
use devices::Registry;
use flow::FlowHandler;
use pipeline::{Out, Pipeline, PipelineOptions};
use presence::Presence;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Which broker the floor uses.
#[derive(Debug, Clone)]
pub enum BrokerChoice {
    /// Run one inside the node.
    Embedded(BrokerOptions),
    /// Connect to one by URL.
    External {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// `Some` for `mqtts://`.
        tls: Option<TlsFiles>,
        /// Where to write the Mosquitto password and ACL files (`floor.mosquitto_dir`).
        files_dir: Option<PathBuf>,
    },
}

/// The floor's options (built by `config/` from `[node]`, `[mqtt]` and `[floor]`).
#[derive(Debug, Clone)]
pub struct FloorOptions {
    /// `node.site`.
    pub site: String,
    /// `node.id`.
    pub node_id: String,
    /// The broker.
    pub broker: BrokerChoice,
    /// The node's credentials at an external broker (`[mqtt] username`/`password`).
    pub credentials: Option<(String, Secret)>,
    /// MQTT keep-alive of the node's session.
    pub keep_alive: Duration,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Largest event payload the node reads (`floor.max_event_bytes`).
    pub max_event_bytes: usize,
    /// How long answers are remembered for dedupe (`floor.dedupe_retention`, at least 24 h).
    pub dedupe_retention: Duration,
    /// How long a printer has to answer a `print` before the label goes again
    /// (`floor.print_timeout`).
    pub print_timeout: Duration,
    /// The language of what devices show people (`floor.language`, else `node.language`).
    pub lang: Lang,
}

impl FloorOptions {
    /// Defaults for a site and node: the embedded broker on `listen`.
    pub fn new(site: &str, node_id: &str, listen: SocketAddr) -> Self {
        FloorOptions {
            site: site.to_owned(),
            node_id: node_id.to_owned(),
            broker: BrokerChoice::Embedded(BrokerOptions::new(listen)),
            credentials: None,
            keep_alive: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            max_event_bytes: 64 * 1024,
            dedupe_retention: Duration::from_secs(48 * 60 * 60),
            print_timeout: Duration::from_secs(30),
            lang: Lang::En,
        }
    }

    /// The scope of the access rules.
    pub fn scope(&self) -> acl::Scope {
        acl::Scope {
            site: self.site.clone(),
            node_id: self.node_id.clone(),
        }
    }

    /// The Mosquitto files to keep written, for an external broker.
    pub fn mosquitto_files(&self) -> Option<MosquittoFiles> {
        match &self.broker {
            BrokerChoice::External {
                files_dir: Some(dir),
                ..
            } => Some(MosquittoFiles {
                dir: dir.clone(),
                node: self.credentials.clone(),
            }),
            _ => None,
        }
    }
}

/// Why the floor could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FloorError {
    /// The embedded broker could not listen.
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    /// The node's session could not be set up (TLS files).
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// The device registry could not be read.
    #[error("reading the device registry: {0}")]
    Store(#[from] StoreError),
    /// The Mosquitto files could not be written.
    #[error(transparent)]
    Files(#[from] admin::AdminError),
}

/// A started floor: its admin handle and what runs it.
pub struct Floor<H: FlowHandler> {
    /// `wms-node devices …` on this node.
    pub admin: DeviceAdmin,
    /// Who is online.
    pub presence: Presence,
    /// Where the embedded broker listens, if it runs.
    pub broker_addr: Option<SocketAddr>,
    /// A client handle to publish the node's own messages (alerts).
    pub client: rumqttc::AsyncClient,
    /// Whether the node's session is connected right now (the status page).
    pub connected: std::sync::Arc<std::sync::atomic::AtomicBool>,
    broker: Option<Embedded>,
    session: Session,
    pipeline: Pipeline<H>,
    out: mpsc::UnboundedReceiver<Out>,
    store: Store,
    retention: Duration,
    node_id: String,
    held: Option<(
        String,
        tokio::sync::broadcast::Receiver<(String, crate::wms::Event)>,
    )>,
    labels: Option<(crate::wms::ShopId, Arc<dyn labels::LabelSource>)>,
    print_timeout: Duration,
    lang: Lang,
}

impl<H: FlowHandler> Floor<H> {
    /// Sends holds to the floor as orders of `shop` go on hold on `bus` (subscribed now, so
    /// nothing committed after this call is missed).
    pub fn with_holds_from(mut self, bus: &crate::wms::Bus, shop: &str) -> Self {
        self.held = Some((shop.to_owned(), bus.subscribe()));
        self
    }

    /// Hands what is published on the node's own `cmd` topic (`ota_update` from a fleet link)
    /// to `tx`, payloads as they came; without this they are acknowledged and dropped.
    pub fn with_gateway_commands(mut self, tx: mpsc::Sender<Vec<u8>>) -> Self {
        self.pipeline = self.pipeline.with_gateway_commands(&self.node_id, tx);
        self
    }

    /// Prints the labels of parcels packed at a station ([`labels`]), from `source` (goods
    /// out's e-waybills, plugged in by the daemon).
    pub fn with_labels(
        mut self,
        shop: crate::wms::ShopId,
        source: Arc<dyn labels::LabelSource>,
    ) -> Self {
        self.labels = Some((shop, source));
        self
    }

    /// Loads the registry, starts the embedded broker (bound before this returns, so a port
    /// clash fails the start) and sets up the session; [`Floor::run`] serves.
    pub async fn start(
        opts: FloorOptions,
        store: Store,
        handler: H,
        events: Option<mpsc::UnboundedSender<H::Event>>,
    ) -> Result<Floor<H>, FloorError> {
        let records = store.read(devices::list)?;
        let registry = Registry::from_records(&records);
        let presence = Presence::default();
        let scope = opts.scope();
        let files = opts.mosquitto_files();
        let (broker, client_opts) = match &opts.broker {
            BrokerChoice::Embedded(b) => {
                // The node's own user on its own broker: a fresh password every start.
                let user = format!("gateway/{}", opts.node_id);
                let password = passwd::new_password();
                registry.insert(&user, &passwd::hash(&password));
                let broker =
                    Embedded::start(b, scope.clone(), registry.clone(), user.clone()).await?;
                let addr = broker.addr();
                let host = if addr.ip().is_unspecified() {
                    "127.0.0.1".to_owned()
                } else {
                    addr.ip().to_string()
                };
                let client = client_options(
                    &opts,
                    host,
                    addr.port(),
                    None,
                    Some((user, Secret::new(password))),
                );
                (Some(broker), client)
            }
            BrokerChoice::External {
                host, port, tls, ..
            } => {
                let client = client_options(
                    &opts,
                    host.clone(),
                    *port,
                    tls.clone(),
                    opts.credentials.clone(),
                );
                (None, client)
            }
        };
        let admin = DeviceAdmin::new(
            store.clone(),
            scope,
            Some(Live {
                registry: registry.clone(),
                presence: presence.clone(),
            }),
            files,
        );
        admin.rewrite_files()?;
        let session = Session::new(client_opts)?;
        let (out_tx, out) = mpsc::unbounded_channel();
        let pipeline = Pipeline::new(
            PipelineOptions {
                site: opts.site.clone(),
                max_event_bytes: opts.max_event_bytes,
                lang: opts.lang,
            },
            store.clone(),
            registry,
            presence.clone(),
            handler,
            out_tx,
            events,
        );
        Ok(Floor {
            admin,
            presence,
            broker_addr: broker.as_ref().map(Embedded::addr),
            client: session.client(),
            connected: session.connected(),
            broker,
            session,
            pipeline,
            out,
            store,
            retention: opts.dedupe_retention,
            node_id: opts.node_id.clone(),
            held: None,
            labels: None,
            print_timeout: opts.print_timeout,
            lang: opts.lang,
        })
    }

    /// Serves until `token` is cancelled: the broker, the session, and the hourly expiry of
    /// remembered answers.
    pub async fn run(self, token: CancellationToken) -> Result<(), std::convert::Infallible> {
        let Floor {
            broker,
            session,
            pipeline,
            out,
            store,
            retention,
            held,
            labels,
            print_timeout,
            lang,
            ..
        } = self;
        let broker_task = broker.map(|b| tokio::spawn(b.serve(token.clone())));
        let wake = Arc::new(tokio::sync::Notify::new());
        let holds = held.map(|(shop, rx)| {
            tokio::spawn(hold_loop(
                pipeline.clone(),
                shop,
                rx,
                wake.clone(),
                token.clone(),
            ))
        });
        let labeller = labels.map(|(shop, source)| {
            let p = pipeline.clone();
            tokio::spawn(labels::run(
                store.clone(),
                shop,
                source,
                print_timeout,
                lang,
                wake.clone(),
                move |cmds| p.publish_commands(cmds),
                token.clone(),
            ))
        });
        let expiry = tokio::spawn(expire_loop(store, retention, token.clone()));
        // The session says goodbye before the broker goes away.
        let _ = session.run(pipeline, out, token.clone()).await;
        if let Some(t) = broker_task {
            let _ = t.await;
        }
        let _ = expiry.await;
        if let Some(h) = holds {
            let _ = h.await;
        }
        if let Some(l) = labeller {
            let _ = l.await;
        }
        Ok(())
    }
}

/// Orders going on hold, from the warehouse's event bus, to the devices working on them; an
/// order packed wakes the labeller.
async fn hold_loop<H: FlowHandler>(
    pipeline: Pipeline<H>,
    shop: String,
    mut rx: tokio::sync::broadcast::Receiver<(String, crate::wms::Event)>,
    wake: Arc<tokio::sync::Notify>,
    token: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    // Holds committed while no floor listened (a node killed before it told the device).
    pipeline.sweep_holds();
    loop {
        let got = tokio::select! {
            // Shutdown.
            _ = token.cancelled() => return,
            // The next committed change.
            got = rx.recv() => got,
        };
        match got {
            Ok((s, crate::wms::Event::Held { tid, .. })) if s == shop => pipeline.order_held(tid),
            Ok((
                s,
                crate::wms::Event::StateChanged {
                    to: crate::wms::LocalState::Packed,
                    ..
                },
            )) if s == shop => wake.notify_one(),
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                // The store is the truth: a missed hold still refuses every scan of the
                // order, and the devices working on held orders are told now.
                tracing::warn!(missed = n, "floor fell behind the warehouse's events");
                pipeline.sweep_holds();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn client_options(
    opts: &FloorOptions,
    host: String,
    port: u16,
    tls: Option<TlsFiles>,
    credentials: Option<(String, Secret)>,
) -> ClientOptions {
    ClientOptions {
        host,
        port,
        tls,
        client_id: format!("wms-{}-gateway-{}", opts.site, opts.node_id),
        credentials,
        keep_alive: opts.keep_alive,
        reconnect_min: opts.reconnect_min,
        reconnect_max: opts.reconnect_max,
        site: opts.site.clone(),
        node_id: opts.node_id.clone(),
    }
}

/// Forgets remembered answers older than `retention`, in batches; returns how many.
pub async fn expire_answers(
    store: &Store,
    retention: Duration,
    now_ms: u64,
) -> Result<usize, StoreError> {
    let keep = u64::try_from(retention.as_millis())
        .unwrap_or(u64::MAX)
        .max(crate::wms::dedupe::MIN_RETENTION_MS);
    let cutoff = now_ms.saturating_sub(keep);
    let mut total = 0;
    loop {
        let n = store
            .write(move |txn| crate::wms::dedupe::expire(txn, cutoff, 10_000))
            .await?;
        total += n;
        if n < 10_000 {
            return Ok(total);
        }
    }
}

async fn expire_loop(store: Store, retention: Duration, token: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Shutdown.
            _ = token.cancelled() => return,
            // Hourly (and once at start).
            _ = tick.tick() => match expire_answers(&store, retention, now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(forgotten = n, "old device answers forgotten"),
                Err(e) => tracing::warn!(error = %e, "cannot expire old device answers"),
            },
        }
    }
}
