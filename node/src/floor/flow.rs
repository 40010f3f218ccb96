//! The seam the warehouse flows plug into: a [`FlowHandler`] is a pure state machine over a
//! store transaction. It gets one device event, reads and writes through `wms/` functions in
//! the batch's transaction, and returns what to answer and what changed; it does no I/O, has
//! no clock (time is in the event) and may be called more than once for the same event (a
//! batch with a failed job runs again), so everything it does goes through the transaction.
//!
//! The dispatch pipeline ([`super::pipeline`]) decides everything around it: decoding, the
//! device check, dedupe, the group commit, and publishing the answer only after the commit.
//! The daemon runs [`super::flows::Flows`]; [`Basic`] is the handler of a node without
//! warehouse flows (benchmarks of the pipeline alone): heartbeats are recorded,
//! `request_task` is answered "no work yet", scans and shorts are refused with a reason.

use super::devices::{self, DeviceId};
use crate::store::StoreError;
use firmware_bridge::proto::{Beep, Downlink, Feedback, Uplink, VERSION};
use redb::WriteTransaction;

/// One device event, as the handler sees it.
#[derive(Debug)]
pub struct Event<'a> {
    /// Who sent it (known to the registry, on its own topic).
    pub device: &'a DeviceId,
    /// When the node received it (ms since the Unix epoch); the handler's only clock.
    pub now_ms: u64,
    /// The message (an `evt` or a `reply`; never `state`).
    pub msg: &'a Uplink<String>,
}

/// What a handler decided.
#[derive(Debug)]
pub struct Outcome<E> {
    /// The answer on the device's `cmd` topic, published after the commit; `None` when the
    /// event needs none (heartbeats, replies).
    pub feedback: Option<Feedback<String>>,
    /// Further commands, after the feedback (a `task` after `request_task`, a `hold` to every
    /// device holding a held order's task).
    pub commands: Vec<(DeviceId, Downlink<String>)>,
    /// What changed, for whoever subscribed (the daemon routes them; never another job).
    pub events: Vec<E>,
}

impl<E> Outcome<E> {
    /// Just a feedback.
    pub fn answer(feedback: Feedback<String>) -> Self {
        Outcome {
            feedback: Some(feedback),
            commands: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Nothing to say.
    pub fn silent() -> Self {
        Outcome {
            feedback: None,
            commands: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// A flow: a pure state machine over a store transaction.
pub trait FlowHandler: Send + Sync + 'static {
    /// What it reports as changed (order picked, stock changed, …).
    type Event: Send + 'static;

    /// Applies `ev` inside the batch's write transaction. An `Err` discards this event's writes
    /// (and only this event's); the device is told to try again and nothing is remembered, so
    /// the re-sent event is applied afresh.
    fn handle(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
    ) -> Result<Outcome<Self::Event>, StoreError>;

    /// `device` came online (its birth): the commands it missed and must still get (holds
    /// not yet acknowledged), published after the commit.
    fn online(
        &self,
        txn: &WriteTransaction,
        device: &DeviceId,
    ) -> Result<Vec<(DeviceId, Downlink<String>)>, StoreError> {
        let _ = (txn, device);
        Ok(Vec::new())
    }

    /// Order `tid` went on hold (a committed change of `wms/`): the commands that stop the
    /// devices working on it, published after the commit, and what the handler changed (the
    /// put-back of goods no device was working on).
    fn held(
        &self,
        txn: &WriteTransaction,
        tid: u64,
        now_ms: u64,
    ) -> Result<Effects<Self::Event>, StoreError> {
        let _ = (txn, tid, now_ms);
        Ok((Vec::new(), Vec::new()))
    }

    /// The floor starts, or fell behind the warehouse's events: what [`Self::held`] would
    /// have done for every order that is held now and was not dealt with yet.
    fn sweep(
        &self,
        txn: &WriteTransaction,
        now_ms: u64,
    ) -> Result<Effects<Self::Event>, StoreError> {
        let _ = (txn, now_ms);
        Ok((Vec::new(), Vec::new()))
    }
}

/// Commands to devices (published after the commit, in order) and the events of what changed.
pub type Effects<E> = (Vec<(DeviceId, Downlink<String>)>, Vec<E>);

/// A feedback to `re`.
pub fn feedback(re: &str, ok: bool, text: impl Into<String>) -> Feedback<String> {
    Feedback {
        v: VERSION,
        re: Some(re.to_owned()),
        ok,
        beep: if ok { Beep::Ok } else { Beep::Error },
        text: text.into(),
        next: None,
    }
}

/// The text of `request_task` while no flow hands out work.
pub const NO_WORK: &str = "no work yet";

/// The handler of a node without warehouse flows: keeps devices' last-seen time, answers task
/// requests with "no work yet", refuses scans and shorts with a reason.
#[derive(Debug, Default, Clone, Copy)]
pub struct Basic;

/// [`Basic`] reports nothing.
#[derive(Debug)]
pub enum NoEvent {}

impl FlowHandler for Basic {
    type Event = NoEvent;

    fn handle(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
    ) -> Result<Outcome<NoEvent>, StoreError> {
        Ok(match ev.msg {
            Uplink::Heartbeat(_) => {
                devices::touch(txn, ev.device, ev.now_ms, None)?;
                Outcome::silent()
            }
            Uplink::RequestTask(r) => {
                devices::touch(txn, ev.device, ev.now_ms, None)?;
                Outcome::answer(feedback(&r.msg_id, true, NO_WORK))
            }
            Uplink::Scan(s) => Outcome::answer(feedback(
                &s.msg_id,
                false,
                format!("no {} flow on this node yet: scan not used", s.mode),
            )),
            Uplink::Short(s) => Outcome::answer(feedback(
                &s.msg_id,
                false,
                "no pick flow on this node yet: short not used",
            )),
            Uplink::PrintResult(_) | Uplink::HoldAck(_) | Uplink::Reject(_) | Uplink::State(_) => {
                Outcome::silent()
            }
        })
    }
}
