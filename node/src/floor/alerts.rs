//! The gateway's alert topic, `wms/{site}/gateway/{node}/alert`: a small seam for whoever
//! produces alert messages (the alert type and its broadcast are defined beside the alert
//! engine; the wire message in `firmware_bridge::proto`). This module encodes each alert
//! message with the protocol's encoder (its `type`, no `null` fields: what a reader of
//! docs/PROTOCOL.md expects) and carries it to the broker, QoS 1, in order.

use firmware_bridge::proto::Channel;
use firmware_bridge::proto::alert::AlertMessage;
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The topic of the node's alerts.
pub fn topic(site: &str, node_id: &str) -> String {
    format!("wms/{site}/gateway/{node_id}/{}", Channel::Alert)
}

/// A handle that publishes alert messages (JSON, one alert message each).
#[derive(Debug, Clone)]
pub struct AlertPublisher {
    tx: mpsc::Sender<Vec<u8>>,
}

impl AlertPublisher {
    /// Queues one alert message; `false` when the queue is full or the floor stopped (the
    /// alert stays in the alert engine's store and is re-sent from there).
    pub fn publish(&self, msg: &AlertMessage) -> bool {
        match encode(msg) {
            Some(payload) => self.tx.try_send(payload).is_ok(),
            None => false,
        }
    }
}

/// The message as the protocol writes it: through `proto::json`, never plain serde (which
/// would leave out `type` and write absent fields as `null`).
fn encode(msg: &AlertMessage) -> Option<Vec<u8>> {
    match firmware_bridge::proto::json::to_vec(msg) {
        Ok(payload) => Some(payload),
        Err(err) => {
            tracing::warn!(code = %msg.code, error = %err, "cannot encode an alert message");
            None
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use firmware_bridge::proto::alert::{AlertEventKind, AlertSeverity};
    use serde_json::Value;

    #[test]
    fn an_alert_goes_out_with_its_type_and_without_nulls() {
        let msg = AlertMessage {
            v: 1,
            event: AlertEventKind::Raised,
            id: "1796672780228000".into(),
            code: "unmapped_sku".into(),
            number: 501,
            severity: AlertSeverity::Warning,
            subject: None,
            message: "1 orders are held because a line maps to no SKU".into(),
            first_seen: "2026-12-07T19:46:24Z".into(),
            last_seen: "2026-12-07T19:46:24Z".into(),
            count: 1,
            resolved_at: None,
            node: "gw1".into(),
            site: "main".into(),
        };
        let payload = encode(&msg).unwrap();
        let v: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["type"], "alert", "{v}");
        assert_eq!(v["v"], 1, "{v}");
        let map = v.as_object().unwrap();
        assert!(!map.values().any(Value::is_null), "absent is left out: {v}");
        assert!(!map.contains_key("subject") && !map.contains_key("resolved_at"));
        assert_eq!(
            firmware_bridge::proto::json::decode_alert(&payload).unwrap(),
            msg
        );
    }
}
