//! The gateway's alert topic, `wms/{site}/gateway/{node}/alert`: a small seam for whoever
//! produces alert messages (the alert type and its broadcast are defined beside the alert
//! engine; the wire message in `firmware_bridge::proto`). This module only carries payloads
//! already encoded as the protocol's alert message to the broker, QoS 1, in order.

use firmware_bridge::proto::Channel;
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The topic of the node's alerts.
pub fn topic(site: &str, node_id: &str) -> String {
    format!("wms/{site}/gateway/{node_id}/{}", Channel::Alert)
}

/// A handle that publishes alert payloads (JSON, one alert message each).
#[derive(Debug, Clone)]
pub struct AlertPublisher {
    tx: mpsc::Sender<Vec<u8>>,
}

impl AlertPublisher {
    /// Queues one alert payload; `false` when the queue is full or the floor stopped (the
    /// alert stays in the alert engine's store and is re-sent from there).
    pub fn publish(&self, payload: Vec<u8>) -> bool {
        self.tx.try_send(payload).is_ok()
    }
}

/// A publisher for the node's alert topic and the task that sends what it is given.
pub fn publisher(
    client: AsyncClient,
    site: &str,
    node_id: &str,
    token: CancellationToken,
) -> (
    AlertPublisher,
    impl Future<Output = Result<(), std::convert::Infallible>> + use<>,
) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let topic = topic(site, node_id);
    let task = async move {
        loop {
            let payload = tokio::select! {
                // Shutdown.
                _ = token.cancelled() => return Ok(()),
                // The next alert.
                p = rx.recv() => match p {
                    Some(p) => p,
                    None => return Ok(()),
                },
            };
            if let Err(e) = client
                .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
                .await
            {
                tracing::warn!(error = %e, "cannot publish an alert on MQTT");
            }
        }
    };
    (AlertPublisher { tx }, task)
}
