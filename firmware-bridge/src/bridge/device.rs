//! Device threads: one OS thread per serial device runs the `no_std` driver on a
//! [`SerialPort`], turns reads into spooled events and carries out the node's commands.
//!
//! Threads, not tasks: the drivers are blocking (`embedded-io`), a printer job at 9600 Bd takes
//! seconds, and a thread per device is cheap for the handful of devices on a station.
//!
//! ```text
//!   port ──▶ Scanner::poll ──▶ Scan JSON ──▶ Spool::push (fsync) ──▶ Note::Spooled ──▶ session
//!   session ──▶ DeviceCmd (mpsc + Waker) ──▶ feedback beep · hold ack · print job ──▶ port
//! ```
//!
//! A `link = "frame"` device (a microcontroller) skips the drivers: its thread runs the
//! [`crate::frame`] decoder and [`Link`] ARQ and relays [`Uplink`] / [`Downlink`] messages.
//! A frame is acknowledged only after its message is in the spool.
//!
//! A port that fails or vanishes is closed, reported (`Note::Port { online: false }`) and
//! reopened with backoff until it comes back; nothing else stops. Scans read while the broker
//! is down are in the spool, so they are not affected.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, error, info, warn};

use super::config::DeviceConfig;
use super::serial::{SerialPort, WakeHandle, Waker};
use super::spool::{Spool, SpoolError};
use crate::frame::{Decoder, Link, LinkConfig, LinkError, link::Received, max_wire_len};
use crate::pace::Retries;
use crate::printer::{self, Printer, Status};
use crate::proto::{
    Beep, Channel, Downlink, Feedback, Gs1Fields, HoldAck, Mode, Print, PrintResult, PrintStatus,
    Reject, Scan, Uplink, VERSION, Validate, json,
};
use crate::scanner::{self, Scanner};

/// Line buffer of the bridge's scanners: a full QR code plus suffix.
const SCAN_BUF: usize = 4400;
/// Status answers are short; 512 bytes leave room for chatter.
const STATUS_BUF: usize = 512;
/// How long a device thread sleeps when nothing happens (bounds shutdown latency).
const IDLE: Duration = Duration::from_secs(1);
/// Printed jobs remembered, so a repeated job id is answered without printing twice.
const JOB_MEMORY: usize = 64;

/// Device thread → session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Something new is in the spool.
    Spooled,
    /// The port opened or closed, or the device's condition changed.
    Port {
        /// Whether the port is open (the state's `online`).
        online: bool,
        /// A short note for the state's `detail`.
        detail: Option<String>,
    },
}

/// Session → device thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceCmd {
    /// A node command from the device's `cmd` topic.
    Downlink(Downlink<String>),
}

/// The session's handle on a device thread.
#[derive(Debug)]
pub struct DeviceSender {
    tx: Sender<DeviceCmd>,
    wake: WakeHandle,
}

impl DeviceSender {
    /// Pairs a command channel with the thread's waker.
    pub fn new(tx: Sender<DeviceCmd>, wake: WakeHandle) -> Self {
        DeviceSender { tx, wake }
    }

    /// Hands a command to the thread and wakes it.
    pub fn send(&self, cmd: DeviceCmd) {
        if self.tx.send(cmd).is_ok() {
            self.wake.wake();
        }
    }
}

/// What a device thread owns.
#[derive(Debug)]
pub struct DeviceCtx {
    /// Its configuration.
    pub cfg: DeviceConfig,
    /// Its spool (shared with the session).
    pub spool: Arc<Mutex<Spool>>,
    /// Notes to the session.
    pub notes: UnboundedSender<Note>,
    /// Commands from the session.
    pub cmds: Receiver<DeviceCmd>,
    /// Wakes the thread for commands and shutdown.
    pub waker: Waker,
    /// Set at shutdown.
    pub stop: Arc<AtomicBool>,
}

impl DeviceCtx {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn note(&self, note: Note) {
        let _ = self.notes.send(note);
    }

    fn port_closed(&self, why: &str) {
        self.note(Note::Port {
            online: false,
            detail: Some(format!("port closed: {why}")),
        });
    }

    /// Stores an event; `false` if it could not be kept (the operator must be told).
    fn spool(&self, channel: Channel, payload: Vec<u8>) -> bool {
        let r = match self.spool.lock() {
            Ok(mut s) => s.push(channel, payload),
            Err(_) => {
                error!(device = %self.cfg.id, "spool lock poisoned; event not stored");
                return false;
            }
        };
        match r {
            Ok(_) => {
                self.note(Note::Spooled);
                true
            }
            Err(e @ SpoolError::Full { .. }) => {
                error!(device = %self.cfg.id, error = %e, "event refused: broker unreachable for too long");
                false
            }
            Err(e) => {
                error!(device = %self.cfg.id, error = %e, "event not stored");
                false
            }
        }
    }

    /// Answers a command this device cannot use with a `reject` on `reply`, so the node
    /// counts it instead of waiting; the command itself is dropped.
    fn reject(&self, cmd: &Downlink<String>, error: &str) {
        let re = match cmd {
            Downlink::Feedback(_) => None,
            Downlink::Task(t) => Some(t.task_id.clone()),
            Downlink::Hold(h) => Some(h.hold_id.clone()),
            Downlink::Print(p) => Some(p.job_id.clone()),
        };
        warn!(device = %self.cfg.id, kind = cmd.kind(), re = re.as_deref().unwrap_or(""), error, "command refused");
        let reject = Reject {
            v: VERSION,
            re,
            of: Some(cmd.kind().to_owned()),
            error: error.to_owned(),
        };
        if let Ok(bytes) = json::to_vec(&reject) {
            self.spool(Channel::Reply, bytes);
        }
    }

    /// Opens the port, retrying with backoff; `None` at shutdown.
    fn open(&self, backoff: &mut Retries, last_error: &mut Option<String>) -> Option<SerialPort> {
        loop {
            if self.stopping() {
                return None;
            }
            self.discard_commands();
            match SerialPort::open(&self.cfg.port, self.cfg.baud) {
                Ok(port) => {
                    info!(device = %self.cfg.id, port = %self.cfg.port.display(), "serial port open");
                    *last_error = None;
                    backoff.reset();
                    return Some(port);
                }
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        warn!(device = %self.cfg.id, port = %self.cfg.port.display(), error = %text, "cannot open serial port; retrying");
                        self.port_closed(&text);
                        *last_error = Some(text);
                    }
                    let _ = self.waker.sleep(backoff.next_delay(rand::random()));
                }
            }
        }
    }

    /// Commands that arrive while the port is closed cannot be carried out.
    fn discard_commands(&self) {
        while let Ok(DeviceCmd::Downlink(cmd)) = self.cmds.try_recv() {
            debug!(device = %self.cfg.id, kind = cmd.kind(), "command dropped: port closed");
            if let Downlink::Print(job) = cmd {
                self.print_result(&job.job_id, Err("printer port closed".to_owned()));
            }
        }
    }

    fn print_result(&self, job_id: &str, outcome: Result<(), String>) {
        let (status, error) = match outcome {
            Ok(()) => (PrintStatus::Printed, None),
            Err(e) => (PrintStatus::Error, Some(e)),
        };
        info!(device = %self.cfg.id, job_id, status = %status, error = error.as_deref().unwrap_or(""), "print result");
        let result = PrintResult {
            v: VERSION,
            re: job_id.to_owned(),
            status,
            error,
        };
        match json::to_vec(&result) {
            Ok(bytes) => {
                self.spool(Channel::Reply, bytes);
            }
            Err(e) => error!(device = %self.cfg.id, error = %e, "cannot encode print result"),
        }
    }
}

/// A new message id: a UUIDv7, unique per device forever and increasing within a process —
/// the 12-bit `rand_a` field is a counter within a millisecond (RFC 9562, method 1), and a
/// clock that steps back does not make ids go back. The other 62 bits are random.
pub fn new_msg_id() -> String {
    static LAST: Mutex<(u64, u16)> = Mutex::new((0, 0));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut random: [u8; 10] = rand::random();
    let (ms, counter) = {
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        let next = if now > last.0 {
            // A new millisecond: start the counter low and random, leaving room to count.
            (now, u16::from(random[0] & 0x03) << 8 | u16::from(random[1]))
        } else if last.1 < 0x0fff {
            (last.0, last.1 + 1)
        } else {
            (last.0 + 1, 0)
        };
        *last = next;
        next
    };
    random[0] = (counter >> 8) as u8 & 0x0f;
    random[1] = counter as u8;
    uuid::Builder::from_unix_timestamp_millis(ms, &random)
        .into_uuid()
        .to_string()
}

/// Now, RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The beeper pin of a serial scanner on Linux: there is none (feedback goes by host command).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPin;

impl embedded_hal::digital::ErrorType for NoPin {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for NoPin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// `DelayNs` by sleeping the device thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdDelay;

impl embedded_hal::delay::DelayNs for StdDelay {
    // The device thread is ours (a plain thread, never a runtime worker): sleeping is the job.
    #[allow(clippy::disallowed_methods)]
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(Duration::from_nanos(u64::from(ns)));
    }
}

/// An owned copy of a read, so the driver can be used again while it is handled.
struct Read {
    text: Option<String>,
    symbology: crate::proto::Symbology,
    gs1: Option<Result<Gs1Fields<String>, scanner::Gs1Error>>,
}

impl Read {
    fn from(bc: &scanner::Barcode<'_>) -> Read {
        let own = |s: Option<&str>| s.map(str::to_owned);
        Read {
            text: bc.text().ok().map(str::to_owned),
            symbology: bc.symbology,
            gs1: bc.gs1().map(|r| {
                r.map(|f| Gs1Fields {
                    sscc: own(f.sscc),
                    gtin: own(f.gtin),
                    batch: own(f.batch),
                    expiry: f.expiry,
                    serial: own(f.serial),
                })
            }),
        }
    }
}

enum Step {
    Read(Read),
    TooLong,
    Idle,
    Lost(String),
}

type ScannerDriver = Scanner<SerialPort, NoPin, StdDelay, SCAN_BUF>;

/// Runs a scanner until shutdown.
pub fn run_scanner(ctx: DeviceCtx) {
    let mut backoff = super::retries(ctx.cfg.reopen_min, ctx.cfg.reopen_max);
    let mut last_error = None;
    let mut mode = ctx.cfg.mode.unwrap_or(Mode::Pick);
    let mode_prefix = ctx.cfg.mode_prefix.clone().unwrap_or_default();
    while let Some(port) = ctx.open(&mut backoff, &mut last_error) {
        let watch = match port.try_clone_fd() {
            Ok(fd) => fd,
            Err(e) => {
                warn!(device = %ctx.cfg.id, error = %e, "cannot watch serial port");
                let _ = ctx.waker.sleep(backoff.next_delay(rand::random()));
                continue;
            }
        };
        let mut scanner: ScannerDriver =
            match Scanner::new(port, NoPin, StdDelay, ctx.cfg.scanner_config()) {
                Ok(s) => s,
                Err((e, _)) => {
                    // Validation rules out a bad suffix; never spin if it happens anyway.
                    error!(device = %ctx.cfg.id, error = %e, "scanner configuration refused");
                    return;
                }
            };
        ctx.note(Note::Port {
            online: true,
            detail: None,
        });
        let lost = scanner_session(&ctx, &mut scanner, &watch, &mut mode, &mode_prefix);
        drop(scanner);
        match lost {
            None => return,
            Some(why) => {
                warn!(device = %ctx.cfg.id, error = %why, "serial port lost; reopening");
                ctx.port_closed(&why);
                last_error = Some(why);
                let _ = ctx.waker.sleep(backoff.next_delay(rand::random()));
            }
        }
    }
}

/// Serves an open scanner port; returns why it was lost, or `None` at shutdown.
fn scanner_session(
    ctx: &DeviceCtx,
    scanner: &mut ScannerDriver,
    watch: &std::os::fd::OwnedFd,
    mode: &mut Mode,
    mode_prefix: &str,
) -> Option<String> {
    loop {
        if ctx.stopping() {
            return None;
        }
        loop {
            match ctx.cmds.try_recv() {
                Ok(DeviceCmd::Downlink(cmd)) => {
                    if let Err(e) = scanner_command(ctx, scanner, cmd) {
                        return Some(e);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return None,
            }
        }
        let step = match scanner.poll() {
            Ok(Some(bc)) => Step::Read(Read::from(&bc)),
            Ok(None) => Step::Idle,
            Err(scanner::Error::LineTooLong) => Step::TooLong,
            Err(e) => Step::Lost(e.to_string()),
        };
        match step {
            Step::Read(read) => {
                let beep = handle_read(ctx, read, mode, mode_prefix);
                if let Some(beep) = beep
                    && let Err(e) = scanner.signal(beep)
                {
                    return Some(e.to_string());
                }
                continue;
            }
            Step::TooLong => {
                warn!(device = %ctx.cfg.id, "scan longer than the line buffer; dropped");
                if let Err(e) = scanner.signal(Beep::Error) {
                    return Some(e.to_string());
                }
                continue;
            }
            Step::Lost(why) => return Some(why),
            Step::Idle => {}
        }
        if let Err(e) = SerialPort::wait(watch.as_fd(), &ctx.waker, IDLE) {
            return Some(e.to_string());
        }
    }
}

/// Turns a read into a spooled scan (or a mode change); returns a beep to give at once.
fn handle_read(ctx: &DeviceCtx, read: Read, mode: &mut Mode, mode_prefix: &str) -> Option<Beep> {
    let Some(code) = read.text else {
        warn!(device = %ctx.cfg.id, "scan is not text (binary barcode content); refused");
        return Some(Beep::Error);
    };
    if !mode_prefix.is_empty()
        && let Some(name) = code.strip_prefix(mode_prefix)
    {
        return match Mode::from_name(name.trim()) {
            Some(m) => {
                info!(device = %ctx.cfg.id, mode = %m, "station mode changed by mode card");
                *mode = m;
                Some(Beep::Ok)
            }
            None => {
                warn!(device = %ctx.cfg.id, "mode card names no mode");
                Some(Beep::Error)
            }
        };
    }
    let gs1 = match read.gs1 {
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            // The code still goes to the node; only the parsed fields are missing.
            debug!(device = %ctx.cfg.id, error = %e, "GS1 data not parsed");
            None
        }
        None => None,
    };
    let scan = Scan {
        v: VERSION,
        msg_id: new_msg_id(),
        ts: now_rfc3339(),
        code,
        symbology: read.symbology,
        mode: *mode,
        task_id: None,
        qty: None,
        gs1,
    };
    if let Err(inv) = crate::proto::Validate::validate(&scan) {
        warn!(device = %ctx.cfg.id, problem = %inv, "scan refused");
        return Some(Beep::Error);
    }
    let payload = match json::to_vec(&scan) {
        Ok(p) => p,
        Err(e) => {
            error!(device = %ctx.cfg.id, error = %e, "cannot encode scan");
            return Some(Beep::Error);
        }
    };
    debug!(device = %ctx.cfg.id, msg_id = %scan.msg_id, symbology = %scan.symbology, "scan");
    if ctx.spool(Channel::Evt, payload) {
        // The node's feedback beeps; nothing to do here.
        None
    } else {
        Some(Beep::Error)
    }
}

fn scanner_command(
    ctx: &DeviceCtx,
    scanner: &mut ScannerDriver,
    cmd: Downlink<String>,
) -> Result<(), String> {
    match cmd {
        Downlink::Feedback(fb) => scanner.feedback(&fb).map_err(|e| e.to_string()),
        Downlink::Hold(hold) => {
            warn!(device = %ctx.cfg.id, hold_id = %hold.hold_id, tid = %hold.tid, "order on hold");
            scanner.signal(Beep::Error).map_err(|e| e.to_string())?;
            scanner.signal(Beep::Error).map_err(|e| e.to_string())?;
            let ack = HoldAck {
                v: VERSION,
                re: hold.hold_id,
            };
            if let Ok(bytes) = json::to_vec(&ack) {
                ctx.spool(Channel::Reply, bytes);
            }
            Ok(())
        }
        Downlink::Task(task) => {
            // A line scanner has no display; the task text reaches the operator elsewhere.
            debug!(device = %ctx.cfg.id, task_id = %task.task_id, "task received");
            Ok(())
        }
        cmd @ Downlink::Print(_) => {
            ctx.reject(&cmd, "a scanner cannot print");
            Ok(())
        }
    }
}

type PrinterDriver = Printer<SerialPort, StdDelay, STATUS_BUF>;

/// Runs a printer until shutdown.
pub fn run_printer(ctx: DeviceCtx) {
    let mut backoff = super::retries(ctx.cfg.reopen_min, ctx.cfg.reopen_max);
    let mut last_error = None;
    let mut printed: VecDeque<String> = VecDeque::new();
    while let Some(port) = ctx.open(&mut backoff, &mut last_error) {
        let watch = match port.try_clone_fd() {
            Ok(fd) => fd,
            Err(e) => {
                warn!(device = %ctx.cfg.id, error = %e, "cannot watch serial port");
                let _ = ctx.waker.sleep(backoff.next_delay(rand::random()));
                continue;
            }
        };
        let mut printer: PrinterDriver = Printer::new(port, StdDelay, ctx.cfg.printer_config());
        let lost = printer_session(&ctx, &mut printer, &watch, &mut printed);
        drop(printer);
        match lost {
            None => return,
            Some(why) => {
                warn!(device = %ctx.cfg.id, error = %why, "serial port lost; reopening");
                ctx.port_closed(&why);
                last_error = Some(why);
                let _ = ctx.waker.sleep(backoff.next_delay(rand::random()));
            }
        }
    }
}

fn status_check(ctx: &DeviceCtx) -> bool {
    ctx.cfg.status_check.unwrap_or(true)
}

/// Queries the printer and reports its condition; `Err` when the port is gone.
fn refresh_status(
    ctx: &DeviceCtx,
    printer: &mut PrinterDriver,
) -> Result<Option<&'static str>, String> {
    match printer.status() {
        Ok(st) => {
            let problem = st.problem();
            ctx.note(Note::Port {
                online: true,
                detail: problem.map(str::to_owned),
            });
            if let Status::Reported(r) = st {
                debug!(device = %ctx.cfg.id, busy = r.busy, "printer status");
            }
            Ok(problem)
        }
        Err(printer::Error::Serial(e)) => Err(e.to_string()),
        Err(e) => {
            // Line noise in the answer: say so, but do not stop printing for it.
            warn!(device = %ctx.cfg.id, error = %e, "printer status unreadable");
            Ok(None)
        }
    }
}

fn printer_session(
    ctx: &DeviceCtx,
    printer: &mut PrinterDriver,
    watch: &std::os::fd::OwnedFd,
    printed: &mut VecDeque<String>,
) -> Option<String> {
    if status_check(ctx) {
        if let Err(e) = refresh_status(ctx, printer) {
            return Some(e);
        }
    } else {
        ctx.note(Note::Port {
            online: true,
            detail: None,
        });
    }
    loop {
        if ctx.stopping() {
            return None;
        }
        match ctx.cmds.try_recv() {
            Ok(DeviceCmd::Downlink(Downlink::Print(job))) => {
                if let Err(e) = print(ctx, printer, job, printed) {
                    return Some(e);
                }
                continue;
            }
            Ok(DeviceCmd::Downlink(Downlink::Feedback(_))) => {
                // Feedback answers events; a printer sends none but a heartbeat, whose
                // feedback needs no action.
                continue;
            }
            Ok(DeviceCmd::Downlink(other)) => {
                ctx.reject(&other, "a printer takes print jobs only");
                continue;
            }
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        match SerialPort::wait(watch.as_fd(), &ctx.waker, IDLE) {
            Ok(r) if r.readable => {
                // Unsolicited bytes (a late status answer, a printer's boot banner): read them
                // off so the wait does not spin; a hang-up shows here too.
                let mut buf = [0u8; 256];
                match rustix::io::read(watch, &mut buf) {
                    Ok(0) | Err(rustix::io::Errno::IO) => {
                        return Some("serial port hung up".to_owned());
                    }
                    Ok(n) => {
                        debug!(device = %ctx.cfg.id, bytes = n, "unsolicited bytes from printer")
                    }
                    Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                    Err(e) => return Some(io::Error::from(e).to_string()),
                }
            }
            Ok(_) => {}
            Err(e) => return Some(e.to_string()),
        }
    }
}

/// Prints one job and spools its result; `Err` when the port is gone.
fn print(
    ctx: &DeviceCtx,
    printer: &mut PrinterDriver,
    job: Print<String>,
    printed: &mut VecDeque<String>,
) -> Result<(), String> {
    if printed.contains(&job.job_id) {
        info!(device = %ctx.cfg.id, job_id = %job.job_id, "job already printed; not printing it twice");
        ctx.print_result(&job.job_id, Ok(()));
        return Ok(());
    }
    if job.format != printer.language() {
        ctx.print_result(
            &job.job_id,
            Err(format!(
                "job is {} but the printer speaks {}",
                job.format,
                printer.language()
            )),
        );
        return Ok(());
    }
    if status_check(ctx) {
        match refresh_status(ctx, printer) {
            Ok(Some(problem)) => {
                ctx.print_result(&job.job_id, Err(problem.to_owned()));
                return Ok(());
            }
            Ok(None) => {}
            Err(e) => {
                ctx.print_result(&job.job_id, Err("printer port lost".to_owned()));
                return Err(e);
            }
        }
    }
    match printer.print_job(&job) {
        Ok(()) => {
            if printed.len() >= JOB_MEMORY {
                printed.pop_front();
            }
            printed.push_back(job.job_id.clone());
            ctx.print_result(&job.job_id, Ok(()));
            Ok(())
        }
        Err(printer::Error::Serial(e)) => {
            ctx.print_result(&job.job_id, Err(format!("printer port failed: {e}")));
            Err(e.to_string())
        }
        Err(e) => {
            ctx.print_result(&job.job_id, Err(e.to_string()));
            Ok(())
        }
    }
}

/// Largest message on a device link (postcard); a print job for a framed printer must fit.
const FRAME_PAYLOAD: usize = 8 * 1024;
const FRAME_DECODED: usize = FRAME_PAYLOAD + crate::frame::FRAME_OVERHEAD;
const FRAME_WIRE: usize = max_wire_len(FRAME_PAYLOAD);
/// Commands waiting for a framed device, at most (the oldest is dropped beyond).
const FRAME_OUTBOX: usize = 64;

/// Runs a microcontroller on a framed link until shutdown.
pub fn run_framed(ctx: DeviceCtx) {
    let mut backoff = super::retries(ctx.cfg.reopen_min, ctx.cfg.reopen_max);
    let mut last_error = None;
    let mut outbox: VecDeque<Downlink<String>> = VecDeque::new();
    while let Some(port) = ctx.open(&mut backoff, &mut last_error) {
        let watch = match port.try_clone_fd() {
            Ok(fd) => fd,
            Err(e) => {
                warn!(device = %ctx.cfg.id, error = %e, "cannot watch serial port");
                let _ = ctx.waker.sleep(backoff.next_delay(rand::random()));
                continue;
            }
        };
        let lost = framed_session(&ctx, port, &watch, &mut outbox);
        match lost {
            None => return,
            Some(why) => {
                warn!(device = %ctx.cfg.id, error = %why, "serial port lost; reopening");
                ctx.port_closed(&why);
                last_error = Some(why);
                let _ = ctx.waker.sleep(backoff.next_delay(rand::random()));
            }
        }
    }
}

fn framed_session(
    ctx: &DeviceCtx,
    mut port: SerialPort,
    watch: &std::os::fd::OwnedFd,
    outbox: &mut VecDeque<Downlink<String>>,
) -> Option<String> {
    use embedded_io::{Read as _, Write as _};
    let epoch = std::time::Instant::now();
    let now = || epoch.elapsed().as_millis() as u32;
    let mut dec = Box::new(Decoder::<FRAME_DECODED>::new());
    let mut link = Box::new(Link::<FRAME_WIRE>::new(
        LinkConfig::default(),
        rand::random(),
    ));
    let mut scratch = vec![0u8; FRAME_PAYLOAD];
    let mut inflight: Option<Downlink<String>> = None;
    let mut up = false;
    ctx.note(Note::Port {
        online: false,
        detail: Some("waiting for the device".to_owned()),
    });
    loop {
        if ctx.stopping() {
            return None;
        }
        loop {
            match ctx.cmds.try_recv() {
                Ok(DeviceCmd::Downlink(cmd)) => {
                    if outbox.len() >= FRAME_OUTBOX
                        && let Some(old) = outbox.pop_front()
                    {
                        warn!(device = %ctx.cfg.id, kind = old.kind(), "device not taking commands; oldest dropped");
                    }
                    outbox.push_back(cmd);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return None,
            }
        }
        if link.can_send()
            && let Some(cmd) = outbox.pop_front()
        {
            match link.send_message(&cmd, &mut scratch) {
                Ok(_) => inflight = Some(cmd),
                Err(e) => {
                    warn!(device = %ctx.cfg.id, kind = cmd.kind(), error = %e, "command does not fit the device link; dropped");
                    if let Downlink::Print(job) = &cmd {
                        ctx.print_result(
                            &job.job_id,
                            Err("job too large for the device link".to_owned()),
                        );
                    }
                }
            }
        }
        loop {
            match link.poll_transmit(now()) {
                Ok(Some(bytes)) => {
                    if let Err(e) = port.write_all(bytes) {
                        return Some(e.to_string());
                    }
                }
                Ok(None) => break,
                Err(LinkError::GaveUp { seq }) => {
                    warn!(device = %ctx.cfg.id, seq, "device did not acknowledge; restarting the link");
                    if let Some(cmd) = inflight.take() {
                        outbox.push_front(cmd);
                    }
                    if std::mem::replace(&mut up, false) {
                        ctx.note(Note::Port {
                            online: false,
                            detail: Some("device not responding".to_owned()),
                        });
                    }
                }
                Err(e) => warn!(device = %ctx.cfg.id, error = %e, "link error"),
            }
        }
        let timeout = link.poll_timeout(now()).map_or(IDLE, |ms| {
            Duration::from_millis(u64::from(ms.max(1))).min(IDLE)
        });
        let ready = match SerialPort::wait(watch.as_fd(), &ctx.waker, timeout) {
            Ok(r) => r,
            Err(e) => return Some(e.to_string()),
        };
        if !ready.readable {
            continue;
        }
        let mut buf = [0u8; 512];
        let n = match port.read(&mut buf) {
            Ok(n) => n,
            Err(e) => return Some(e.to_string()),
        };
        for &b in &buf[..n] {
            let frame = match dec.push(b) {
                None => continue,
                Some(Ok(f)) => f,
                Some(Err(e)) => {
                    debug!(device = %ctx.cfg.id, error = %e, "line noise");
                    continue;
                }
            };
            match link.receive(frame) {
                Received::Data(payload) => {
                    if !std::mem::replace(&mut up, true) {
                        ctx.note(Note::Port {
                            online: true,
                            detail: None,
                        });
                    }
                    match postcard::from_bytes::<Uplink<String>>(payload) {
                        Ok(msg) => framed_uplink(ctx, msg, outbox),
                        Err(_) => {
                            warn!(device = %ctx.cfg.id, "device sent a message this bridge cannot decode")
                        }
                    }
                }
                Received::Started | Received::Sync => {
                    if !std::mem::replace(&mut up, true) {
                        info!(device = %ctx.cfg.id, "device link up");
                        ctx.note(Note::Port {
                            online: true,
                            detail: None,
                        });
                    }
                }
                Received::Acked(_) => inflight = None,
                Received::Duplicate | Received::StaleAck => {}
            }
        }
    }
}

/// A message from a framed device: spooled (events, replies) or turned into the device state.
/// Runs before the frame's ACK is sent, so an acknowledged message is always on disk.
fn framed_uplink(ctx: &DeviceCtx, msg: Uplink<String>, outbox: &mut VecDeque<Downlink<String>>) {
    let mut msg = msg;
    // A microcontroller may have no clock or id source; the bridge fills them in.
    let fill = |msg_id: &mut String, ts: &mut String| {
        if msg_id.is_empty() {
            *msg_id = new_msg_id();
        }
        if ts.is_empty() {
            *ts = now_rfc3339();
        }
    };
    match &mut msg {
        Uplink::Scan(m) => fill(&mut m.msg_id, &mut m.ts),
        Uplink::RequestTask(m) => fill(&mut m.msg_id, &mut m.ts),
        Uplink::Short(m) => fill(&mut m.msg_id, &mut m.ts),
        Uplink::Heartbeat(m) => fill(&mut m.msg_id, &mut m.ts),
        Uplink::State(st) => {
            ctx.note(Note::Port {
                online: st.online,
                detail: st.detail.clone(),
            });
            return;
        }
        Uplink::PrintResult(_) | Uplink::HoldAck(_) | Uplink::Reject(_) => {}
    }
    let refuse = |re: Option<&String>, text: String, outbox: &mut VecDeque<Downlink<String>>| {
        if let Some(re) = re {
            outbox.push_back(Downlink::Feedback(Feedback {
                v: VERSION,
                re: Some(re.clone()),
                ok: false,
                beep: Beep::Error,
                text,
                next: None,
            }));
        }
    };
    let id = match &msg {
        Uplink::Scan(m) => Some(&m.msg_id),
        Uplink::RequestTask(m) => Some(&m.msg_id),
        Uplink::Short(m) => Some(&m.msg_id),
        _ => None,
    };
    if let Err(inv) = msg.validate() {
        warn!(device = %ctx.cfg.id, kind = msg.kind().unwrap_or("state"), problem = %inv, "device message refused");
        refuse(id, inv.to_string(), outbox);
        return;
    }
    let payload = match json::uplink_to_vec(&msg) {
        Ok(p) => p,
        Err(e) => {
            error!(device = %ctx.cfg.id, error = %e, "cannot encode device message");
            return;
        }
    };
    if !ctx.spool(msg.channel(), payload) {
        refuse(id, "bridge queue full".to_owned(), outbox);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_uuid_v7_unique_and_increasing() {
        let ids: Vec<_> = (0..5000).map(|_| new_msg_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
        let id = new_msg_id();
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let ts = now_rfc3339();
        assert!(ts.ends_with('Z') && ts.len() == 24, "{ts}");
    }
}
