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
//!   one could be read, else `null`), counted in `wms_node_floor_refused_total{reason}`
//!   (the texts as in English; they follow `[floor] language`, the decoder's own words kept
//!   inside the Chinese):
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
//! * **The node's own `cmd`** (`wms/{site}/gateway/{node}/cmd`: `ota_update` from a fleet
//!   link) is handed, payload as it came, to whoever took [`Pipeline::with_gateway_commands`]
//!   (the OTA part), and acknowledged; it is no floor work. A burst beyond that queue is
//!   dropped and counted as `gateway_busy`. Other gateways' traffic is ignored.

use super::devices::{self, DeviceId, Registry};
use super::flow::{Event, FlowHandler, Outcome};
use super::presence::Presence;
use crate::status::i18n::{Lang, Msg};
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
    /// The language of the refusals' texts (the floor's).
    pub lang: Lang,
}

struct Shared<H: FlowHandler> {
    opts: PipelineOptions,
    store: Store,
    registry: Registry,
    presence: Presence,
    handler: H,
    out: mpsc::UnboundedSender<Out>,
    events: Option<mpsc::UnboundedSender<H::Event>>,
    /// The node's id and where its own `cmd` messages go.
    gateway_cmd: Option<(String, mpsc::Sender<Vec<u8>>)>,
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
                gateway_cmd: None,
            }),
        }
    }

    /// Hands the payloads published on `wms/{site}/gateway/{node_id}/cmd` to `tx` (call before
    /// the pipeline is cloned; later calls change nothing).
    pub fn with_gateway_commands(mut self, node_id: &str, tx: mpsc::Sender<Vec<u8>>) -> Self {
        if let Some(s) = Arc::get_mut(&mut self.shared) {
            s.gateway_cmd = Some((node_id.to_owned(), tx));
        }
        self
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
            // Our own commands (OTA) go to their handler; our own state, alerts and replies,
            // a fleet link's state, or another gateway's traffic: not device traffic.
            if topic.channel == Channel::Cmd
                && let Some((node, tx)) = &s.gateway_cmd
                && topic.id == node.as_str()
                && tx.try_send(p.payload.to_vec()).is_err()
            {
                refused("gateway_busy");
                tracing::warn!(
                    "a command to the node was dropped: the previous ones are still being handled"
                );
            }
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
                let text = s.opts.lang.f(Msg::FlUnknownDevice, &[&device]);
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
                    self.refuse(&device, re, s.opts.lang.f(Msg::FlBadMessage, &[&e]));
                }
                return self.ack(p);
            }
        };
        if let Uplink::State(state) = &msg {
            let now = now_ms();
            s.presence.update(&device, state, now);
            let fw = state.fw.clone();
            let online = state.online;
            let dev = device.clone();
            let this = self.clone();
            let job_self = self.clone();
            s.store.submit(
                move |txn| {
                    devices::touch(txn, &dev, now, fw.as_deref())?;
                    // Back online: what it missed and must still get (unacknowledged holds).
                    if online {
                        job_self.shared.handler.online(txn, &dev)
                    } else {
                        Ok(Vec::new())
                    }
                },
                move |r| {
                    match r {
                        Ok(commands) => this.publish_commands(commands),
                        Err(e) => tracing::warn!(error = %e, "cannot record a device's state"),
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
            if let Some(id) = &msg_id
                && let Some(seen) = dedupe::seen(txn, &key, id)?
            {
                return Ok(Applied::Duplicate(seen.answer));
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
                    this.publish_commands(commands);
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
                        let text = s.opts.lang.f(Msg::FlNotRecorded, &[&e]);
                        this.refuse(&device, re, text);
                    }
                }
            }
            this.ack(p);
            metrics::histogram!("wms_node_floor_event_duration_seconds")
                .record(received.elapsed().as_secs_f64());
        });
    }

    /// Order `tid` went on hold: the handler's commands to the devices working on it (and
    /// the put-back of goods no device was working on), in a store job; the commands are
    /// published and the events passed on after its commit. A failure is logged; the hold
    /// still stops every later scan of the order, and the next start's sweep tries again.
    pub fn order_held(&self, tid: u64) {
        let this = self.clone();
        let job_self = self.clone();
        self.shared.store.submit(
            move |txn| job_self.shared.handler.held(txn, tid, now_ms()),
            move |r| match r {
                Ok((commands, events)) => {
                    this.publish_commands(commands);
                    this.pass_on(events);
                }
                Err(e) => tracing::error!(tid, error = %e, "cannot send a hold to the floor"),
            },
        );
    }

    /// The holds the floor owes for orders held while it was not listening (at start, or
    /// after it fell behind the warehouse's events), in a store job, published after its
    /// commit.
    pub fn sweep_holds(&self) {
        let this = self.clone();
        let job_self = self.clone();
        self.shared.store.submit(
            move |txn| job_self.shared.handler.sweep(txn, now_ms()),
            move |r| match r {
                Ok((commands, events)) => {
                    if !commands.is_empty() || !events.is_empty() {
                        tracing::info!(
                            holds = commands.len(),
                            "holds owed to the floor sent, put-backs owed made"
                        );
                    }
                    this.publish_commands(commands);
                    this.pass_on(events);
                }
                Err(e) => tracing::error!(error = %e, "cannot look for holds owed to the floor"),
            },
        );
    }

    /// Committed changes, to whoever subscribed.
    fn pass_on(&self, events: Vec<H::Event>) {
        if let Some(tx) = &self.shared.events {
            for e in events {
                let _ = tx.send(e);
            }
        }
    }

    /// Publishes commands to devices (QoS 1, in order).
    pub(crate) fn publish_commands(&self, commands: Vec<(DeviceId, Downlink<String>)>) {
        for (to, cmd) in commands {
            match json::downlink_to_vec(&cmd) {
                Ok(bytes) => self.publish_to(&to, bytes),
                Err(e) => tracing::error!(error = %e, "cannot encode a command"),
            }
        }
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
            text: json::fit_text(text),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Alerts;
    use crate::floor::flow::{self, Basic};
    use crate::store::StoreOptions;
    use firmware_bridge::proto::DeviceClass;
    use redb::{ReadableTable, TableDefinition};
    use rumqttc::QoS;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const MARKS: TableDefinition<&str, u64> = TableDefinition::new("test_marks");

    /// Records every scan in a table and answers OK; fails scans whose code is "fail".
    struct Marking(Arc<AtomicUsize>);

    impl FlowHandler for Marking {
        type Event = String;
        fn handle(
            &self,
            txn: &redb::WriteTransaction,
            ev: &Event<'_>,
        ) -> Result<Outcome<String>, StoreError> {
            let Uplink::Scan(s) = ev.msg else {
                return Basic.handle(txn, ev).map(|o| Outcome {
                    feedback: o.feedback,
                    commands: Vec::new(),
                    events: Vec::new(),
                });
            };
            if s.code == "fail" {
                return Err(StoreError::Aborted("the flow refused".into()));
            }
            self.0.fetch_add(1, Ordering::SeqCst);
            txn.open_table(MARKS)?
                .insert(s.msg_id.as_str(), ev.now_ms)?;
            Ok(Outcome {
                feedback: Some(flow::feedback(&s.msg_id, true, "picked")),
                commands: Vec::new(),
                events: vec![s.msg_id.clone()],
            })
        }
    }

    struct Rig {
        pipeline: Pipeline<Marking>,
        out: mpsc::UnboundedReceiver<Out>,
        events: mpsc::UnboundedReceiver<String>,
        store: Store,
        applied: Arc<AtomicUsize>,
    }

    fn rig(path: &std::path::Path) -> Rig {
        let store = Store::open(StoreOptions::new(path), Alerts::new()).unwrap();
        let registry = Registry::default();
        registry.insert("scanner/sc-1", "$7$unused");
        let (tx, out) = mpsc::unbounded_channel();
        let (etx, events) = mpsc::unbounded_channel();
        let applied = Arc::new(AtomicUsize::new(0));
        let pipeline = Pipeline::new(
            PipelineOptions {
                site: "main".into(),
                max_event_bytes: 64 * 1024,
                lang: Lang::En,
            },
            store.clone(),
            registry,
            Presence::default(),
            Marking(applied.clone()),
            tx,
            Some(etx),
        );
        Rig {
            pipeline,
            out,
            events,
            store,
            applied,
        }
    }

    fn publish(payload: &str) -> Publish {
        let mut p = Publish::new("wms/main/scanner/sc-1/evt", QoS::AtLeastOnce, payload);
        p.pkid = 7;
        p
    }

    fn scan(msg_id: &str, code: &str) -> String {
        format!(
            r#"{{"type":"scan","msg_id":"{msg_id}","ts":"t","code":"{code}","symbology":"ean13","mode":"pick"}}"#
        )
    }

    async fn answer(out: &mut mpsc::UnboundedReceiver<Out>) -> (String, Vec<u8>) {
        let item = tokio::time::timeout(std::time::Duration::from_secs(5), out.recv())
            .await
            .unwrap()
            .unwrap();
        match item {
            Out::Publish { topic, payload } => (topic, payload),
            Out::Ack(_) => panic!("an ack before the answer"),
        }
    }

    async fn ack(out: &mut mpsc::UnboundedReceiver<Out>) -> u16 {
        match out.recv().await.unwrap() {
            Out::Ack(p) => p.pkid,
            Out::Publish { topic, .. } => panic!("another publish on {topic}"),
        }
    }

    #[tokio::test]
    async fn the_nodes_own_commands_go_to_their_handler_and_other_gateways_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let r = rig(&dir.path().join("s.redb"));
        let (tx, mut cmds) = mpsc::channel(1);
        let pipeline = r.pipeline.with_gateway_commands("gw1", tx);
        let mut out = r.out;
        let at = |topic: &str, payload: &str| {
            let mut p = Publish::new(topic, QoS::AtLeastOnce, payload.to_owned());
            p.pkid = 9;
            p
        };
        pipeline.dispatch(at("wms/main/gateway/gw1/cmd", r#"{"type":"ota_update"}"#));
        assert_eq!(ack(&mut out).await, 9, "acknowledged, not answered");
        assert_eq!(cmds.recv().await.unwrap(), br#"{"type":"ota_update"}"#);
        // Another gateway's commands, and the node's own replies and state: not ours.
        for topic in ["wms/main/gateway/gw2/cmd", "wms/main/gateway/gw1/reply"] {
            pipeline.dispatch(at(topic, "{}"));
            assert_eq!(ack(&mut out).await, 9);
        }
        assert!(cmds.try_recv().is_err());
        // A burst beyond the handler's queue is dropped (and counted), never blocking.
        pipeline.dispatch(at("wms/main/gateway/gw1/cmd", "1"));
        pipeline.dispatch(at("wms/main/gateway/gw1/cmd", "2"));
        assert_eq!(ack(&mut out).await, 9);
        assert_eq!(ack(&mut out).await, 9);
        assert_eq!(cmds.recv().await.unwrap(), b"1");
        assert!(cmds.try_recv().is_err());
        assert_eq!(r.applied.load(Ordering::SeqCst), 0, "no floor work");
    }

    #[tokio::test]
    async fn the_answer_is_sent_only_once_its_effect_is_committed_then_the_event_is_acked() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = rig(&dir.path().join("s.redb"));
        r.pipeline.dispatch(publish(&scan("m-1", "6901234567892")));
        let (topic, payload) = answer(&mut r.out).await;
        assert_eq!(topic, "wms/main/scanner/sc-1/cmd");
        // By the time the answer is out, a fresh read sees the effect: it was committed first.
        let marked = r
            .store
            .read(|t| {
                let table = t.open_table(MARKS)?;
                Ok(table.get("m-1")?.is_some())
            })
            .unwrap();
        assert!(marked);
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            (v["re"].as_str(), v["ok"].as_bool()),
            (Some("m-1"), Some(true))
        );
        assert_eq!(ack(&mut r.out).await, 7);
        assert_eq!(r.events.recv().await.as_deref(), Some("m-1"));
    }

    #[tokio::test]
    async fn a_duplicate_gets_the_original_bytes_without_running_the_flow_even_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let first = {
            let mut r = rig(&path);
            r.pipeline.dispatch(publish(&scan("m-1", "6901234567892")));
            let (_, first) = answer(&mut r.out).await;
            ack(&mut r.out).await;
            r.pipeline.dispatch(publish(&scan("m-1", "6901234567892")));
            assert_eq!(answer(&mut r.out).await.1, first);
            ack(&mut r.out).await;
            assert_eq!(r.applied.load(Ordering::SeqCst), 1);
            // Close the store and wait for its writer to let go of the file: dropping the
            // last handle stops the writer too, but without waiting for it.
            let Rig {
                pipeline,
                out,
                events,
                store,
                applied,
            } = r;
            drop((pipeline, out, events, applied));
            store.close().await.unwrap();
            first
        };
        // The store was closed; a new pipeline still knows the answer.
        let mut r = rig(&path);
        r.pipeline.dispatch(publish(&scan("m-1", "6901234567892")));
        assert_eq!(answer(&mut r.out).await.1, first);
        assert_eq!(r.applied.load(Ordering::SeqCst), 0);
        // The same msg_id from another class of device is another event.
        let mut other = publish(&scan("m-1", "6901234567892"));
        other.topic = "wms/main/printer/sc-1/evt".into();
        ack(&mut r.out).await;
        r.pipeline.dispatch(other);
        let (topic, payload) = answer(&mut r.out).await;
        assert_eq!(topic, "wms/main/printer/sc-1/cmd");
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert!(
            v["text"]
                .as_str()
                .unwrap()
                .contains("unknown device printer/sc-1")
        );
    }

    #[tokio::test]
    async fn a_failed_flow_is_refused_not_remembered_and_applied_when_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = rig(&dir.path().join("s.redb"));
        r.pipeline.dispatch(publish(&scan("m-2", "fail")));
        let (_, payload) = answer(&mut r.out).await;
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["ok"], false);
        assert!(
            v["text"].as_str().unwrap().starts_with("not recorded"),
            "{v}"
        );
        ack(&mut r.out).await;
        // Not remembered: the same msg_id with a good payload is applied.
        r.pipeline.dispatch(publish(&scan("m-2", "6901234567892")));
        let (_, payload) = answer(&mut r.out).await;
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(r.applied.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn heartbeats_need_no_answer_and_states_mark_devices_online() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = rig(&dir.path().join("s.redb"));
        r.pipeline.dispatch(publish(
            r#"{"type":"heartbeat","msg_id":"h-1","ts":"t","queued":0}"#,
        ));
        assert!(matches!(r.out.recv().await, Some(Out::Ack(_))));
        let mut st = Publish::new(
            "wms/main/scanner/sc-1/state",
            QoS::AtLeastOnce,
            r#"{"v":1,"online":true,"fw":"x 1"}"#,
        );
        st.retain = true;
        r.pipeline.dispatch(st);
        assert!(matches!(r.out.recv().await, Some(Out::Ack(_))));
        let d = DeviceId::new(DeviceClass::Scanner, "sc-1").unwrap();
        assert!(r.pipeline.shared.presence.get(&d).unwrap().online);
    }

    #[tokio::test]
    async fn topics_that_are_not_the_sites_floor_topics_are_dropped_and_acked() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = rig(&dir.path().join("s.redb"));
        for topic in [
            "wms/other/scanner/sc-1/evt",
            "wms/main/robot/r1/evt",
            "elsewhere",
        ] {
            let mut p = publish(&scan("m-9", "1"));
            p.topic = topic.into();
            r.pipeline.dispatch(p);
            assert!(matches!(r.out.recv().await, Some(Out::Ack(_))), "{topic}");
        }
    }

    /// The warehouse flows behind the pipeline, on a store with a SKU master, for the
    /// property test: every path of decode, device check and flow is reachable.
    fn flows_rig(
        path: &std::path::Path,
    ) -> (
        Pipeline<crate::floor::flows::Flows>,
        mpsc::UnboundedReceiver<Out>,
    ) {
        use crate::wms::{self, Rules, ShopId, Wms};
        let store = Store::open(StoreOptions::new(path), Alerts::new()).unwrap();
        let rows = crate::wms::sku::parse_skus(
            b"sku,barcode,name,on_hand,num_iid,sku_id,location\nRED-M,6900000000011,red,40,,,B-02-01\n",
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(wms::write(&store, move |txn| {
            let mut w = Wms::new(txn, &ShopId::main(), chrono::Utc::now());
            w.import_skus(&rows, &[], false, &Rules::default())?;
            w.finish()?;
            Ok(())
        }))
        .unwrap();
        let registry = Registry::default();
        registry.insert("scanner/sc-1", "$7$unused");
        registry.insert("printer/lp-1", "$7$unused");
        let (tx, out) = mpsc::unbounded_channel();
        let pipeline = Pipeline::new(
            PipelineOptions {
                site: "main".into(),
                max_event_bytes: 4096,
                lang: Lang::En,
            },
            store,
            registry,
            Presence::default(),
            crate::floor::flows::Flows::new(ShopId::main()),
            tx,
            None,
        );
        (pipeline, out)
    }

    /// One of `words` mostly, else anything `regex` matches.
    fn word_or(
        words: &'static [&'static str],
        regex: &'static str,
    ) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            3 => proptest::sample::select(words).prop_map(str::to_owned),
            1 => regex,
        ]
    }

    fn topic() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let class = word_or(&["scanner", "printer", "gateway", ""], "\\PC{0,8}");
        let id = word_or(&["sc-1", "lp-1"], "\\PC{0,12}");
        let channel = word_or(&["evt", "reply", "state", "cmd", "alert"], "\\PC{0,6}");
        prop_oneof![
            // The registered devices' own topics, where the flows are reached.
            12 => proptest::sample::select(&[
                "wms/main/scanner/sc-1/evt",
                "wms/main/scanner/sc-1/evt",
                "wms/main/scanner/sc-1/evt",
                "wms/main/scanner/sc-1/reply",
                "wms/main/scanner/sc-1/state",
                "wms/main/printer/lp-1/reply",
            ][..])
            .prop_map(str::to_owned),
            4 => (class, id, channel).prop_map(|(c, i, ch)| format!("wms/main/{c}/{i}/{ch}")),
            1 => "\\PC{0,40}",
            1 => "(wms/){0,3}[a-z/+#]{0,20}",
        ]
    }

    fn payload() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let ty = word_or(
            &[
                "scan",
                "request_task",
                "short",
                "heartbeat",
                "hold_ack",
                "print_result",
                "reject",
            ],
            "[a-z_]{0,12}",
        );
        let mode = word_or(&["pick", "pack", "ship", "receive", "count"], "[a-z]{0,6}");
        // Ids, codes and quantities as devices get them wrong: numbers, empties, overlong,
        // control characters, huge or negative quantities.
        let value = prop_oneof![
            Just("null".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            Just("4294967296".to_owned()),
            Just("-1".to_owned()),
            Just("1e300".to_owned()),
            "\\PC{0,80}".prop_map(|s| serde_json::Value::String(s).to_string()),
            Just("\"6900000000011\"".to_owned()),
            Just("\"RED-M\"".to_owned()),
            Just("\"pick-12\"".to_owned()),
            Just(format!("\"{}\"", "9".repeat(70))),
        ];
        let msg = (
            ty,
            mode,
            "[a-z0-9]{1,10}",
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("msg_id"),
                        Just("code"),
                        Just("qty"),
                        Just("task_id"),
                        Just("re"),
                        Just("v"),
                        Just("ts"),
                        Just("symbology"),
                        Just("online"),
                        Just("location")
                    ],
                    value,
                ),
                0..8,
            ),
        )
            .prop_map(|(ty, mode, id, fields)| {
                // Every field some message needs, valid; then the overrides (a repeated key:
                // the last one counts), so most cases get past the decoder.
                let mut s = format!(
                    r#"{{"type":"{ty}","v":1,"ts":"t","code":"6900000000011","symbology":"ean13","mode":"{mode}","queued":0,"re":"h-1","status":"printed","online":true,"msg_id":"{id}""#
                );
                for (k, v) in fields {
                    s.push_str(&format!(r#","{k}":{v}"#));
                }
                s.push('}');
                s.into_bytes()
            });
        prop_oneof![
            6 => msg,
            2 => proptest::collection::vec(any::<u8>(), 0..300),
            1 => proptest::collection::vec(any::<u8>(), 4000..5000),
        ]
    }

    /// Whatever a device (or anything else on the broker) publishes, the pipeline answers or
    /// drops it and acknowledges it, never panics, and everything it sends is a valid
    /// command of the protocol.
    #[test]
    fn any_topic_and_payload_is_answered_or_dropped_and_acked_without_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (pipeline, out) = flows_rig(&dir.path().join("s.redb"));
        let out = std::cell::RefCell::new(out);
        // Answers seen, refusals and OKs: the cases reach the decoder and the flows.
        let answered = std::cell::Cell::new((0u32, 0u32));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 1000,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        });
        runner
            .run(&(topic(), payload()), |(topic, payload)| {
                let mut p = Publish::new(topic.clone(), QoS::AtLeastOnce, payload);
                p.pkid = 11;
                pipeline.dispatch(p);
                let mut out = out.borrow_mut();
                rt.block_on(async {
                    loop {
                        let next =
                            tokio::time::timeout(std::time::Duration::from_secs(10), out.recv())
                                .await;
                        match next {
                            Ok(Some(Out::Ack(a))) => {
                                proptest::prop_assert_eq!(a.pkid, 11);
                                return Ok(());
                            }
                            Ok(Some(Out::Publish { topic: to, payload })) => {
                                proptest::prop_assert!(to.ends_with("/cmd"), "{}", to);
                                let sent = json::decode_downlink(&payload);
                                if let Ok(Downlink::Feedback(f)) = &sent {
                                    let (no, yes) = answered.get();
                                    answered.set(if f.ok { (no, yes + 1) } else { (no + 1, yes) });
                                }
                                proptest::prop_assert!(
                                    sent.is_ok(),
                                    "{topic}: sent {:?}: {sent:?}",
                                    String::from_utf8_lossy(&payload)
                                );
                            }
                            other => {
                                return Err(proptest::test_runner::TestCaseError::fail(format!(
                                    "{topic}: no ack ({})",
                                    other.is_err()
                                )));
                            }
                        }
                    }
                })
            })
            .unwrap();
        let (refused, ok) = answered.get();
        assert!(refused > 20 && ok > 0, "refused {refused}, ok {ok}");
    }
}
