//! The dispatch pipeline: every message a device publishes, from the broker to the answer.
//!
//! ```text
//!  publish ─▶ topic ─▶ device known? ─▶ decode ─▶ store job (group commit) ────────▶ after commit
//!   (rumqttc,  parse    registry        proto      ┌ dedupe: seen (device,msg_id)? ─┐  publish the
//!   manual     +site                    json       │   yes: the original answer     │  answer, then
//!   ack)                                           └ no: flow handler → answer,     │  PUBACK the
//!                                                      remember (device,msg_id)  ───┘  event
//! ```
//!
//! * **Commit before OK.** The answer to an event is published only from the store's
//!   after-commit callback, i.e. once the event's effect (and the remembered answer) is
//!   fsynced; the event's own PUBACK goes after that, so an external broker re-delivers an
//!   event the node died on (the node's session is persistent).
//! * **Once.** A `(device, msg_id)` seen before gets the original answer's exact bytes, and
//!   the handler does not run ([`crate::wms::dedupe`], kept ≥ 24 h across restarts).
//! * **Bad input is answered and counted, never fatal.** A payload the node cannot use gets
//!   `feedback` `ok:false` with the reason on the device's `cmd` topic (`re` = its `msg_id` when
//!   one could be read, else `null`), counted in `wms_node_floor_refused_total{reason}`:
//!
//! | reason | when | answer text |
//! |---|---|---|
//! | `oversize` | payload above `floor.max_event_bytes` | `payload is N bytes, more than the M-byte limit` |
//! | `malformed` | not JSON, not an object, no `type`, a field of the wrong type (an id that is a number) | the decoder's words, naming the field |
//! | `unknown_type` | `type` is no message of the protocol | `unknown message type "…"` |
//! | `wrong_topic` | a message on a channel where it does not belong (a `scan` on `reply`) | `a scan message does not belong on the reply channel` |
//! | `version` | `v` above what this node reads | `… has version N; this build reads up to version 1` |
//! | `invalid` | a field out of bounds (empty or overlong id, zero quantity) | `… field \`msg_id\` is empty` |
//! | `unknown_device` | no registered device of that class and id (an external broker without the generated ACL) | `unknown device scanner/x: register it with wms-node devices add` |
//! | `store` | the commit failed (disk full, I/O error) | `not recorded (…); scan again` (not remembered, so the re-sent event is applied) |
//!
//!   Topics that are not floor topics cannot be answered (there is no device to answer):
//!   they are counted as `bad_topic` and dropped.
//! * **Replies** (`print_result`, `hold_ack`, `reject`) go through the handler and the commit
//!   like events but get no answer; a device's `reject` is also counted in
//!   `wms_node_floor_device_rejects_total{of}`. **States** update [`Presence`] and the
//!   device's record.

use super::devices::{self, DeviceId, Registry};
use super::flow::{Event, FlowHandler, Outcome};
use super::presence::Presence;
use crate::store::{Store, StoreError, now_ms};
use crate::wms::dedupe;
use firmware_bridge::proto::json::{self, JsonError};
use firmware_bridge::proto::topic::Topic;
use firmware_bridge::proto::{Beep, Channel, DeviceClass, Downlink, Feedback, Uplink, VERSION};
use rumqttc::Publish;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// What the pipeline asks the MQTT session to do, in order.
#[derive(Debug)]
pub enum Out {
    /// Publish `payload` on `topic` (QoS 1).
    Publish {
        /// The topic.
        topic: String,
        /// The JSON payload.
        payload: Vec<u8>,
    },
    /// Acknowledge a received publish (manual acks: after its effect is committed).
    Ack(Publish),
}

/// The pipeline's settings.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// `node.site`.
    pub site: String,
    /// Largest event or reply payload the node looks at (`floor.max_event_bytes`).
    pub max_event_bytes: usize,
}

struct Shared<H: FlowHandler> {
    opts: PipelineOptions,
    store: Store,
    registry: Registry,
    presence: Presence,
    handler: H,
    out: mpsc::UnboundedSender<Out>,
    events: Option<mpsc::UnboundedSender<H::Event>>,
}

/// The dispatch pipeline: cheap to clone, called from the MQTT session for every publish.
pub struct Pipeline<H: FlowHandler> {
    shared: Arc<Shared<H>>,
}

impl<H: FlowHandler> Clone for Pipeline<H> {
    fn clone(&self) -> Self {
        Pipeline {
            shared: self.shared.clone(),
        }
    }
}

/// What a store job decided for one event.
enum Applied<E> {
    /// Seen before: its original answer.
    Duplicate(Vec<u8>),
    /// Applied now.
    New {
        answer: Vec<u8>,
        commands: Vec<(DeviceId, Downlink<String>)>,
        events: Vec<E>,
    },
}

impl<H: FlowHandler> Pipeline<H> {
    /// A pipeline committing through `store`; what it sends goes to `out`, what handlers report
    /// to `events` (dropped when `None`).
    pub fn new(
        opts: PipelineOptions,
        store: Store,
        registry: Registry,
        presence: Presence,
        handler: H,
        out: mpsc::UnboundedSender<Out>,
        events: Option<mpsc::UnboundedSender<H::Event>>,
    ) -> Self {
        Pipeline {
            shared: Arc::new(Shared {
                opts,
                store,
                registry,
                presence,
                handler,
                out,
                events,
            }),
        }
    }

    /// Handles one publish received from the broker. Never blocks: the store job runs on the
    /// writer thread and everything after the commit is sent to `out` from there.
    pub fn dispatch(&self, p: Publish) {
        let received = Instant::now();
        let s = &self.shared;
        let topic = match Topic::parse(&p.topic) {
            Ok(t) if t.site == s.opts.site => t,
            _ => {
                refused("bad_topic");
                tracing::debug!(topic = %p.topic, "not a floor topic; dropped");
                return self.ack(p);
            }
        };
        if topic.class == DeviceClass::Gateway {
            // Our own state and alerts, or another gateway's: not device traffic.
            return self.ack(p);
        }
        let Ok(device) = DeviceId::new(topic.class, topic.id) else {
            refused("bad_topic");
            return self.ack(p);
        };
        let channel = topic.channel;
        if !matches!(channel, Channel::Evt | Channel::Reply | Channel::State) {
            refused("bad_topic");
            return self.ack(p);
        }
        if !s.registry.contains(&device.to_string()) {
            refused("unknown_device");
            tracing::warn!(device = %device, "message from an unregistered device refused");
            if channel != Channel::State {
                let text =
                    format!("unknown device {device}: register it with wms-node devices add");
                self.refuse(&device, json::peek_id(&p.payload), text);
            }
            return self.ack(p);
        }
        let decoded = if p.payload.len() > s.opts.max_event_bytes {
            Err(JsonError::TooLarge {
                len: p.payload.len(),
                max: s.opts.max_event_bytes,
            })
        } else {
            json::decode_uplink(channel, &p.payload)
        };
        let msg = match decoded {
            Ok(msg) => msg,
            Err(e) => {
                refused(reason(&e));
                tracing::warn!(device = %device, error = %e, "device message refused");
                if channel != Channel::State {
                    let re = if matches!(e, JsonError::TooLarge { .. }) {
                        None
                    } else {
                        json::peek_id(&p.payload)
                    };
                    self.refuse(&device, re, e.to_string());
                }
                return self.ack(p);
            }
        };
        if let Uplink::State(state) = &msg {
            let now = now_ms();
            s.presence.update(&device, state, now);
            let fw = state.fw.clone();
            let dev = device.clone();
            let this = self.clone();
            s.store.submit(
                move |txn| devices::touch(txn, &dev, now, fw.as_deref()),
                move |r| {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "cannot record a device's state");
                    }
                    this.ack(p);
                },
            );
            return;
        }
        if let Uplink::Reject(r) = &msg {
            let of = r.of.as_deref().unwrap_or("unknown");
            let of = ["feedback", "task", "hold", "print"]
                .into_iter()
                .find(|k| *k == of)
                .unwrap_or("unknown");
            metrics::counter!("wms_node_floor_device_rejects_total", "of" => of).increment(1);
            tracing::warn!(device = %device, re = r.re.as_deref().unwrap_or(""), error = %r.error, "device could not use a command");
        }
        let kind = msg.kind().unwrap_or("state");
        metrics::counter!("wms_node_floor_events_total", "type" => kind).increment(1);
        self.apply(device, msg, p, received);
    }

    /// Runs the handler (or finds the remembered answer) in a store job; publishes after the
    /// commit.
    fn apply(&self, device: DeviceId, msg: Uplink<String>, p: Publish, received: Instant) {
        let s = &self.shared;
        let now = now_ms();
        // Only events with an answer are remembered: replies have none, and a heartbeat's
        // effect (last seen) is the same however often it is applied.
        let msg_id = match &msg {
            Uplink::Scan(m) => Some(m.msg_id.clone()),
            Uplink::RequestTask(m) => Some(m.msg_id.clone()),
            Uplink::Short(m) => Some(m.msg_id.clone()),
            _ => None,
        };
        let key = device.to_string();
        let this = self.clone();
        let dev = device.clone();
        let job = move |txn: &redb::WriteTransaction| -> Result<Applied<H::Event>, StoreError> {
            let s = &this.shared;
            if let Some(id) = &msg_id {
                if let Some(seen) = dedupe::seen(txn, &key, id)? {
                    return Ok(Applied::Duplicate(seen.answer));
                }
            }
            let ev = Event {
                device: &dev,
                now_ms: now,
                msg: &msg,
            };
            let Outcome {
                feedback,
                commands,
                events,
            } = s.handler.handle(txn, &ev)?;
            let answer = match &feedback {
                Some(fb) => json::to_vec(fb).map_err(|e| StoreError::Aborted(e.to_string()))?,
                None => Vec::new(),
            };
            if let Some(id) = &msg_id {
                dedupe::remember(txn, &key, id, &answer, now)?;
            }
            Ok(Applied::New {
                answer,
                commands,
                events,
            })
        };
        let this = self.clone();
        let re = msg_id_of(&p);
        s.store.submit(job, move |result| {
            let s = &this.shared;
            match result {
                Ok(Applied::Duplicate(answer)) => {
                    metrics::counter!("wms_node_floor_duplicates_total").increment(1);
                    this.publish_to(&device, answer);
                }
                Ok(Applied::New {
                    answer,
                    commands,
                    events,
                }) => {
                    this.publish_to(&device, answer);
                    for (to, cmd) in commands {
                        match json::downlink_to_vec(&cmd) {
                            Ok(bytes) => this.publish_to(&to, bytes),
                            Err(e) => tracing::error!(error = %e, "cannot encode a command"),
                        }
                    }
                    if let Some(tx) = &s.events {
                        for e in events {
                            let _ = tx.send(e);
                        }
                    }
                }
                Err(e) => {
                    refused("store");
                    tracing::error!(device = %device, error = %e, "device event not recorded");
                    if re.is_some() {
                        this.refuse(&device, re, format!("not recorded ({e}); scan again"));
                    }
                }
            }
            this.ack(p);
            metrics::histogram!("wms_node_floor_event_duration_seconds")
                .record(received.elapsed().as_secs_f64());
        });
    }

    fn publish_to(&self, device: &DeviceId, payload: Vec<u8>) {
        if payload.is_empty() {
            return;
        }
        let topic = format!(
            "wms/{}/{}/{}/cmd",
            self.shared.opts.site, device.class, device.id
        );
        let _ = self.shared.out.send(Out::Publish { topic, payload });
    }

    /// Answers a payload the node cannot use.
    fn refuse(&self, device: &DeviceId, re: Option<String>, text: String) {
        let fb = Feedback {
            v: VERSION,
            re,
            ok: false,
            beep: Beep::Error,
            text: truncate(text),
            next: None,
        };
        if let Ok(bytes) = json::to_vec(&fb) {
            self.publish_to(device, bytes);
        }
    }

    fn ack(&self, p: Publish) {
        let _ = self.shared.out.send(Out::Ack(p));
    }
}

/// The `msg_id` of an event payload, for a refusal after a failed commit.
fn msg_id_of(p: &Publish) -> Option<String> {
    json::peek_id(&p.payload)
}

fn refused(reason: &'static str) {
    metrics::counter!("wms_node_floor_refused_total", "reason" => reason).increment(1);
}

/// The `reason` label of a decoding error.
pub fn reason(e: &JsonError) -> &'static str {
    match e {
        JsonError::TooLarge { .. } => "oversize",
        JsonError::UnknownType(_) => "unknown_type",
        JsonError::WrongChannel { .. } => "wrong_topic",
        JsonError::UnsupportedVersion { .. } => "version",
        JsonError::Invalid { .. } => "invalid",
        _ => "malformed",
    }
}

/// Operator text fits the protocol's limit (512 bytes), cut on a character boundary.
fn truncate(mut s: String) -> String {
    let max = firmware_bridge::proto::MAX_TEXT_LEN;
    if s.len() > max {
        let mut cut = max - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
