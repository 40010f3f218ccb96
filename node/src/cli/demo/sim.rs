//! The demo's simulated floor: scanners and a label printer as real MQTT clients of the
//! node's broker, each with its own credentials (made by the node's device registry, as
//! `wms-node devices add` makes them), its will, its retained birth, TCP_NODELAY, and only
//! the wire types of `firmware_bridge::proto`. Nothing here reaches into the node's floor:
//! what a device knows, it learnt from its `cmd` topic.
//!
//! Roles: two pickers (`request_task`, a scan per unit along the task's `next` steps; a `hold`
//! is acknowledged and its put-back task scanned back), a pack station (scanner `pack-1`, the
//! order's tote in; its printer `pack-1` answers every `print` with `print_result`), and the
//! dock (scanner `dock-1`: the ship scan of each parcel's waybill, receipts of a delivery).
//!
//! The pack, ship and receive flows are not on every node yet: a node without them answers
//! the scan `ok:false`, "the … flow is not on this node yet", and then the station does that
//! step through the node's own functions (`waybill get`, `ship`, `stock receive`), as
//! `wms-node` would from a desk. Everything else goes over MQTT.

use super::Log;
use anyhow::{Context, anyhow};
use chrono::SecondsFormat;
use firmware_bridge::proto::json::{decode_downlink, to_vec, uplink_to_vec};
use firmware_bridge::proto::{
    Channel, DeviceClass, Downlink, Feedback, Hold, HoldAck, Mode, PrintResult, PrintStatus,
    RequestTask, Scan, State, Step, Symbology, Task, Uplink, VERSION,
};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, NetworkOptions, Packet, QoS};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wms_node::floor::admin::Added;

/// How long a device waits for the node's answer before sending the same event again (same
/// `msg_id`: the node answers a duplicate with its first answer and applies it once).
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// What every simulated device counts (the view's figures).
#[derive(Debug, Default)]
pub struct Counters {
    /// Scans the node answered.
    pub scans: AtomicU64,
    /// Scans the node refused (`ok:false`).
    pub refused: AtomicU64,
    /// Events sent again after no answer came in time.
    pub resent: AtomicU64,
    /// Labels the printer printed (`print_result` printed).
    pub labels: AtomicU64,
    /// Steps a station did through the node's functions (the floor flow not on this node).
    pub direct: AtomicU64,
    /// Holds received and acknowledged.
    pub holds: AtomicU64,
    /// Units put back.
    pub put_back: AtomicU64,
}

/// One simulated device: an MQTT client and the commands it received.
pub struct Sim {
    /// `picker-1`.
    pub id: String,
    class: DeviceClass,
    site: String,
    client: AsyncClient,
    cmds: mpsc::UnboundedReceiver<Downlink<String>>,
    pending: VecDeque<Downlink<String>>,
    seq: u64,
    counters: Arc<Counters>,
    log: Log,
    pump: CancellationToken,
}

fn now_ts() -> String {
    chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Sim {
    /// Connects as `added` (its user name, client id and password) to the broker at `addr`,
    /// subscribes to its `cmd` topic and publishes its retained birth.
    pub async fn connect(
        addr: SocketAddr,
        site: &str,
        class: DeviceClass,
        added: &Added,
        counters: Arc<Counters>,
        log: Log,
    ) -> anyhow::Result<Sim> {
        let id = added.device.id.clone();
        let mut o = MqttOptions::new(
            added.device.client_id.clone(),
            addr.ip().to_string(),
            addr.port(),
        );
        o.set_keep_alive(Duration::from_secs(5));
        o.set_clean_session(false);
        o.set_credentials(added.device.username.clone(), added.password.clone());
        let state_topic = format!("wms/{site}/{class}/{id}/state");
        let offline = to_vec(&State::<String>::offline()).map_err(|e| anyhow!("{e}"))?;
        o.set_last_will(LastWill::new(
            state_topic.clone(),
            offline,
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut eventloop) = AsyncClient::new(o, 64);
        let mut net = NetworkOptions::new();
        net.set_tcp_nodelay(true);
        eventloop.set_network_options(net);
        let (tx, cmds) = mpsc::unbounded_channel();
        let pump = CancellationToken::new();
        let stop = pump.clone();
        let who = format!("{class} {id}");
        let pump_log = log.clone();
        tokio::spawn(async move {
            let mut warned = false;
            loop {
                let polled = tokio::select! {
                    _ = stop.cancelled() => return,
                    p = eventloop.poll() => p,
                };
                match polled {
                    Ok(Event::Incoming(Packet::Publish(p))) => match decode_downlink(&p.payload) {
                        Ok(cmd) => {
                            if tx.send(cmd).is_err() {
                                return;
                            }
                        }
                        Err(e) => pump_log.say(&who, format!("could not read a command: {e}")),
                    },
                    Ok(Event::Incoming(Packet::ConnAck(_))) => warned = false,
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                        pump_log.say(&who, format!("the broker refused the login: {code:?}"));
                        return;
                    }
                    Err(e) => {
                        if !warned {
                            pump_log.say(&who, format!("connection lost ({e}); reconnecting"));
                            warned = true;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        let sim = Sim {
            id,
            class,
            site: site.to_owned(),
            client,
            cmds,
            pending: VecDeque::new(),
            seq: 0,
            counters,
            log,
            pump,
        };
        sim.client
            .subscribe(sim.topic(Channel::Cmd), QoS::AtLeastOnce)
            .await
            .context("subscribing to its cmd topic")?;
        let birth = State {
            v: VERSION,
            online: true,
            class: Some(class),
            fw: Some("demo-sim 1.0".to_owned()),
            detail: None,
        };
        let birth = to_vec(&birth).map_err(|e| anyhow!("{e}"))?;
        sim.client
            .publish(state_topic, QoS::AtLeastOnce, true, birth)
            .await
            .context("publishing its birth")?;
        Ok(sim)
    }

    fn who(&self) -> String {
        format!("{} {}", self.class, self.id)
    }

    fn say(&self, text: impl Into<String>) {
        self.log.say(&self.who(), text);
    }

    fn topic(&self, channel: Channel) -> String {
        format!("wms/{}/{}/{}/{channel}", self.site, self.class, self.id)
    }

    fn msg_id(&mut self) -> String {
        self.seq += 1;
        format!("{}-{}", self.id, self.seq)
    }

    async fn send(&self, msg: &Uplink<String>) -> anyhow::Result<()> {
        let bytes = uplink_to_vec(msg).map_err(|e| anyhow!("{e}"))?;
        self.client
            .publish(self.topic(msg.channel()), QoS::AtLeastOnce, false, bytes)
            .await
            .context("publishing")?;
        Ok(())
    }

    /// Sends an event and waits for its feedback; other commands that arrive meanwhile are
    /// kept for [`Sim::next_cmd`]. No answer in time: the same event again.
    async fn ask(&mut self, msg: Uplink<String>, msg_id: &str) -> anyhow::Result<Feedback<String>> {
        for attempt in 0..4 {
            if attempt > 0 {
                self.counters.resent.fetch_add(1, Ordering::Relaxed);
            }
            self.send(&msg).await?;
            let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
            loop {
                match tokio::time::timeout_at(deadline, self.cmds.recv()).await {
                    Ok(Some(Downlink::Feedback(f))) if f.re.as_deref() == Some(msg_id) => {
                        return Ok(f);
                    }
                    // An answer to an earlier event (re-sent, answered twice): not ours.
                    Ok(Some(Downlink::Feedback(_))) => {}
                    Ok(Some(other)) => self.pending.push_back(other),
                    Ok(None) => return Err(anyhow!("{}: its connection ended", self.who())),
                    Err(_) => break,
                }
            }
        }
        Err(anyhow!("{}: no answer to {msg_id}", self.who()))
    }

    /// A scan; counted, and refusals told.
    async fn scan(
        &mut self,
        code: &str,
        symbology: Symbology,
        mode: Mode,
        task_id: Option<&str>,
        qty: Option<u32>,
    ) -> anyhow::Result<Feedback<String>> {
        let msg_id = self.msg_id();
        let msg = Uplink::Scan(Scan {
            v: VERSION,
            msg_id: msg_id.clone(),
            ts: now_ts(),
            code: code.to_owned(),
            symbology,
            mode,
            task_id: task_id.map(str::to_owned),
            qty,
            gs1: None,
        });
        let fb = self.ask(msg, &msg_id).await?;
        self.counters.scans.fetch_add(1, Ordering::Relaxed);
        if !fb.ok && !not_on_node(&fb) {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        Ok(fb)
    }

    async fn request_task(&mut self, mode: Mode) -> anyhow::Result<Feedback<String>> {
        let msg_id = self.msg_id();
        let msg = Uplink::RequestTask(RequestTask {
            v: VERSION,
            msg_id: msg_id.clone(),
            ts: now_ts(),
            mode,
            task_id: None,
        });
        self.ask(msg, &msg_id).await
    }

    /// The next command (kept ones first), or `None` after `wait`.
    async fn next_cmd(&mut self, wait: Duration) -> Option<Downlink<String>> {
        if let Some(c) = self.pending.pop_front() {
            return Some(c);
        }
        tokio::time::timeout(wait, self.cmds.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits up to `wait` for a `task`; a `hold` that comes first is handed back.
    async fn wait_task(&mut self, wait: Duration) -> Option<Result<Task<String>, Hold<String>>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_cmd(left).await? {
                Downlink::Task(t) => return Some(Ok(t)),
                Downlink::Hold(h) => return Some(Err(h)),
                _ => {}
            }
        }
    }

    /// Publishes its offline state (a clean shutdown, as a bridge does) and disconnects.
    pub async fn stop(self) {
        if let Ok(offline) = to_vec(&State::<String>::offline()) {
            let _ = self
                .client
                .publish(self.topic(Channel::State), QoS::AtLeastOnce, true, offline)
                .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.pump.cancel();
    }
}

/// Whether a refusal says the flow is missing on this node (the station then does the step
/// through the node's functions).
fn not_on_node(fb: &Feedback<String>) -> bool {
    !fb.ok && fb.text.contains("not on this node")
}

/// A picked order on its way to the pack station.
#[derive(Debug, Clone)]
pub struct Tote {
    /// The trade.
    pub tid: u64,
}

/// Work for the dock's scanner.
#[derive(Debug, Clone)]
pub enum DockJob {
    /// A labelled parcel to hand to the carrier.
    Parcel {
        /// Its trades (as its label says).
        tids: Vec<u64>,
        /// The waybill on its label.
        waybill: String,
    },
    /// A delivery: units of SKUs to receive.
    Delivery {
        /// `(SKU code, barcode, units)`.
        lines: Vec<(String, String, u32)>,
        /// The delivery note.
        note: String,
    },
}

/// What the roles share.
#[derive(Clone)]
pub struct Floor {
    /// The node (its functions, for the steps whose floor flow is missing).
    pub goods: wms_node::ops::goods::GoodsAdmin,
    /// SKU code → barcode, as printed on the goods.
    pub barcodes: Arc<BTreeMap<String, String>>,
    /// Stops the roles after their current job.
    pub stop: CancellationToken,
    /// The order to intercept: the first picker to start it tells the script (which refunds
    /// it in the shop) and then walks slowly, so the hold finds it mid-task.
    pub intercept: Arc<std::sync::Mutex<Option<u64>>>,
    /// Tells the script that the intercepted order is being picked.
    pub picking_intercepted: mpsc::UnboundedSender<u64>,
    /// The carrier of the demo's waybills.
    pub company: String,
}

impl Floor {
    fn barcode<'a>(&'a self, code: &'a str) -> &'a str {
        self.barcodes.get(code).map_or(code, String::as_str)
    }

    fn take_intercept(&self, tid: u64) -> bool {
        match self.intercept.lock() {
            Ok(mut g) if *g == Some(tid) => {
                *g = None;
                true
            }
            _ => false,
        }
    }
}

/// A picker: asks for work, picks it unit by unit, hands the tote to packing; a `hold`
/// stops it, is acknowledged, and its put-back task is scanned back into the bins.
pub async fn picker(mut sim: Sim, floor: Floor, totes: mpsc::UnboundedSender<Tote>) -> Sim {
    let mut idle = false;
    while !floor.stop.is_cancelled() {
        // A task or print kept from before is stale now: the answer to this request decides.
        sim.pending.retain(|c| matches!(c, Downlink::Hold(_)));
        if let Some(Downlink::Hold(h)) = sim.pending.front().cloned() {
            sim.pending.pop_front();
            hold(&mut sim, &floor, h).await;
            continue;
        }
        let fb = match sim.request_task(Mode::Pick).await {
            Ok(fb) => fb,
            Err(e) => {
                sim.say(format!("{e:#}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if !fb.ok || fb.next.is_none() {
            if !idle {
                sim.say(fb.text);
                idle = true;
            }
            idle_wait(&mut sim, &floor, Duration::from_millis(700)).await;
            continue;
        }
        idle = false;
        match sim.wait_task(Duration::from_secs(3)).await {
            Some(Ok(task)) => pick(&mut sim, &floor, task, &totes).await,
            Some(Err(h)) => hold(&mut sim, &floor, h).await,
            None => {}
        }
    }
    sim
}

/// Waits `d` unless a hold comes (kept for the loop) or the demo stops.
async fn idle_wait(sim: &mut Sim, floor: &Floor, d: Duration) {
    tokio::select! {
        _ = floor.stop.cancelled() => {}
        c = sim.next_cmd(d) => if let Some(c) = c { sim.pending.push_back(c) },
    }
}

async fn pick(
    sim: &mut Sim,
    floor: &Floor,
    task: Task<String>,
    totes: &mpsc::UnboundedSender<Tote>,
) {
    let tid: u64 = task
        .tid
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let n = task.remaining.unwrap_or(0);
    // A held order's goods that no device was working on: handed out before picks, scanned
    // back the same way, and no tote for the packers.
    let put_back = task.task_id.starts_with("putback-");
    sim.say(format!(
        "{} order {tid}: {n} unit{}",
        if put_back { "puts back" } else { "picks" },
        if n == 1 { "" } else { "s" }
    ));
    let mut next = task.next.clone();
    let mut first = true;
    while let Some(step) = next.take() {
        // Walking to the bin; a hold on the way stops the picker.
        let walk = Duration::from_millis(250 + 60 * (sim.seq % 5));
        if let Some(c) = sim.next_cmd(walk).await {
            match c {
                Downlink::Hold(h) => return hold(sim, floor, h).await,
                other => sim.pending.push_back(other),
            }
        }
        let Some(code) = step.code.clone() else {
            sim.say(format!("order {tid}: a step without an item ({step:?})"));
            return;
        };
        let fb = match sim
            .scan(
                floor.barcode(&code),
                Symbology::Ean13,
                Mode::Pick,
                Some(&task.task_id),
                Some(1),
            )
            .await
        {
            Ok(fb) => fb,
            Err(e) => {
                sim.say(format!("{e:#}"));
                return;
            }
        };
        if !fb.ok {
            sim.say(format!("refused: {}", fb.text));
            // The item of the step, refused: its order went on hold, and the hold is on its
            // way (or here already); a task changed under the picker comes at once. Decided
            // by what comes, not by the text (it is in the floor's language).
            if let Some(Err(h)) = sim.wait_task(Duration::from_secs(10)).await {
                return hold(sim, floor, h).await;
            }
            return;
        }
        if first && floor.take_intercept(tid) {
            let _ = floor.picking_intercepted.send(tid);
            sim.say(format!(
                "order {tid}: walks to a far bin for the next item (the buyer is asking for a refund)"
            ));
            // The far bin: the hold should reach the scanner on the way.
            match sim.wait_task(Duration::from_secs(45)).await {
                Some(Err(h)) => return hold(sim, floor, h).await,
                Some(Ok(t)) => sim.pending.push_back(Downlink::Task(t)),
                None => sim.say(format!("order {tid}: no hold came; picking on")),
            }
        }
        first = false;
        next = fb.next;
        if next.is_none() {
            sim.say(fb.text);
            if put_back {
                sim.counters.put_back.fetch_add(1, Ordering::Relaxed);
            } else {
                let _ = totes.send(Tote { tid });
            }
        }
    }
}

/// A hold: shown, acknowledged; a put-back task that follows is scanned back.
async fn hold(sim: &mut Sim, floor: &Floor, h: Hold<String>) {
    sim.counters.holds.fetch_add(1, Ordering::Relaxed);
    sim.say(format!("HOLD order {} ({}): {}", h.tid, h.reason, h.text));
    let ack = Uplink::HoldAck(HoldAck {
        v: VERSION,
        re: h.hold_id.clone(),
    });
    if let Err(e) = sim.send(&ack).await {
        sim.say(format!("{e:#}"));
        return;
    }
    if h.action != "put_back" {
        return;
    }
    let task = match sim.wait_task(Duration::from_secs(10)).await {
        Some(Ok(t)) => t,
        Some(Err(again)) if again.hold_id == h.hold_id => {
            match sim.wait_task(Duration::from_secs(10)).await {
                Some(Ok(t)) => t,
                _ => return sim.say("no put-back task came"),
            }
        }
        _ => return sim.say("no put-back task came"),
    };
    let n = task.remaining.unwrap_or(0);
    sim.say(format!(
        "puts back {n} unit{} of order {}",
        if n == 1 { "" } else { "s" },
        h.tid
    ));
    let mut next = task.next.clone();
    while let Some(Step {
        code: Some(code), ..
    }) = next.take()
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match sim
            .scan(
                floor.barcode(&code),
                Symbology::Ean13,
                Mode::Pick,
                Some(&task.task_id),
                Some(1),
            )
            .await
        {
            Ok(fb) if fb.ok => {
                sim.counters.put_back.fetch_add(1, Ordering::Relaxed);
                next = fb.next;
                if next.is_none() {
                    sim.say(fb.text);
                }
            }
            Ok(fb) => return sim.say(format!("put-back refused: {}", fb.text)),
            Err(e) => return sim.say(format!("{e:#}")),
        }
    }
}

/// The pack station's scanner: each tote's order is scanned at the station (then, with the
/// pack flow, every item); the parcel goes to the dock with its label's waybill.
pub async fn pack_station(
    mut sim: Sim,
    floor: Floor,
    mut totes: mpsc::UnboundedReceiver<Tote>,
    dock: mpsc::UnboundedSender<DockJob>,
) -> Sim {
    loop {
        let tote = tokio::select! {
            _ = floor.stop.cancelled() => break,
            t = totes.recv() => match t { Some(t) => t, None => break },
        };
        match pack(&mut sim, &floor, tote.tid).await {
            Ok(Some(waybill)) => {
                let _ = dock.send(DockJob::Parcel {
                    tids: vec![tote.tid],
                    waybill,
                });
            }
            Ok(None) => {}
            Err(e) => sim.say(format!("order {}: {e:#}", tote.tid)),
        }
    }
    sim
}

async fn pack(sim: &mut Sim, floor: &Floor, tid: u64) -> anyhow::Result<Option<String>> {
    let mut fb = sim
        .scan(&tid.to_string(), Symbology::Code128, Mode::Pack, None, None)
        .await?;
    if not_on_node(&fb) {
        floor.counted_direct(sim);
        let waybill = waybill_from_desk(sim, floor, tid).await?;
        sim.say(format!(
            "packs order {tid}: waybill {waybill} (direct: the pack flow is not on this node yet)"
        ));
        return Ok(Some(waybill));
    }
    if !fb.ok {
        sim.say(format!("order {tid} refused: {}", fb.text));
        return Ok(None);
    }
    // Scan-verify: every item the node asks for.
    while let Some(Step {
        code: Some(code),
        qty,
        ..
    }) = fb.next.clone()
    {
        fb = sim
            .scan(
                floor.barcode(&code),
                Symbology::Ean13,
                Mode::Pack,
                None,
                qty.map(|_| 1),
            )
            .await?;
        if !fb.ok {
            sim.say(format!("order {tid}: {}", fb.text));
            return Ok(None);
        }
    }
    sim.say(fb.text.clone());
    // The command is the same in every language of the floor.
    if fb.text.contains("wms-node waybill get") {
        // A node without this station in `[[floor.stations]]`: the label from the desk, as
        // the node says (`wms-node waybill get`).
        floor.counted_direct(sim);
        return waybill_from_desk(sim, floor, tid).await.map(Some);
    }
    // The label comes out of the station's printer, which puts the parcel on the dock's belt.
    Ok(None)
}

/// The order's e-waybill through the node's function (as `wms-node waybill get`); it needs
/// Cainiao, so without the link the parcel waits at the station.
async fn waybill_from_desk(sim: &mut Sim, floor: &Floor, tid: u64) -> anyhow::Result<String> {
    let mut told = false;
    loop {
        match floor.goods.waybill(tid, None, Vec::new()).await {
            Ok(v) => return Ok(v.waybill_code),
            Err(e) if floor.stop.is_cancelled() => return Err(anyhow!("waybill: {e}")),
            Err(e) => {
                if !told {
                    sim.say(format!(
                        "order {tid} waits for its waybill (retried every second): {e}"
                    ));
                    told = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The station's label printer: prints every job it gets, answers `print_result`, and the
/// parcel with its label goes to the dock (a label printed again is the same parcel).
pub async fn printer(mut sim: Sim, floor: Floor, dock: mpsc::UnboundedSender<DockJob>) -> Sim {
    let mut labelled = std::collections::BTreeSet::new();
    while !floor.stop.is_cancelled() {
        let cmd = tokio::select! {
            _ = floor.stop.cancelled() => break,
            c = sim.next_cmd(Duration::from_millis(500)) => c,
        };
        let Some(Downlink::Print(p)) = cmd else {
            continue;
        };
        // The print head's time.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let result = Uplink::PrintResult(PrintResult {
            v: VERSION,
            re: p.job_id.clone(),
            status: PrintStatus::Printed,
            error: None,
        });
        if let Err(e) = sim.send(&result).await {
            sim.say(format!("{e:#}"));
            continue;
        }
        sim.counters.labels.fetch_add(1, Ordering::Relaxed);
        match read_zpl_label(&p.data) {
            Some((waybill, tids)) if labelled.insert(waybill.clone()) => {
                sim.say(format!("printed the label of waybill {waybill}"));
                let _ = dock.send(DockJob::Parcel { tids, waybill });
            }
            Some((waybill, _)) => sim.say(format!("printed waybill {waybill} again")),
            None => sim.say(format!(
                "printed job {} ({}): no tracking barcode this demo can read",
                p.job_id, p.format
            )),
        }
    }
    sim
}

/// A carton label's tracking number (its Code 128 field) and the trades it names.
pub fn read_zpl_label(zpl: &str) -> Option<(String, Vec<u64>)> {
    let field = |from: usize| -> Option<&str> {
        let rest = &zpl[from..];
        let start = rest.find("^FD")? + 3;
        let end = rest[start..].find("^FS")? + start;
        Some(&rest[start..end])
    };
    let waybill = field(zpl.find("^BC")?)?.trim().to_owned();
    if waybill.is_empty() {
        return None;
    }
    let tids = zpl
        .find("^FDorder ")
        .and_then(field)
        .map(|f| {
            f.trim_start_matches("order ")
                .split_whitespace()
                .filter_map(|t| t.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    Some((waybill, tids))
}

/// The dock's scanner: the ship scan of each parcel's waybill, and deliveries received.
pub async fn dock(mut sim: Sim, floor: Floor, mut jobs: mpsc::UnboundedReceiver<DockJob>) -> Sim {
    loop {
        let job = tokio::select! {
            _ = floor.stop.cancelled() => break,
            j = jobs.recv() => match j { Some(j) => j, None => break },
        };
        let done = match job {
            DockJob::Parcel { tids, waybill } => ship(&mut sim, &floor, &tids, &waybill).await,
            DockJob::Delivery { lines, note } => receive(&mut sim, &floor, &lines, &note).await,
        };
        if let Err(e) = done {
            sim.say(format!("{e:#}"));
        }
    }
    sim
}

async fn ship(sim: &mut Sim, floor: &Floor, tids: &[u64], waybill: &str) -> anyhow::Result<()> {
    let tid = tids.first().copied().unwrap_or(0);
    let fb = sim
        .scan(waybill, Symbology::Code128, Mode::Ship, None, None)
        .await?;
    if not_on_node(&fb) {
        floor.counted_direct(sim);
        let s = floor
            .goods
            .ship(wms_node::wms::ship::ShipRequest {
                tid,
                company_code: floor.company.clone(),
                out_sid: waybill.to_owned(),
                oids: Vec::new(),
            })
            .await
            .map_err(|e| anyhow!("shipping {tid}: {e}"))?;
        sim.say(format!(
            "ships order {tid}, waybill {waybill} (op #{}; direct: the ship flow is not on this node yet)",
            s.ops.first().map_or(0, |o| o.seq)
        ));
    } else if fb.ok {
        sim.say(fb.text);
    } else {
        sim.say(format!(
            "waybill {waybill} refused at the dock: {}",
            fb.text
        ));
    }
    Ok(())
}

async fn receive(
    sim: &mut Sim,
    floor: &Floor,
    lines: &[(String, String, u32)],
    note: &str,
) -> anyhow::Result<()> {
    for (code, barcode, qty) in lines {
        let fb = sim
            .scan(barcode, Symbology::Ean13, Mode::Receive, None, Some(*qty))
            .await?;
        if not_on_node(&fb) {
            floor.counted_direct(sim);
            floor
                .goods
                .receive(code, i64::from(*qty), note)
                .await
                .map_err(|e| anyhow!("receipt of {code}: {e}"))?;
        } else if !fb.ok {
            sim.say(format!("receipt of {code} refused: {}", fb.text));
        }
    }
    sim.say(format!("received {note}: {} SKUs", lines.len()));
    Ok(())
}

impl Floor {
    fn counted_direct(&self, sim: &Sim) {
        sim.counters.direct.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_carton_label_gives_its_tracking_number_and_trades() {
        let zpl = "^XA^CI28\n^FO40,30^A0N,40,40^FDYTO^FS\n^FO40,90^BY3^BCN,120,Y,N,N^FDYT9900000000001^FS\n\
                   ^FO40,260^A0N,28,28^FDorder 2701234567890001000 2701234567890002000^FS\n^XZ\n";
        assert_eq!(
            read_zpl_label(zpl),
            Some((
                "YT9900000000001".to_owned(),
                vec![2_701_234_567_890_001_000, 2_701_234_567_890_002_000]
            ))
        );
        assert_eq!(read_zpl_label("^XA^FDno barcode^FS^XZ"), None);
        assert_eq!(read_zpl_label("^XA^BCN^FD"), None);
        assert_eq!(read_zpl_label("{\"encryptedData\":\"...\"}"), None);
    }
}
