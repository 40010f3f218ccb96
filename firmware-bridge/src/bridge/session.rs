//! One MQTT session per device: publishes its spooled events, its state and heartbeats, and
//! hands `cmd` messages to the device thread.
//!
//! ## Delivery
//!
//! rumqttc keeps unacknowledged publishes only in memory and re-sends them on its own after a
//! reconnect, which would lose them on a restart and could not tell us which event a PUBACK
//! belongs to. So the session owns delivery instead:
//!
//! * every event is in the device's [`Spool`] before it is published;
//! * after each CONNACK, rumqttc's own re-send list and its buffered events are cleared, and the
//!   session publishes from the oldest pending spool entry, at most [`WINDOW`] in flight;
//! * [`AckTracker`] maps each `Outgoing::Publish(pkid)` to the request that produced it (rumqttc
//!   handles requests in the order they were queued, and the session queues them only while
//!   connected), and each PUBACK to its spool entry, which is then removed;
//! * on a connection error everything in flight is forgotten and re-published after the next
//!   CONNACK. Duplicates are possible (an ack lost with the connection); the node drops them by
//!   `msg_id`. Losses are not.
//!
//! Reconnects wait with jittered exponential backoff ([`crate::pace::Backoff`]); rumqttc has none and would
//! otherwise retry as fast as it is polled. The rumqttc `poll()` future is never cancelled
//! mid-flight (a `select!` keeps it alive while device notes are handled), because cancelling
//! it can drop a packet it was writing.
//!
//! Retained `state`: birth on every CONNACK (`online` = whether the serial port is open), an
//! update whenever the port opens or closes, the last will `{"v":1,"online":false}`, and an
//! explicit offline state on a clean shutdown (a clean DISCONNECT does not fire the will).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::Broker;
use super::device::{DeviceCmd, DeviceSender, Note, new_msg_id, now_rfc3339};
use super::spool::Spool;
use crate::proto::json;
use crate::proto::{
    Channel, DeviceClass, Heartbeat, PrintResult, PrintStatus, Reject, State, VERSION,
};

/// Spool entries published and not yet acknowledged, at most.
pub const WINDOW: usize = 16;

/// How long a clean shutdown waits for the offline state to be acknowledged.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What a queued publish was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// A spool entry: removed from the spool on PUBACK.
    Spool(u64),
    /// State, heartbeat: fire and forget (re-created after a reconnect, not re-sent).
    Volatile,
    /// The offline state of a clean shutdown.
    Offline,
}

/// Maps rumqttc's packet ids back to what was published. Pure state, no I/O.
#[derive(Debug, Default)]
pub struct AckTracker {
    queued: VecDeque<Tag>,
    inflight: HashMap<u16, Tag>,
    collided: Option<Tag>,
    spool_inflight: usize,
    /// Next spool sequence number to publish.
    cursor: u64,
}

impl AckTracker {
    /// A publish request was queued on the client (call in the order of queuing).
    pub fn queued(&mut self, tag: Tag) {
        if let Tag::Spool(seq) = tag {
            self.spool_inflight += 1;
            self.cursor = seq + 1;
        }
        self.queued.push_back(tag);
    }

    /// rumqttc wrote a publish with this packet id (0 for QoS 0).
    pub fn outgoing_publish(&mut self, pkid: u16) {
        // After a collision the next outgoing publish is the one that waited.
        let tag = self.collided.take().or_else(|| self.queued.pop_front());
        match tag {
            Some(tag) if pkid != 0 => {
                self.inflight.insert(pkid, tag);
            }
            Some(tag) => self.forget(tag),
            None => warn!(
                pkid,
                "outgoing publish that the bridge did not queue; ignored"
            ),
        }
    }

    /// rumqttc holds a publish back because its packet id is still in flight.
    pub fn await_ack(&mut self) {
        self.collided = self.queued.pop_front();
    }

    /// The broker acknowledged `pkid`; returns what it was.
    pub fn puback(&mut self, pkid: u16) -> Option<Tag> {
        let tag = self.inflight.remove(&pkid)?;
        self.forget(tag);
        Some(tag)
    }

    fn forget(&mut self, tag: Tag) {
        if let Tag::Spool(_) = tag {
            self.spool_inflight = self.spool_inflight.saturating_sub(1);
        }
    }

    /// Whether another spool entry may be published now.
    pub fn window_open(&self) -> bool {
        self.spool_inflight < WINDOW
    }

    /// The next spool sequence number to publish.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The connection is gone: nothing is in flight any more; start again from the oldest
    /// pending entry.
    pub fn reset(&mut self) {
        *self = AckTracker::default();
    }
}

/// Topics of one device.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `…/evt`.
    pub evt: String,
    /// `…/cmd`.
    pub cmd: String,
    /// `…/reply`.
    pub reply: String,
    /// `…/state`.
    pub state: String,
}

/// Everything a session needs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// MQTT client id.
    pub client_id: String,
    /// Broker address.
    pub broker: Broker,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// Keep-alive.
    pub keep_alive: Duration,
    /// Reconnect backoff base.
    pub reconnect_min: Duration,
    /// Reconnect backoff cap.
    pub reconnect_max: Duration,
    /// Largest packet.
    pub max_packet_bytes: usize,
    /// Topics.
    pub topics: Topics,
    /// Scanner or printer.
    pub class: DeviceClass,
    /// Heartbeat interval (zero = off).
    pub heartbeat: Duration,
    /// Device id (for logs).
    pub device: String,
}

fn options(cfg: &SessionConfig) -> MqttOptions {
    let mut o = MqttOptions::new(
        cfg.client_id.clone(),
        cfg.broker.host.clone(),
        cfg.broker.port,
    );
    o.set_keep_alive(cfg.keep_alive);
    // A persistent session keeps the node's commands for us across a short disconnect.
    o.set_clean_session(false);
    o.set_inflight(u16::try_from(WINDOW * 2).unwrap_or(u16::MAX));
    o.set_max_packet_size(cfg.max_packet_bytes, cfg.max_packet_bytes);
    let will = json::to_vec(&State::<String>::offline())
        .unwrap_or_else(|_| b"{\"online\":false}".to_vec());
    o.set_last_will(LastWill::new(
        cfg.topics.state.clone(),
        will,
        QoS::AtLeastOnce,
        true,
    ));
    if let Some((user, pass)) = &cfg.credentials {
        o.set_credentials(user.clone(), pass.clone());
    }
    o
}

struct Run {
    cfg: SessionConfig,
    client: AsyncClient,
    spool: Arc<Mutex<Spool>>,
    device: DeviceSender,
    tracker: AckTracker,
    connected: bool,
    port_online: bool,
    port_detail: Option<String>,
    /// Commands this session could not read (answered with a reject), since it started.
    refused: u64,
}

/// Runs the session until `shutdown`; publishes the offline state on the way out.
pub async fn run(
    cfg: SessionConfig,
    spool: Arc<Mutex<Spool>>,
    mut notes: UnboundedReceiver<Note>,
    device: DeviceSender,
    shutdown: CancellationToken,
) {
    let (client, mut eventloop) = AsyncClient::new(options(&cfg), 64);
    let mut backoff = super::retries(cfg.reconnect_min, cfg.reconnect_max);
    let mut run = Run {
        cfg,
        client,
        spool,
        device,
        tracker: AckTracker::default(),
        connected: false,
        port_online: false,
        port_detail: None,
        refused: 0,
    };
    let mut retry_at: Option<Instant> = None;
    let mut stopping: Option<Instant> = None;
    let heartbeat = run.cfg.heartbeat;
    let mut next_beat = Instant::now() + heartbeat.max(Duration::from_secs(1));
    let mut notes_open = true;

    loop {
        if let Some(deadline) = stopping
            && (!run.connected || Instant::now() >= deadline)
        {
            return;
        }
        // Waiting out a reconnect backoff: no network, but keep taking notes.
        if let Some(at) = retry_at {
            tokio::select! {
                // Shutdown while disconnected: the spool keeps everything for next time.
                _ = shutdown.cancelled(), if stopping.is_none() => return,
                // Device notes: spool entries wait; the port state is sent on reconnect.
                note = notes.recv(), if notes_open => match note {
                    Some(n) => run.note(n),
                    None => notes_open = false,
                },
                // Backoff over: let the next poll reconnect.
                _ = sleep_until(at) => retry_at = None,
            }
            continue;
        }

        let event = {
            let poll = eventloop.poll();
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    biased;
                    // Shutdown: say offline (the will does not fire on a clean disconnect),
                    // then wait for its PUBACK or the grace period.
                    _ = shutdown.cancelled(), if stopping.is_none() => {
                        if !run.connected {
                            return;
                        }
                        stopping = Some(Instant::now() + SHUTDOWN_GRACE);
                        let mut st = State::<String>::offline();
                        st.class = Some(run.cfg.class);
                        st.detail = Some("bridge stopped".to_owned());
                        run.publish_state(&st, Tag::Offline);
                    }
                    // The grace period ran out while the poll was pending.
                    _ = sleep_until(stopping.unwrap_or_else(Instant::now)), if stopping.is_some() => {
                        return;
                    }
                    // Network progress (connect, acks, commands, our own publishes).
                    ev = &mut poll => break ev,
                    // The device thread spooled something or its port changed.
                    note = notes.recv(), if notes_open => match note {
                        Some(n) => run.note(n),
                        None => notes_open = false,
                    },
                    // Heartbeat.
                    _ = sleep_until(next_beat), if !heartbeat.is_zero() => {
                        next_beat = Instant::now() + heartbeat;
                        run.heartbeat();
                    }
                }
            }
        };

        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                // Delivery is ours: drop rumqttc's re-send list and anything it buffered from
                // the old connection, so every Outgoing::Publish from now on is one we queued.
                eventloop.pending.clear();
                eventloop.state.events.clear();
                run.tracker.reset();
                run.connected = true;
                backoff.reset();
                info!(
                    device = %run.cfg.device,
                    session_present = ack.session_present,
                    queued = run.queued(),
                    "connected to broker"
                );
                if let Err(e) = run
                    .client
                    .try_subscribe(run.cfg.topics.cmd.clone(), QoS::AtLeastOnce)
                {
                    warn!(device = %run.cfg.device, error = %e, "cannot subscribe to commands");
                }
                if stopping.is_none() {
                    run.publish_birth();
                    run.pump();
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => match run.tracker.puback(ack.pkid) {
                Some(Tag::Spool(seq)) => {
                    match run.with_spool(|s| s.ack(seq)) {
                        Some(Ok(())) => {}
                        Some(Err(e)) => {
                            warn!(device = %run.cfg.device, error = %e, "cannot record acknowledgement in spool")
                        }
                        None => warn!(device = %run.cfg.device, "spool lock poisoned"),
                    }
                    run.pump();
                }
                Some(Tag::Offline) => {
                    debug!(device = %run.cfg.device, "offline state acknowledged; disconnecting");
                    let _ = run.client.try_disconnect();
                }
                Some(Tag::Volatile) | None => {}
            },
            Ok(Event::Incoming(Packet::Publish(p))) => run.command(&p.topic, &p.payload),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => run.tracker.outgoing_publish(pkid),
            Ok(Event::Outgoing(Outgoing::AwaitAck(_))) => run.tracker.await_ack(),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                if stopping.is_some() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                let was = std::mem::replace(&mut run.connected, false);
                run.tracker.reset();
                if stopping.is_some() {
                    return;
                }
                let wait = backoff.next_delay(rand::random());
                if was {
                    warn!(device = %run.cfg.device, error = %e, "broker connection lost; reconnecting");
                } else if backoff.attempts() <= 1
                    || matches!(e, ConnectionError::ConnectionRefused(_))
                {
                    debug!(device = %run.cfg.device, error = %e, retry_in = ?wait, "broker not reachable");
                }
                if backoff.attempts() == 5 {
                    warn!(device = %run.cfg.device, error = %e, queued = run.queued(), "broker still not reachable; events are kept in the spool");
                }
                retry_at = Some(Instant::now() + wait);
            }
        }
    }
}

impl Run {
    fn with_spool<R>(&self, f: impl FnOnce(&mut Spool) -> R) -> Option<R> {
        let mut guard = self.spool.lock().ok()?;
        Some(f(&mut guard))
    }

    fn queued(&self) -> usize {
        self.with_spool(|s| s.len()).unwrap_or(0)
    }

    fn note(&mut self, note: Note) {
        match note {
            Note::Spooled => self.pump(),
            Note::Port { online, detail } => {
                if online != self.port_online || detail != self.port_detail {
                    self.port_online = online;
                    self.port_detail = detail;
                    if self.connected {
                        self.publish_birth();
                    }
                }
            }
        }
    }

    /// Publishes spool entries while connected and the window allows.
    fn pump(&mut self) {
        if !self.connected {
            return;
        }
        while self.tracker.window_open() {
            let cursor = self.tracker.cursor();
            let Some(entry) = self.with_spool(|s| s.first_from(cursor).cloned()).flatten() else {
                return;
            };
            let topic = match entry.channel {
                Channel::Reply => &self.cfg.topics.reply,
                _ => &self.cfg.topics.evt,
            };
            match self
                .client
                .try_publish(topic.clone(), QoS::AtLeastOnce, false, entry.payload)
            {
                Ok(()) => self.tracker.queued(Tag::Spool(entry.seq)),
                // The request channel is full: the next ack or note pumps again.
                Err(e) => {
                    debug!(device = %self.cfg.device, error = %e, "publish deferred");
                    return;
                }
            }
        }
    }

    fn publish_state(&mut self, st: &State<String>, tag: Tag) {
        let Ok(payload) = json::to_vec(st) else {
            return;
        };
        if self
            .client
            .try_publish(
                self.cfg.topics.state.clone(),
                QoS::AtLeastOnce,
                true,
                payload,
            )
            .is_ok()
        {
            self.tracker.queued(tag);
        }
    }

    fn publish_birth(&mut self) {
        let st = State {
            v: VERSION,
            online: self.port_online,
            class: Some(self.cfg.class),
            fw: Some(concat!("wms-bridge ", env!("CARGO_PKG_VERSION")).to_owned()),
            detail: self.port_detail.clone(),
        };
        self.publish_state(&st, Tag::Volatile);
    }

    fn heartbeat(&mut self) {
        if !self.connected {
            return;
        }
        let hb = Heartbeat {
            v: VERSION,
            msg_id: new_msg_id(),
            ts: now_rfc3339(),
            queued: u32::try_from(self.queued()).ok(),
            detail: Some(self.port_detail.clone().unwrap_or_else(|| {
                if self.port_online {
                    "port open"
                } else {
                    "port closed"
                }
                .to_owned()
            })),
        };
        if let Ok(payload) = json::to_vec(&hb)
            && self
                .client
                .try_publish(
                    self.cfg.topics.evt.clone(),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .is_ok()
        {
            self.tracker.queued(Tag::Volatile);
        }
    }

    /// A message on the device's `cmd` topic.
    fn command(&mut self, topic: &str, payload: &[u8]) {
        if topic != self.cfg.topics.cmd {
            debug!(device = %self.cfg.device, topic, "message on an unexpected topic; ignored");
            return;
        }
        match json::decode_downlink(payload) {
            Ok(cmd) => {
                debug!(device = %self.cfg.device, kind = cmd.kind(), "command");
                self.device.send(DeviceCmd::Downlink(cmd));
            }
            Err(e) => {
                self.refused += 1;
                warn!(device = %self.cfg.device, error = %e, refused = self.refused, "bad command payload; answered with a reject");
                // Every command we cannot read gets an answer, so the node counts it instead of
                // waiting: a print job the printer's result (the node tracks jobs by it), any
                // other a `reject` naming the command's id when it has a readable one.
                let (of, re) = json::peek_command(payload);
                let bytes = match (self.cfg.class, of.as_deref(), re) {
                    (DeviceClass::Printer, Some("print"), Some(job_id)) => {
                        json::to_vec(&PrintResult {
                            v: VERSION,
                            re: job_id,
                            status: PrintStatus::Error,
                            error: Some(format!("bad print job: {e}")),
                        })
                    }
                    (_, _, re) => json::to_vec(&Reject {
                        v: VERSION,
                        re,
                        of,
                        error: e.to_string(),
                    }),
                };
                if let Ok(bytes) = bytes
                    && let Some(Ok(_)) = self.with_spool(|s| s.push(Channel::Reply, bytes))
                {
                    self.pump();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_are_matched_to_spool_entries_by_packet_id() {
        let mut t = AckTracker::default();
        t.queued(Tag::Volatile);
        t.queued(Tag::Spool(7));
        t.queued(Tag::Spool(8));
        assert_eq!(t.cursor(), 9);
        t.outgoing_publish(1);
        t.outgoing_publish(2);
        t.outgoing_publish(3);
        assert_eq!(t.puback(3), Some(Tag::Spool(8)));
        assert_eq!(t.puback(1), Some(Tag::Volatile));
        assert_eq!(t.puback(1), None, "a repeated ack matches nothing");
        assert_eq!(t.puback(2), Some(Tag::Spool(7)));
        assert!(t.window_open());
    }

    #[test]
    fn the_window_closes_at_the_limit_and_opens_on_an_ack() {
        let mut t = AckTracker::default();
        for seq in 0..WINDOW as u64 {
            t.queued(Tag::Spool(seq));
            t.outgoing_publish(seq as u16 + 1);
        }
        assert!(!t.window_open());
        t.puback(1);
        assert!(t.window_open());
    }

    #[test]
    fn a_collided_publish_gets_its_packet_id_when_released() {
        let mut t = AckTracker::default();
        t.queued(Tag::Spool(1));
        t.queued(Tag::Spool(2));
        t.queued(Tag::Spool(3));
        t.outgoing_publish(5);
        // Spool(2) collides with a packet id still in flight and waits; rumqttc takes no new
        // requests until it is released, so the next outgoing publish is Spool(2).
        t.await_ack();
        t.outgoing_publish(7);
        assert_eq!(t.puback(7), Some(Tag::Spool(2)));
        t.outgoing_publish(8);
        assert_eq!(t.puback(8), Some(Tag::Spool(3)));
        assert_eq!(t.puback(5), Some(Tag::Spool(1)));
    }

    #[test]
    fn a_reset_forgets_everything_in_flight_and_restarts_from_the_oldest_entry() {
        let mut t = AckTracker::default();
        t.queued(Tag::Spool(4));
        t.outgoing_publish(1);
        t.reset();
        assert_eq!(t.cursor(), 0);
        assert_eq!(t.puback(1), None);
        assert!(t.window_open());
    }

    #[test]
    fn qos0_publishes_free_their_slot_at_once() {
        let mut t = AckTracker::default();
        t.queued(Tag::Spool(1));
        t.outgoing_publish(0);
        assert!(t.inflight.is_empty());
        assert_eq!(t.spool_inflight, 0);
    }
}
