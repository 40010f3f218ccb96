//! The node's own MQTT session: one rumqttc client to the embedded broker or an external one.
//!
//! * TCP_NODELAY on its socket (every socket the node owns has it: the embedded broker's
//!   accepted sockets too), so an answer is not held back by Nagle's algorithm.
//! * `mqtts://` with rustls (ring): the server is checked against `mqtt.ca_file` (else the
//!   webpki roots), and a client certificate (`mqtt.cert_file` + `mqtt.key_file`) is offered
//!   when configured.
//! * Persistent session, manual acks: an event is acknowledged to the broker only after its
//!   effect is committed ([`super::pipeline`]), so an external broker re-delivers whatever the
//!   node had not finished when it died or lost the connection.
//! * Birth and will on `wms/{site}/gateway/{id}/state` (retained): `{"online":true,
//!   "class":"gateway","fw":"wms-node …"}` on every CONNACK, the will `{"online":false}` when
//!   the connection dies, and an explicit offline state on a clean shutdown (a clean DISCONNECT
//!   does not fire the will).
//! * Reconnects wait with full-jitter exponential backoff (`firmware_bridge::pace`), between
//!   `mqtt.reconnect_min` and `mqtt.reconnect_max`; the first attempt after a drop is quick.
//!
//! The event loop and the publisher are two tasks: the publisher may wait for room in
//! rumqttc's request channel while the event loop keeps polling (one task doing both could
//! wait on itself).

use super::flow::FlowHandler;
use super::pipeline::{Out, Pipeline};
use crate::secret::Secret;
use firmware_bridge::pace::{Backoff, Retries};
use firmware_bridge::proto::{DeviceClass, State, VERSION, json};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, NetworkOptions,
    Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// TLS settings for `mqtts://`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFiles {
    /// PEM file of the CA(s) that signed the broker's certificate; `None`: the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the node's client certificate (chain).
    pub cert_file: Option<PathBuf>,
    /// PEM file of its private key.
    pub key_file: Option<PathBuf>,
}

/// How the node connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// `Some` for `mqtts://`.
    pub tls: Option<TlsFiles>,
    /// MQTT client id.
    pub client_id: String,
    /// User name and password.
    pub credentials: Option<(String, Secret)>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// First reconnect delay (with jitter).
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// `node.site`.
    pub site: String,
    /// `node.id`.
    pub node_id: String,
}

/// Why the session could not be set up (a configuration problem, not a network one).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A TLS file could not be read or parsed.
    #[error("{key}: {reason}")]
    Tls {
        /// The config key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl ClientOptions {
    fn state_topic(&self) -> String {
        format!("wms/{}/gateway/{}/state", self.site, self.node_id)
    }

    fn mqtt_options(&self) -> Result<MqttOptions, ClientError> {
        let mut o = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        o.set_keep_alive(self.keep_alive.max(Duration::from_secs(5)));
        // A persistent session: events queued while we were away are delivered on return.
        o.set_clean_session(false);
        o.set_manual_acks(true);
        o.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
        o.set_inflight(1024);
        o.set_request_channel_capacity(4096);
        let will = json::to_vec(&State::<String>::offline())
            .unwrap_or_else(|_| br#"{"v":1,"online":false}"#.to_vec());
        o.set_last_will(LastWill::new(
            self.state_topic(),
            will,
            QoS::AtLeastOnce,
            true,
        ));
        if let Some((user, pass)) = &self.credentials {
            o.set_credentials(user.clone(), pass.expose().to_owned());
        }
        if let Some(tls) = &self.tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls_config(tls)?),
            )));
        }
        Ok(o)
    }

    /// The subscriptions: every device's events, replies and states on the site.
    fn filters(&self) -> [String; 3] {
        let s = &self.site;
        [
            format!("wms/{s}/+/+/evt"),
            format!("wms/{s}/+/+/reply"),
            format!("wms/{s}/+/+/state"),
        ]
    }
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ClientConfig, ClientError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| ClientError::Tls {
                key: "mqtt.ca_file",
                reason: format!("{}: {e}", path.display()),
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| ClientError::Tls {
                    key: "mqtt.ca_file",
                    reason: format!("{}: {e}", path.display()),
                })?;
                roots.add(cert).map_err(|e| ClientError::Tls {
                    key: "mqtt.ca_file",
                    reason: format!("{}: {e}", path.display()),
                })?;
            }
            if roots.is_empty() {
                return Err(ClientError::Tls {
                    key: "mqtt.ca_file",
                    reason: format!("{}: no certificate in it", path.display()),
                });
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls {
            key: "mqtt.broker",
            reason: e.to_string(),
        })?
        .with_root_certificates(roots);
    match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => {
            let chain: Result<Vec<_>, _> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| ClientError::Tls {
                    key: "mqtt.cert_file",
                    reason: format!("{}: {e}", cert.display()),
                })?
                .collect();
            let chain = chain.map_err(|e| ClientError::Tls {
                key: "mqtt.cert_file",
                reason: format!("{}: {e}", cert.display()),
            })?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| ClientError::Tls {
                key: "mqtt.key_file",
                reason: format!("{}: {e}", key.display()),
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| ClientError::Tls {
                    key: "mqtt.cert_file",
                    reason: e.to_string(),
                })
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The node's MQTT session, set up but not yet running.
pub struct Session {
    opts: ClientOptions,
    client: AsyncClient,
    eventloop: EventLoop,
    connected: Arc<AtomicBool>,
}

impl Session {
    /// Builds the client (TLS files are read here, so a bad one fails the start).
    pub fn new(opts: ClientOptions) -> Result<Session, ClientError> {
        let (client, mut eventloop) = AsyncClient::new(opts.mqtt_options()?, 4096);
        let mut net = NetworkOptions::new();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(5);
        eventloop.set_network_options(net);
        Ok(Session {
            opts,
            client,
            eventloop,
            connected: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A handle to publish with (alerts, OTA replies).
    pub fn client(&self) -> AsyncClient {
        self.client.clone()
    }

    /// Whether the session is connected right now.
    pub fn connected(&self) -> Arc<AtomicBool> {
        self.connected.clone()
    }

    /// Runs the session until `token` is cancelled: publishes offline on the way out.
    pub async fn run<H: FlowHandler>(
        self,
        pipeline: Pipeline<H>,
        out: mpsc::UnboundedReceiver<Out>,
        token: CancellationToken,
    ) -> Result<(), std::convert::Infallible> {
        let Session {
            opts,
            client,
            mut eventloop,
            connected,
        } = self;
        let publisher = tokio::spawn(publish_loop(client.clone(), out, token.clone()));
        let mut backoff = Retries::new(
            Backoff::new(opts.reconnect_min, opts.reconnect_max)
                .with_floor((opts.reconnect_min / 10).max(Duration::from_millis(10))),
        );
        let state_topic = opts.state_topic();
        loop {
            let event = tokio::select! {
                // Shutdown: say offline ourselves (a clean DISCONNECT does not fire the will).
                _ = token.cancelled() => break,
                // Network progress: connect, events, acks, our own publishes.
                ev = eventloop.poll() => ev,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    connected.store(true, Ordering::Relaxed);
                    metrics::gauge!("wms_node_floor_broker_connected").set(1.0);
                    backoff.reset();
                    tracing::info!(
                        host = %opts.host,
                        port = opts.port,
                        session_present = ack.session_present,
                        "connected to the MQTT broker"
                    );
                    for f in opts.filters() {
                        if let Err(e) = client.try_subscribe(f, QoS::AtLeastOnce) {
                            tracing::warn!(error = %e, "cannot subscribe");
                        }
                    }
                    let birth = State {
                        v: VERSION,
                        online: true,
                        class: Some(DeviceClass::Gateway),
                        fw: Some(format!("wms-node {}", crate::VERSION)),
                        detail: None,
                    };
                    if let Ok(payload) = json::to_vec(&birth) {
                        let _ = client.try_publish(
                            state_topic.clone(),
                            QoS::AtLeastOnce,
                            true,
                            payload,
                        );
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => pipeline.dispatch(p),
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        tracing::error!(
                            "the broker refused a subscription: check its ACL for the node's user"
                        );
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {}
                Ok(_) => {}
                Err(e) => {
                    let was = connected.swap(false, Ordering::Relaxed);
                    metrics::gauge!("wms_node_floor_broker_connected").set(0.0);
                    let wait = backoff.next_delay(rand::random());
                    if was {
                        tracing::warn!(error = %e, "MQTT broker connection lost; reconnecting");
                    } else if backoff.attempts() == 1 || backoff.attempts().is_multiple_of(10) {
                        tracing::warn!(error = %e, attempts = backoff.attempts(), retry_in = ?wait, "MQTT broker not reachable");
                    }
                    if matches!(e, ConnectionError::ConnectionRefused(_)) {
                        tracing::error!(error = %e, "the MQTT broker refused the node: check mqtt.username and the password");
                    }
                    tokio::select! {
                        // Shutdown while disconnected: nothing to say goodbye to.
                        _ = token.cancelled() => break,
                        // Backoff over: the next poll reconnects.
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        // Goodbye: offline state (retained), then DISCONNECT, within a short grace period.
        if connected.load(Ordering::Relaxed) {
            if let Ok(payload) = json::to_vec(&State::<String>::offline()) {
                let _ = client.try_publish(state_topic, QoS::AtLeastOnce, true, payload);
            }
            let _ = client.try_disconnect();
            let grace = tokio::time::sleep(Duration::from_millis(500));
            tokio::pin!(grace);
            loop {
                tokio::select! {
                    // The grace period is over.
                    _ = &mut grace => break,
                    // Flush until the broker has our goodbye.
                    ev = eventloop.poll() => match ev {
                        Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                        Ok(_) => {}
                    },
                }
            }
        }
        publisher.abort();
        metrics::gauge!("wms_node_floor_broker_connected").set(0.0);
        Ok(())
    }
}

/// Sends what the pipeline decided, in order: answers, then the acks of their events.
async fn publish_loop(
    client: AsyncClient,
    mut out: mpsc::UnboundedReceiver<Out>,
    token: CancellationToken,
) {
    loop {
        let item = tokio::select! {
            // Shutdown: the session says goodbye; what is left is re-sent by the devices.
            _ = token.cancelled() => return,
            // The next answer or ack.
            item = out.recv() => match item {
                Some(item) => item,
                None => return,
            },
        };
        let r = match item {
            Out::Publish { topic, payload } => {
                client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await
            }
            Out::Ack(p) => client.ack(&p).await,
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot queue an MQTT packet");
        }
    }
}
