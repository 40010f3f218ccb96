//! The device wire contract: every message a scanner, printer or gateway exchanges with the node.
//!
//! This module is the single definition of the floor protocol (DESIGN.md, "Floor (MQTT)").
//! `wms-bridge` produces and reads these types for its serial devices, and a microcontroller
//! can send them postcard-encoded over [`crate::frame`]. The node (`node/src/floor/`) speaks
//! the same types, so the two sides cannot drift apart.
//!
//! | channel | direction | QoS | messages (`"type"`) |
//! |---|---|---|---|
//! | `evt` | device → node | 1 | [`Scan`] `scan`, [`RequestTask`] `request_task`, [`Short`] `short`, [`Heartbeat`] `heartbeat` |
//! | `cmd` | node → device | 1 | [`Feedback`] `feedback`, [`Task`] `task`, [`Hold`] `hold`, [`Print`] `print` |
//! | `reply` | device → node | 1 | [`PrintResult`] `print_result`, [`HoldAck`] `hold_ack`, [`Reject`] `reject` |
//! | `state` | both | 1, retained | [`State`] (no `type`): birth `{"online":true,…}`, will `{"online":false}` |
//! | gateway `alert` | node → anyone | 1 | the node's alerts, raised and resolved |
//! | gateway `cmd` / `reply` | fleet ↔ node | 1 | [`ota::OtaUpdate`] `ota_update`; [`ota::OtaProgress`] `ota_progress`, [`ota::OtaResult`] `ota_result` (with `alloc`) |
//! | gateway `alert` | node → anyone | 1 | [`alert::AlertMessage`] `alert`: raised, updated, resolved (with `alloc`) |
//!
//! Topics are `wms/{site}/{class}/{id}/{channel}` ([`topic`]).
//!
//! ## Shapes (JSON on MQTT)
//!
//! ```text
//! {"type":"scan","v":1,"msg_id":"…","ts":"…","code":"6901234567892","symbology":"ean13",
//!  "mode":"pick","task_id":"…"?,"qty":1?,"gs1":{…}?}
//! {"type":"feedback","v":1,"re":"<msg_id>"|null,"ok":true,"beep":"ok","text":"…","next":{…}?}
//! {"type":"reject","v":1,"re":"<hold_id|task_id|job_id>"|null,"of":"hold"?,"error":"…"}
//! {"type":"print","v":1,"job_id":"…","format":"zpl","data":"^XA…^XZ"}
//! {"type":"print","v":1,"job_id":"…","format":"cainiao","data":"<print data>","template_url":"…"}
//! {"type":"print_result","v":1,"re":"<job_id>","status":"printed","error":"…"?}
//! {"v":1,"online":true,"class":"scanner"?,"fw":"…"?,"detail":"…"?}      (state)
//! ```
//!
//! Optional fields are left out when absent (never `null`), except `re` of `feedback` and
//! `reject`, which is `null` when the payload answered had no readable id; a reader accepts
//! optional fields missing or `null`. Key order is not significant. The golden files under
//! `firmware-bridge/tests/golden/` pin one example of every message; both the bridge's and the
//! node's tests read them.
//!
//! ## Versioning
//!
//! Every message carries `v` (this build writes [`VERSION`]; a message without `v` is read as
//! version 1). Within a version, fields are only ever *added*, as optional fields, and readers
//! ignore fields they do not know, so an old node reads a new device. A message with a higher
//! `v` than [`VERSION`] is refused with a typed error instead of being half understood.
//!
//! On the serial link (postcard) there are no field names: fields are positional and enums are
//! encoded by variant index. So on that link **variants and fields are append-only**, and the
//! two ends must agree on `v` before anything else: [`crate::frame::Link`] does not negotiate
//! it, so a device announces its version in a [`State`] message first.
//!
//! ## String type
//!
//! Messages are generic over their string type `S`: `String` with `alloc` (what the node and
//! the bridge use), `&str` to decode without copying, or `heapless::String<N>` on a
//! microcontroller without an allocator.

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[cfg(feature = "alloc")]
pub mod json;
pub mod topic;

/// The protocol version this build writes and the highest it reads.
pub const VERSION: u16 = 1;

/// Longest id (`msg_id`, `job_id`, `task_id`, `hold_id`, `re`) a valid message may carry, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Longest scanned code a valid scan may carry, in bytes (a full QR code is 4296 characters).
pub const MAX_CODE_LEN: usize = 4296;
/// Longest operator text (feedback, task, hold) a valid message may carry, in bytes.
pub const MAX_TEXT_LEN: usize = 512;

fn version_default() -> u16 {
    // Messages written before the field existed are version 1 by definition.
    1
}

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant ),+
        }

        impl $name {
            /// Every value, in wire (postcard index) order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The JSON spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the JSON spelling; `None` for anything else.
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// What the operator is doing with the scanner; the node routes a scan by it (DOMAIN.md §12).
    pub enum Mode {
        /// Picking items of a task into a tote.
        Pick = "pick",
        /// Scan-verify and pack an order at a pack station.
        Pack = "pack",
        /// Ship scan of a waybill at the dock (hands the parcel to the carrier).
        Ship = "ship",
        /// Goods receipt: each scan adds to on-hand.
        Receive = "receive",
        /// Stock count: sets on-hand.
        Count = "count",
    }
}

wire_enum! {
    /// The barcode symbology a scan was read from (from the AIM identifier, ISO/IEC 15424, or
    /// inferred from the digits when the scanner sends none).
    pub enum Symbology {
        /// EAN-13 (also UPC-A sent as 13 digits), AIM `]E0`.
        Ean13 = "ean13",
        /// EAN-8, AIM `]E4`.
        Ean8 = "ean8",
        /// UPC-A sent as 12 digits (only when inferred without an AIM identifier).
        UpcA = "upc_a",
        /// UPC-E.
        UpcE = "upc_e",
        /// Code 128, AIM `]C0`.
        Code128 = "code128",
        /// GS1-128 (Code 128 with FNC1 in first position), AIM `]C1`.
        Gs1_128 = "gs1_128",
        /// Code 39, AIM `]A`.
        Code39 = "code39",
        /// Code 93, AIM `]G`.
        Code93 = "code93",
        /// Codabar, AIM `]F`.
        Codabar = "codabar",
        /// Interleaved 2 of 5 (ITF-14 on cartons), AIM `]I`.
        Itf = "itf",
        /// QR Code, AIM `]Q`.
        Qr = "qr",
        /// Data Matrix, AIM `]d`.
        DataMatrix = "data_matrix",
        /// GS1 DataBar, AIM `]e`.
        Gs1DataBar = "gs1_databar",
        /// PDF417, AIM `]L`.
        Pdf417 = "pdf417",
        /// Aztec, AIM `]z`.
        Aztec = "aztec",
        /// Anything else (or an identifier this build does not know).
        Unknown = "unknown",
    }
}

wire_enum! {
    /// The sound (and LED colour) a device makes for a feedback.
    pub enum Beep {
        /// Accepted: one short beep, green.
        Ok = "ok",
        /// Refused: the error pattern, red; the operator stays on the same step.
        Error = "error",
    }
}

wire_enum! {
    /// The printer language a print job is written in.
    pub enum PrintFormat {
        /// Zebra Programming Language (`^XA…^XZ`).
        Zpl = "zpl",
        /// TSC's TSPL/TSPL2 (`SIZE …`, `PRINT 1`).
        Tspl = "tspl",
        /// A Cainiao e-waybill (DOMAIN.md §7): `data` is the print data exactly as Cainiao
        /// issued it (opaque, usually encrypted) and [`Print::template_url`] the cloud-print
        /// template. Only a station that runs the Cainiao print component prints it; a serial
        /// label printer refuses it as the wrong format.
        Cainiao = "cainiao",
    }
}

wire_enum! {
    /// The outcome of a print job.
    pub enum PrintStatus {
        /// The printer took the whole job and reported no fault.
        Printed = "printed",
        /// The job was not printed; `error` says why.
        Error = "error",
    }
}

wire_enum! {
    /// The kind of device a topic belongs to.
    pub enum DeviceClass {
        /// A barcode scanner or handheld.
        Scanner = "scanner",
        /// A label printer.
        Printer = "printer",
        /// The gateway itself (OTA, node state).
        Gateway = "gateway",
    }
}

wire_enum! {
    /// The last topic segment: what flows on it and in which direction.
    pub enum Channel {
        /// Device events to the node (scans, requests, heartbeats).
        Evt = "evt",
        /// Node commands to a device (feedback, tasks, holds, print jobs).
        Cmd = "cmd",
        /// Device answers to commands (print results, hold acknowledgements).
        Reply = "reply",
        /// Retained online/offline state (birth and last will).
        State = "state",
        /// The node's alerts, raised, updated and resolved (gateway class only).
        Alert = "alert",
    }
}

/// A calendar date carried by a GS1 application identifier (e.g. AI 17, expiry).
///
/// JSON writes it as `"YYYY-MM-DD"`; postcard as `(year, month, day)`. A GS1 day of `00`
/// ("end of month") is resolved to the month's last day by the parser, so `day` is always a real
/// day of the month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gs1Date {
    /// Full year, e.g. 2027.
    pub year: u16,
    /// 1–12.
    pub month: u8,
    /// 1–31, valid for the month.
    pub day: u8,
}

impl Gs1Date {
    /// A checked date; `None` if the day does not exist.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Gs1Date { year, month, day })
    }

    /// Parses `YYYY-MM-DD` strictly.
    pub fn parse_iso(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let year = digits(&b[0..4])?;
        let month = digits(&b[5..7])?;
        let day = digits(&b[8..10])?;
        Gs1Date::new(year as u16, month as u8, day as u8)
    }
}

/// Parses ASCII digits into a number; `None` on anything else (or overflow of `u32`).
pub(crate) fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() {
        return None;
    }
    let mut n: u32 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u32::from(c - b'0'))?;
    }
    Some(n)
}

/// Days in a month of the proleptic Gregorian calendar (0 for an invalid month).
pub(crate) const fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => {
            if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) {
                29
            } else {
                28
            }
        }
        _ => 0,
    }
}

impl fmt::Display for Gs1Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Serialize for Gs1Date {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            (self.year, self.month, self.day).serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Gs1Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        if deserializer.is_human_readable() {
            struct Iso;
            impl serde::de::Visitor<'_> for Iso {
                type Value = Gs1Date;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a date as \"YYYY-MM-DD\"")
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Gs1Date, E> {
                    Gs1Date::parse_iso(v).ok_or_else(|| E::custom("date is not a valid YYYY-MM-DD"))
                }
            }
            deserializer.deserialize_str(Iso)
        } else {
            let (year, month, day) = <(u16, u8, u8)>::deserialize(deserializer)?;
            Gs1Date::new(year, month, day).ok_or_else(|| D::Error::custom("invalid date"))
        }
    }
}

/// The GS1 application identifiers a scan carried, parsed by the scanner side
/// ([`crate::scanner::gs1`]). Only the identifiers the floor uses are lifted out; the raw code
/// stays in [`Scan::code`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gs1Fields<S> {
    /// AI 00: SSCC, 18 digits (check digit verified).
    pub sscc: Option<S>,
    /// AI 01: GTIN-14 (check digit verified).
    pub gtin: Option<S>,
    /// AI 10: batch or lot number.
    pub batch: Option<S>,
    /// AI 17: expiry date.
    pub expiry: Option<Gs1Date>,
    /// AI 21: serial number.
    pub serial: Option<S>,
}

/// One step of server-driven work: where to go, what to scan, how many, into which tote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step<S> {
    /// Location (bin) to go to.
    pub location: Option<S>,
    /// Item or order code expected next.
    pub code: Option<S>,
    /// Units to take.
    pub qty: Option<u32>,
    /// Tote or cart slot to put them in.
    pub tote: Option<S>,
}

/// `evt` · A barcode was scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan<S> {
    /// Protocol version ([`VERSION`]).
    #[serde(default = "version_default")]
    pub v: u16,
    /// Unique per device, forever (UUIDv7 recommended); the node dedupes by `(device, msg_id)`.
    pub msg_id: S,
    /// When the scan happened, RFC 3339 (UTC).
    pub ts: S,
    /// The decoded data, without AIM identifier or suffix; GS1 separators stay as ASCII GS.
    pub code: S,
    /// The symbology it was read from.
    pub symbology: Symbology,
    /// What the operator is doing.
    pub mode: Mode,
    /// The task the scan belongs to, when the device knows it.
    pub task_id: Option<S>,
    /// Quantity for this scan (receive/count), default 1.
    pub qty: Option<u32>,
    /// GS1 application identifiers found in the code.
    pub gs1: Option<Gs1Fields<S>>,
}

/// `evt` · The device asks for its current task (after a reconnect, or "next").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestTask<S> {
    /// Protocol version ([`VERSION`]).
    #[serde(default = "version_default")]
    pub v: u16,
    /// Unique per device.
    pub msg_id: S,
    /// RFC 3339 (UTC).
    pub ts: S,
    /// The work the operator wants.
    pub mode: Mode,
    /// The task the device last held, if any (so the node can say it is stale).
    pub task_id: Option<S>,
}

/// `evt` · The picker found fewer units than the task asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Short<S> {
    /// Protocol version ([`VERSION`]).
    #[serde(default = "version_default")]
    pub v: u16,
    /// Unique per device.
    pub msg_id: S,
    /// RFC 3339 (UTC).
    pub ts: S,
    /// The task being picked.
    pub task_id: S,
    /// The item that is short.
    pub code: S,
    /// Units missing.
    pub qty: u32,
    /// The location found short (for the bin zero-check).
    pub location: Option<S>,
}

/// `evt` · The device is alive (not kept in the bridge's durable spool).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat<S> {
    /// Protocol version ([`VERSION`]).
    #[serde(default = "version_default")]
    pub v: u16,
    /// Unique per device.
    pub msg_id: S,
    /// RFC 3339 (UTC).
    pub ts: S,
    /// Events waiting in the device's (or bridge's) queue for the broker.
    pub queued: Option<u32>,
    /// A short health note, e.g. `"port open"`.
    pub detail: Option<S>,
}

/// `cmd` · The node's answer to a device event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback<S> {
    /// Protocol version ([`VERSION`]).
    #[serde(default = "version_default")]
    pub v: u16,
    /// The `msg_id` answered; `null` (never absent) when the node could not read one from a
    /// payload it refuses.
    pub re: Option<S>,
    /// Whether the event was accepted (and committed).
    pub ok: bool,
    /// The sound and LED to give.
    pub beep: Beep,
    /// Short operator text (wrong item, held order and stale task have distinct texts).
    pub text: S,
    /// What to do next.
    pub next: Option<Step<S>>,
}

/// `cmd` · The device's current task (or a newer version of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task<S> {
    /// Protocol version ([`VERSION`]).
    #[serde(default = "version_default")]
    pub v: u16,
    /// Task id.
    pub task_id: S,
    /// Task version; a scan for an older version is refused.
    pub task_version: u32,
    /// The work this task is.
    pub mode: Mode,
    /// The Taobao trade it serves, when it is for one order.
    pub tid: Option<S>,
    /// Operator text.
    pub text: S,
    /// The next step.
    pub next: Option<Step<S>>,
    /// Units still to do in this task.
    pub remaining: Option<u32>,
}

/// `cmd` · STOP: the order was refunded, closed or intercepted; stop working on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold<S> {
    /// Protocol version ([`VERSION`]).
    #[serde(default = "version_default")]
    pub v: u16,
    /// Id of this hold; the device acknowledges it with [`HoldAck`].
    pub hold_id: S,
    /// The Taobao trade held.
    pub tid: S,
    /// The task affected, if any.
    pub task_id: Option<S>,
    /// Why: `refund`, `closed`, `intercept`, … (operator-facing, not a closed set).
    pub reason: S,
    /// What to do with the goods: e.g. `put-back tote T7`, `exception desk`.
    pub action: S,
    /// Operator text.
    pub text: S,
}

/// `cmd` · Print this job on the printer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Print<S> {
    /// Protocol version ([`VERSION`]).
    #[serde(default = "version_default")]
    pub v: u16,
    /// Job id; the result comes back as [`PrintResult::re`]. A repeated job id is not printed
    /// twice by the bridge: it answers with the first result.
    pub job_id: S,
    /// The language of `data`; must match the printer's.
    pub format: PrintFormat,
    /// The complete job, e.g. `^XA…^XZ`; for `cainiao`, the waybill's print data.
    pub data: S,
    /// `cainiao` jobs: the cloud-print template URL (left out for printer languages). An
    /// optional field added within version 1 (JSON readers without it ignore it); print jobs
    /// travel as JSON on MQTT only, never postcard-framed to a microcontroller.
    pub template_url: Option<S>,
}

/// `reply` · The outcome of a [`Print`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintResult<S> {
    /// Protocol version ([`VERSION`]).
    #[serde(default = "version_default")]
    pub v: u16,
    /// The `job_id` answered.
    pub re: S,
    /// Printed or not.
    pub status: PrintStatus,
    /// Why not (paper out, head open, printer not responding, wrong format…).
    pub error: Option<S>,
}

/// `reply` · The device showed a [`Hold`] to its operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldAck<S> {
    /// Protocol version ([`VERSION`]).
    #[serde(default = "version_default")]
    pub v: u16,
    /// The `hold_id` acknowledged.
    pub re: S,
}

/// `reply` · The device could not use a command: unreadable JSON, an unknown type, an id that
/// is not a string, a field out of bounds, a print job in another language than the
/// printer's. The node counts it and carries on; nothing is retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject<S> {
    /// Protocol version ([`VERSION`]).
    #[serde(default = "version_default")]
    pub v: u16,
    /// The id of the command refused (`hold_id`, `task_id`, `job_id`); `null` (never absent)
    /// when none could be read.
    pub re: Option<S>,
    /// The command's `type` when it could be read.
    pub of: Option<S>,
    /// Why, in words (the decoder's error: which field, what is wrong).
    pub error: S,
}

/// `state` (retained) · Whether the device is online; the MQTT last will publishes
/// `{"online":false}` for it when its connection dies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State<S> {
    /// Protocol version ([`VERSION`]).
    #[serde(default = "version_default")]
    pub v: u16,
    /// Online (birth) or offline (will, clean shutdown, device unplugged).
    pub online: bool,
    /// The device class.
    pub class: Option<DeviceClass>,
    /// Firmware or bridge version.
    pub fw: Option<S>,
    /// A short status note, e.g. `"port closed"`, `"paper out"`.
    pub detail: Option<S>,
}

impl<S> State<S> {
    /// The last-will / shutdown state: `{"v":1,"online":false}`.
    pub const fn offline() -> Self {
        State {
            v: VERSION,
            online: false,
            class: None,
            fw: None,
            detail: None,
        }
    }
}

/// A message with a fixed place in the protocol: its `"type"` tag and its channel.
pub trait Message {
    /// The JSON `"type"` value; `None` for [`State`], which has none.
    const TYPE: Option<&'static str>;
    /// The channel it travels on.
    const CHANNEL: Channel;
    /// Optional fields written as `null` when absent instead of being left out (the `re` of a
    /// refusal that could read no id: a reader sees at once that nothing could be matched).
    const NULLABLE: &'static [&'static str] = &[];
    /// The message's `v`.
    fn version(&self) -> u16;
}

macro_rules! message {
    ($ty:ident, $tag:expr, $chan:ident $(, nullable $($null:literal),+)?) => {
        impl<S> Message for $ty<S> {
            const TYPE: Option<&'static str> = $tag;
            const CHANNEL: Channel = Channel::$chan;
            $(const NULLABLE: &'static [&'static str] = &[$($null),+];)?
            fn version(&self) -> u16 {
                self.v
            }
        }
    };
}
message!(Scan, Some("scan"), Evt);
message!(RequestTask, Some("request_task"), Evt);
message!(Short, Some("short"), Evt);
message!(Heartbeat, Some("heartbeat"), Evt);
message!(Feedback, Some("feedback"), Cmd, nullable "re");
message!(Task, Some("task"), Cmd);
message!(Hold, Some("hold"), Cmd);
message!(Print, Some("print"), Cmd);
message!(PrintResult, Some("print_result"), Reply);
message!(HoldAck, Some("hold_ack"), Reply);
message!(Reject, Some("reject"), Reply, nullable "re");
message!(State, None, State);

/// Everything a device sends (its `evt`, `reply` and `state` channels). On the serial link this
/// enum is the frame payload; on MQTT the channel is part of the topic.
///
/// Variant order is the postcard encoding: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Uplink<S> {
    /// `evt` scan.
    Scan(Scan<S>),
    /// `evt` request_task.
    RequestTask(RequestTask<S>),
    /// `evt` short.
    Short(Short<S>),
    /// `evt` heartbeat.
    Heartbeat(Heartbeat<S>),
    /// `reply` print_result.
    PrintResult(PrintResult<S>),
    /// `reply` hold_ack.
    HoldAck(HoldAck<S>),
    /// `state`.
    State(State<S>),
    /// `reply` reject.
    Reject(Reject<S>),
}

impl<S> Uplink<S> {
    /// The JSON `"type"` (`None` for state).
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            Uplink::Scan(_) => Scan::<S>::TYPE,
            Uplink::RequestTask(_) => RequestTask::<S>::TYPE,
            Uplink::Short(_) => Short::<S>::TYPE,
            Uplink::Heartbeat(_) => Heartbeat::<S>::TYPE,
            Uplink::PrintResult(_) => PrintResult::<S>::TYPE,
            Uplink::HoldAck(_) => HoldAck::<S>::TYPE,
            Uplink::State(_) => State::<S>::TYPE,
            Uplink::Reject(_) => Reject::<S>::TYPE,
        }
    }

    /// The channel this message is published on.
    pub fn channel(&self) -> Channel {
        match self {
            Uplink::Scan(_) | Uplink::RequestTask(_) | Uplink::Short(_) | Uplink::Heartbeat(_) => {
                Channel::Evt
            }
            Uplink::PrintResult(_) | Uplink::HoldAck(_) | Uplink::Reject(_) => Channel::Reply,
            Uplink::State(_) => Channel::State,
        }
    }
}

/// Everything the node sends to a device (its `cmd` channel).
///
/// Variant order is the postcard encoding: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Downlink<S> {
    /// feedback.
    Feedback(Feedback<S>),
    /// task.
    Task(Task<S>),
    /// hold.
    Hold(Hold<S>),
    /// print.
    Print(Print<S>),
}

impl<S> Downlink<S> {
    /// The JSON `"type"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Downlink::Feedback(_) => "feedback",
            Downlink::Task(_) => "task",
            Downlink::Hold(_) => "hold",
            Downlink::Print(_) => "print",
        }
    }
}

/// A field that breaks the contract's limits: which one and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    /// The field name as on the wire.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}` {}", self.field, self.problem)
    }
}

/// Contract checks beyond what the types express (lengths, non-empty ids, quantities).
pub trait Validate {
    /// The first field that breaks the contract, if any.
    fn validate(&self) -> Result<(), Invalid>;
}

fn check_id<S: AsRef<str>>(field: &'static str, s: &S) -> Result<(), Invalid> {
    let s = s.as_ref();
    if s.is_empty() {
        return Err(Invalid {
            field,
            problem: "is empty",
        });
    }
    if s.len() > MAX_ID_LEN {
        return Err(Invalid {
            field,
            problem: "is longer than 64 bytes",
        });
    }
    if s.chars().any(char::is_control) {
        return Err(Invalid {
            field,
            problem: "contains control characters",
        });
    }
    Ok(())
}

fn check_opt_id<S: AsRef<str>>(field: &'static str, s: &Option<S>) -> Result<(), Invalid> {
    match s {
        Some(s) => check_id(field, s),
        None => Ok(()),
    }
}

fn check_text<S: AsRef<str>>(field: &'static str, s: &S) -> Result<(), Invalid> {
    if s.as_ref().len() > MAX_TEXT_LEN {
        return Err(Invalid {
            field,
            problem: "is longer than 512 bytes",
        });
    }
    Ok(())
}

fn check_qty(field: &'static str, qty: Option<u32>) -> Result<(), Invalid> {
    if qty == Some(0) {
        return Err(Invalid {
            field,
            problem: "is zero",
        });
    }
    Ok(())
}

impl<S: AsRef<str>> Validate for Scan<S> {
    fn validate(&self) -> Result<(), Invalid> {
        check_id("msg_id", &self.msg_id)?;
        check_opt_id("task_id", &self.task_id)?;
        let code = self.code.as_ref();
        if code.is_empty() {
            return Err(Invalid {
                field: "code",
                problem: "is empty",
            });
        }
        if code.len() > MAX_CODE_LEN {
            return Err(Invalid {
                field: "code",
                problem: "is longer than 4296 bytes",
            });
        }
        check_qty("qty", self.qty)
    }
}

impl<S: AsRef<str>> Validate for RequestTask<S> {
    fn validate(&self) -> Result<(), Invalid> {
        check_id("msg_id", &self.msg_id)?;
        check_opt_id("task_id", &self.task_id)
    }
}

impl<S: AsRef<str>> Validate for Short<S> {
    fn validate(&self) -> Result<(), Invalid> {
        check_id("msg_id", &self.msg_id)?;
        check_id("task_id", &self.task_id)?;
        check_id("code", &self.code)?;
        check_qty("qty", Some(self.qty))
    }
}

impl<S: AsRef<str>> Validate for Heartbeat<S> {
    fn validate(&self) -> Result<(), Invalid> {
        check_id("msg_id", &self.msg_id)
    }
}

impl<S: AsRef<str>> Validate for Feedback<S> {
    fn validate(&self) -> Result<(), Invalid> {
        check_opt_id("re", &self.re)?;
        check_text("text", &self.text)
    }
}

impl<S: AsRef<str>> Validate for Reject<S> {
    fn validate(&self) -> Result<(), Invalid> {
        check_opt_id("re", &self.re)?;
        check_opt_id("of", &self.of)?;
        check_text("error", &self.error)
    }
}

impl<S: AsRef<str>> Validate for Task<S> {
    fn validate(&self) -> Result<(), Invalid> {
        check_id("task_id", &self.task_id)?;
        check_text("text", &self.text)
    }
}

impl<S: AsRef<str>> Validate for Hold<S> {
    fn validate(&self) -> Result<(), Invalid> {
        check_id("hold_id", &self.hold_id)?;
        check_id("tid", &self.tid)?;
        check_opt_id("task_id", &self.task_id)?;
        check_text("text", &self.text)?;
        check_text("action", &self.action)
    }
}

impl<S: AsRef<str>> Validate for Print<S> {
    fn validate(&self) -> Result<(), Invalid> {
        check_id("job_id", &self.job_id)?;
        if self.data.as_ref().is_empty() {
            return Err(Invalid {
                field: "data",
                problem: "is empty",
            });
        }
        Ok(())
    }
}

impl<S: AsRef<str>> Validate for PrintResult<S> {
    fn validate(&self) -> Result<(), Invalid> {
        check_id("re", &self.re)?;
        if self.status == PrintStatus::Error && self.error.is_none() {
            return Err(Invalid {
                field: "error",
                problem: "is missing for status error",
            });
        }
        Ok(())
    }
}

impl<S: AsRef<str>> Validate for HoldAck<S> {
    fn validate(&self) -> Result<(), Invalid> {
        check_id("re", &self.re)
    }
}

impl<S: AsRef<str>> Validate for State<S> {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

impl<S: AsRef<str>> Validate for Uplink<S> {
    fn validate(&self) -> Result<(), Invalid> {
        match self {
            Uplink::Scan(m) => m.validate(),
            Uplink::RequestTask(m) => m.validate(),
            Uplink::Short(m) => m.validate(),
            Uplink::Heartbeat(m) => m.validate(),
            Uplink::PrintResult(m) => m.validate(),
            Uplink::HoldAck(m) => m.validate(),
            Uplink::State(m) => m.validate(),
            Uplink::Reject(m) => m.validate(),
        }
    }
}

impl<S: AsRef<str>> Validate for Downlink<S> {
    fn validate(&self) -> Result<(), Invalid> {
        match self {
            Downlink::Feedback(m) => m.validate(),
            Downlink::Task(m) => m.validate(),
            Downlink::Hold(m) => m.validate(),
            Downlink::Print(m) => m.validate(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan() -> Scan<&'static str> {
        Scan {
            v: VERSION,
            msg_id: "0190f3a2-7c1e-7d2a-9b1c-3f2e1d0c4b5a",
            ts: "2025-06-01T08:00:00.123Z",
            code: "6901234567892",
            symbology: Symbology::Ean13,
            mode: Mode::Pick,
            task_id: Some("T-17"),
            qty: None,
            gs1: Some(Gs1Fields {
                sscc: None,
                gtin: Some("06901234567892"),
                batch: Some("L42"),
                expiry: Gs1Date::new(2027, 5, 31),
                serial: None,
            }),
        }
    }

    #[test]
    fn a_borrowed_scan_round_trips_through_postcard_without_an_allocator() {
        let msg = Uplink::Scan(scan());
        let mut buf = [0u8; 256];
        let bytes = postcard::to_slice(&msg, &mut buf).unwrap();
        let back: Uplink<&str> = postcard::from_bytes(bytes).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn a_heapless_feedback_round_trips_through_postcard() {
        type H = heapless::String<32>;
        let fb: Downlink<H> = Downlink::Feedback(Feedback {
            v: VERSION,
            re: Some(H::try_from("m-1").unwrap()),
            ok: false,
            beep: Beep::Error,
            text: H::try_from("wrong item").unwrap(),
            next: None,
        });
        let mut buf = [0u8; 64];
        let bytes = postcard::to_slice(&fb, &mut buf).unwrap();
        let back: Downlink<H> = postcard::from_bytes(bytes).unwrap();
        assert_eq!(back, fb);
    }

    #[test]
    fn every_wire_enum_spelling_parses_back() {
        for m in Mode::ALL {
            assert_eq!(Mode::from_name(m.as_str()), Some(*m));
        }
        for s in Symbology::ALL {
            assert_eq!(Symbology::from_name(s.as_str()), Some(*s));
        }
        assert_eq!(Channel::from_name("evt"), Some(Channel::Evt));
        assert_eq!(DeviceClass::from_name("toaster"), None);
    }

    #[test]
    fn gs1_dates_reject_days_that_do_not_exist() {
        assert!(Gs1Date::new(2024, 2, 29).is_some());
        assert!(Gs1Date::new(2025, 2, 29).is_none());
        assert!(Gs1Date::new(2025, 13, 1).is_none());
        assert_eq!(Gs1Date::parse_iso("2027-05-31"), Gs1Date::new(2027, 5, 31));
        assert!(Gs1Date::parse_iso("2027-5-31").is_none());
        assert!(Gs1Date::parse_iso("2027-06-31").is_none());
    }

    #[test]
    fn validation_names_the_offending_field() {
        let mut s = scan();
        assert_eq!(s.validate(), Ok(()));
        s.msg_id = "";
        assert_eq!(s.validate().unwrap_err().field, "msg_id");
        let mut s = scan();
        s.qty = Some(0);
        assert_eq!(s.validate().unwrap_err().field, "qty");
        let r: PrintResult<&str> = PrintResult {
            v: 1,
            re: "job-1",
            status: PrintStatus::Error,
            error: None,
        };
        assert_eq!(r.validate().unwrap_err().field, "error");
    }

    #[test]
    fn uplinks_know_their_channel() {
        assert_eq!(Uplink::Scan(scan()).channel(), Channel::Evt);
        let st: Uplink<&str> = Uplink::State(State::offline());
        assert_eq!(st.channel(), Channel::State);
        assert_eq!(st.kind(), None);
    }
}

// After `wire_enum!`, which they use.
#[cfg(feature = "alloc")]
pub mod alert;
#[cfg(feature = "alloc")]
pub mod ota;
