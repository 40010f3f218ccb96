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
                        this.refuse(&device, re, format!("not recorded ({e}); scan again"));
                    }
                }
            }
            this.ack(p);
            metrics::histogram!("wms_node_floor_event_duration_seconds")
                .record(received.elapsed().as_secs_f64());
        });
    }

    /// Order `tid` went on hold: the handler's commands to the devices working on it, in a
    /// store job, published after its commit. A failure is logged; the hold still stops every
    /// later scan of the order.
    pub fn order_held(&self, tid: u64) {
        let this = self.clone();
        let job_self = self.clone();
        self.shared.store.submit(
            move |txn| job_self.shared.handler.held(txn, tid, now_ms()),
            move |r| match r {
                Ok(commands) => this.publish_commands(commands),
                Err(e) => tracing::error!(tid, error = %e, "cannot send a hold to the floor"),
            },
        );
    }

    fn publish_commands(&self, commands: Vec<(DeviceId, Downlink<String>)>) {
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
}
