//! Shipping labels for packed parcels (DOMAIN.md §7): which printer serves which packing
//! station, the label jobs waiting, sent and printed (table `floor_labels`, by package), and
//! the labeller that asks for the e-waybill and sends the `print`.
//!
//! ```text
//!  pack flow: last item verified ─▶ order packed + label job "waiting"   (one commit)
//!                                          │ labeller (woken by the commit, and every second)
//!                                          ▼
//!        LabelSource::label(tid) ─ the waybill, kept with its print data before anything
//!                                  prints (goods out's `waybill get`: a package that has one
//!                                  reuses it, a lost answer is looked up by trade code)
//!            ok ─▶ job "sent" (commit) ─▶ `print` to the station's printer
//!            refused ─▶ job "failed" ─▶ the station's scanner is told why
//!            no answer ─▶ stays "waiting", tried again (backoff)
//!  printer's print_result: printed ─▶ orders labelled, the station told "to the dock"
//!                          error ─▶ job "failed", the station told the printer's words
//!  no result within print_timeout ─▶ printed again (the same waybill, a new job id); after
//!                          three tries the station is told to check the printer
//! ```
//!
//! **Stations.** A packing station is a scanner paired with one printer in the config
//! (`[[floor.stations]] scanner printer format`): explicit, visible in one file, and the
//! same on every node of a site. `format = "cainiao"` sends the waybill's print data and
//! template to a station running the Cainiao print component; `"zpl"` sends a carton label
//! (the tracking number as a Code 128 barcode, the carrier, the trades) to a ZPL printer. A
//! scanner without a station packs all the same; its labels come from `wms-node waybill get`.
//!
//! Must never: ask Cainiao from inside a store transaction, ask again for a package that has
//! a waybill (a reprint is a new print job of the same number), or log print data.

use super::devices::DeviceId;
use crate::status::i18n::{Lang, Msg};
use crate::store::{self, Bytes, Store, StoreError};
use crate::wms::ship::PrintJob;
use crate::wms::{self, LocalState, ShopId, Wms, WmsError};
use chrono::{DateTime, Utc};
use firmware_bridge::proto::{
    Beep, DeviceClass, Downlink, Feedback, Print, PrintFormat, PrintStatus, VERSION,
};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `(shop, package id)` → its label job.
pub const LABELS: TableDefinition<'static, (&'static str, &'static str), Bytes> =
    TableDefinition::new("floor_labels");

/// Tries of one label before the station is told to check its printer.
pub const MAX_TRIES: u32 = 3;

type Commands = Vec<(DeviceId, Downlink<String>)>;

/// What a station's printer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelFormat {
    /// The Cainiao print component: the waybill's print data and template.
    Cainiao,
    /// A ZPL label printer: a carton label with the tracking number's barcode.
    Zpl,
}

/// A packing station: a scanner and the printer beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Station {
    /// The scanner's id (`scanner/ID`).
    pub scanner: String,
    /// The printer's id (`printer/ID`).
    pub printer: String,
    /// What the printer takes.
    pub format: LabelFormat,
}

/// Where a label job is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelState {
    /// The waybill and the print are to be asked for (again at `next_ms`).
    Waiting,
    /// `print` sent as `job_id`; no result yet.
    Sent,
    /// The printer said `printed`.
    Printed,
    /// Refused, or the printer said `error`, or it never answered: the station was told.
    Failed,
}

/// One parcel's label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelJob {
    /// The package.
    pub package: String,
    /// Its trades.
    pub tids: Vec<u64>,
    /// The packing scanner (`scanner/ID`), told how it went.
    pub station: String,
    /// The printer (`printer/ID`).
    pub printer: String,
    /// What the printer takes.
    pub format: LabelFormat,
    /// Where it is.
    pub state: LabelState,
    /// The last print job sent.
    pub job_id: Option<String>,
    /// The tracking number, once issued.
    pub waybill_code: Option<String>,
    /// Prints sent.
    pub tries: u32,
    /// When the last print went, or when to ask again (epoch ms).
    pub at_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// A label to print: the waybill's print job and its number.
#[derive(Clone)]
pub struct Label {
    /// The print job (a new job id each time, the same waybill).
    pub job: PrintJob,
    /// The tracking number.
    pub waybill_code: String,
    /// The carrier that carries it.
    pub carrier: String,
}

/// Why no label came.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LabelError {
    /// Refused (held order, e-waybills off, Cainiao said no): a person must act.
    #[error("{0}")]
    Refused(String),
    /// No answer (the link is down): asked again later.
    #[error("{0}")]
    Later(String),
}

/// Where labels come from: goods out's e-waybill (`waybill get`), plugged in by the daemon
/// (the floor never calls another job itself).
pub trait LabelSource: Send + Sync + 'static {
    /// The waybill of `tid`'s package and a new print job of it.
    fn label(&self, tid: u64) -> futures::future::BoxFuture<'_, Result<Label, LabelError>>;
}

/// The station `scanner` belongs to.
pub fn station_of<'a>(stations: &'a [Station], scanner: &DeviceId) -> Option<&'a Station> {
    if scanner.class != DeviceClass::Scanner {
        return None;
    }
    stations.iter().find(|s| s.scanner == scanner.id)
}

fn scanner(id: &str) -> Option<DeviceId> {
    DeviceId::from_username(id)
}

/// A message for the station's scanner that answers no event of its own.
pub fn notice(ok: bool, text: String) -> Downlink<String> {
    Downlink::Feedback(Feedback {
        v: VERSION,
        re: None,
        ok,
        beep: if ok { Beep::Ok } else { Beep::Error },
        text: firmware_bridge::proto::json::fit_text(text),
        next: None,
    })
}

fn get(txn: &WriteTransaction, shop: &str, package: &str) -> Result<Option<LabelJob>, StoreError> {
    store::get::<(&str, &str), LabelJob>(txn, LABELS, (shop, package))
}

fn put(txn: &WriteTransaction, shop: &str, job: &LabelJob) -> Result<(), StoreError> {
    store::put::<(&str, &str), LabelJob>(txn, LABELS, (shop, job.package.as_str()), job)
}

/// Queues the label of `package` (its trades `tids`) for `station`, in the pack's
/// transaction; a label asked for again (a reprint from the station) starts over.
pub fn queue(
    txn: &WriteTransaction,
    shop: &str,
    package: &str,
    tids: Vec<u64>,
    station: &Station,
    now_ms: u64,
) -> Result<(), StoreError> {
    let old = get(txn, shop, package)?;
    let job = LabelJob {
        package: package.to_owned(),
        tids,
        station: format!("scanner/{}", station.scanner),
        printer: format!("printer/{}", station.printer),
        format: station.format,
        state: LabelState::Waiting,
        job_id: old.as_ref().and_then(|o| o.job_id.clone()),
        waybill_code: old.and_then(|o| o.waybill_code),
        tries: 0,
        at_ms: now_ms,
        error: None,
    };
    put(txn, shop, &job)
}

/// Label jobs due now: waiting and due, or sent and not answered within `timeout`.
pub fn due(
    txn: &WriteTransaction,
    shop: &str,
    now_ms: u64,
    timeout: Duration,
) -> Result<Vec<LabelJob>, StoreError> {
    let t = txn.open_table(LABELS)?;
    let hi = String::from(char::MAX).repeat(4);
    let wait = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let mut out = Vec::new();
    for row in t.range((shop, "")..=(shop, hi.as_str()))? {
        let (k, v) = row?;
        let Ok(job) = store::decode::<(&str, &str), LabelJob>(LABELS, &k.value(), v.value()) else {
            continue;
        };
        let is_due = match job.state {
            LabelState::Waiting => job.at_ms <= now_ms,
            LabelState::Sent => job.at_ms.saturating_add(wait) <= now_ms,
            LabelState::Printed | LabelState::Failed => false,
        };
        if is_due {
            out.push(job);
        }
    }
    Ok(out)
}

/// Whether any label job is waiting or sent (the labeller looks at the table only then).
pub fn any_open(txn: &redb::ReadTransaction, shop: &str) -> Result<bool, StoreError> {
    let Some(t) = crate::wms::tables::read_table(txn, LABELS)? else {
        return Ok(false);
    };
    let hi = String::from(char::MAX).repeat(4);
    for row in t.range((shop, "")..=(shop, hi.as_str()))? {
        let (k, v) = row?;
        if let Ok(job) = store::decode::<(&str, &str), LabelJob>(LABELS, &k.value(), v.value())
            && matches!(job.state, LabelState::Waiting | LabelState::Sent)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The `print` command for `label` in `format`.
pub fn print_command(label: &Label, format: LabelFormat, tids: &[u64]) -> Print<String> {
    match format {
        LabelFormat::Cainiao => Print {
            v: VERSION,
            job_id: label.job.job_id.clone(),
            format: PrintFormat::Cainiao,
            data: label.job.data.clone(),
            template_url: Some(label.job.template_url.clone()),
        },
        LabelFormat::Zpl => Print {
            v: VERSION,
            job_id: label.job.job_id.clone(),
            format: PrintFormat::Zpl,
            data: zpl(&label.waybill_code, &label.carrier, tids),
            template_url: None,
        },
    }
}

/// A carton label: the carrier, the tracking number as a Code 128 barcode (what the dock
/// scans) and in text, the trades. Only characters ZPL prints as they are.
pub fn zpl(waybill_code: &str, carrier: &str, tids: &[u64]) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(40)
            .collect()
    };
    let code = clean(waybill_code);
    let trades = tids
        .iter()
        .take(6)
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "^XA^CI28\n^FO40,30^A0N,40,40^FD{}^FS\n^FO40,90^BY3^BCN,120,Y,N,N^FD{code}^FS\n\
         ^FO40,260^A0N,28,28^FDorder {trades}^FS\n^XZ\n",
        clean(carrier)
    )
}

/// The print went out as `job_id` (after the commit of this).
pub fn sent(
    txn: &WriteTransaction,
    shop: &str,
    package: &str,
    label: &Label,
    now_ms: u64,
) -> Result<Option<LabelJob>, StoreError> {
    let Some(mut job) = get(txn, shop, package)? else {
        return Ok(None);
    };
    job.state = LabelState::Sent;
    job.job_id = Some(label.job.job_id.clone());
    job.waybill_code = Some(label.waybill_code.clone());
    job.tries = job.tries.saturating_add(1);
    job.at_ms = now_ms;
    job.error = None;
    put(txn, shop, &job)?;
    Ok(Some(job))
}

/// Why a label failed: kept with the job (in English, a record) and told to the station
/// (in the floor's language).
#[derive(Debug, Clone)]
pub enum Why {
    /// Goods out refused the waybill (its words).
    Refused(String),
    /// The printer answered `error` (its words).
    PrinterSays {
        /// The printer's id.
        printer: String,
        /// What it said.
        error: String,
    },
    /// The printer did not answer `tries` prints.
    PrinterSilent {
        /// The printer's id.
        printer: String,
        /// Prints sent.
        tries: u32,
    },
}

impl Why {
    /// In `lang`.
    pub fn say(&self, lang: Lang) -> String {
        match self {
            Why::Refused(why) => why.clone(),
            Why::PrinterSays { printer, error } => lang.f(Msg::FlPrinterSays, &[printer, error]),
            Why::PrinterSilent { printer, tries } => {
                lang.f(Msg::FlPrinterSilent, &[printer, tries])
            }
        }
    }
}

/// The label failed for a reason a person must look at: the station is told, in `lang`.
pub fn failed(
    txn: &WriteTransaction,
    shop: &str,
    package: &str,
    why: &Why,
    lang: Lang,
) -> Result<Commands, StoreError> {
    let Some(mut job) = get(txn, shop, package)? else {
        return Ok(Vec::new());
    };
    job.state = LabelState::Failed;
    job.error = Some(why.say(Lang::En));
    put(txn, shop, &job)?;
    metrics::counter!("wms_node_floor_labels_total", "result" => "failed").increment(1);
    let tid = job.tids.first().copied().unwrap_or_default();
    let text = lang.f(Msg::FlNoLabel, &[&tid, &why.say(lang)]);
    Ok(scanner(&job.station)
        .map(|d| vec![(d, notice(false, text))])
        .unwrap_or_default())
}

/// Not now (no answer from Cainiao): asked again after `retry`.
pub fn later(
    txn: &WriteTransaction,
    shop: &str,
    package: &str,
    retry_at_ms: u64,
) -> Result<(), StoreError> {
    if let Some(mut job) = get(txn, shop, package)? {
        job.at_ms = retry_at_ms;
        put(txn, shop, &job)?;
    }
    Ok(())
}

/// A printer's `print_result` for job `re`: printed → the orders are labelled and the
/// station told to take the parcel to the dock; error → the station is told the printer's
/// words, in `lang`. A result for a job the node does not know is ignored (logged).
#[allow(clippy::too_many_arguments)]
pub fn result(
    txn: &WriteTransaction,
    shop: &ShopId,
    printer: &DeviceId,
    re: &str,
    status: PrintStatus,
    error: Option<&str>,
    now_ms: u64,
    lang: Lang,
) -> Result<(Commands, Vec<wms::Event>), StoreError> {
    // Job ids are `<package>-<n>`.
    let Some((package, _)) = re.rsplit_once('-') else {
        tracing::warn!(printer = %printer, job = re, "print result for a job this node never sent");
        return Ok((Vec::new(), Vec::new()));
    };
    let Some(mut job) = get(txn, shop.as_str(), package)? else {
        tracing::warn!(printer = %printer, job = re, "print result for a job this node never sent");
        return Ok((Vec::new(), Vec::new()));
    };
    let station = scanner(&job.station);
    let tid = job.tids.first().copied().unwrap_or_default();
    match status {
        PrintStatus::Printed => {
            let first = job.state != LabelState::Printed;
            job.state = LabelState::Printed;
            job.error = None;
            put(txn, shop.as_str(), &job)?;
            let mut w = Wms::new(txn, shop, when(now_ms));
            for t in &job.tids {
                let state = wms::orders::read_order(txn, shop, *t)?.map(|o| o.state);
                if state.is_some_and(|s| {
                    s != LocalState::Labelled && s.may_move_to(LocalState::Labelled)
                }) && let Err(WmsError::Store(e)) = w.move_to(*t, LocalState::Labelled)
                {
                    return Err(e);
                }
            }
            let events = w.finish()?;
            if !first {
                return Ok((Vec::new(), events));
            }
            metrics::counter!("wms_node_floor_labels_total", "result" => "printed").increment(1);
            let waybill = job.waybill_code.as_deref().unwrap_or("");
            let text = lang.f(Msg::FlLabelPrinted, &[&tid, &waybill]);
            let cmds = station
                .map(|d| vec![(d, notice(true, text))])
                .unwrap_or_default();
            Ok((cmds, events))
        }
        PrintStatus::Error => {
            if job.state == LabelState::Printed {
                return Ok((Vec::new(), Vec::new()));
            }
            let why = Why::PrinterSays {
                printer: job.printer.trim_start_matches("printer/").to_owned(),
                error: error.unwrap_or("error").to_owned(),
            };
            let cmds = failed(txn, shop.as_str(), package, &why, lang)?;
            Ok((cmds, Vec::new()))
        }
    }
}

fn when(now_ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(now_ms).unwrap_or(i64::MAX)).unwrap_or_default()
}

/// Runs the label jobs until `token` is cancelled: woken by `wake` (a pack committed) and
/// every second; what it sends goes to `publish`, the stations' texts in `lang`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    store: Store,
    shop: ShopId,
    source: std::sync::Arc<dyn LabelSource>,
    timeout: Duration,
    lang: Lang,
    wake: std::sync::Arc<tokio::sync::Notify>,
    publish: impl Fn(Commands) + Send + Sync + 'static,
    token: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            // Shutdown.
            _ = token.cancelled() => return,
            // A pack was committed.
            _ = wake.notified() => {}
            // Timeouts and retries.
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let s = shop.clone();
        match store.read(move |r| any_open(r, s.as_str())) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the label jobs");
                continue;
            }
        }
        if let Err(e) = step(&store, &shop, source.as_ref(), timeout, lang, &publish).await {
            tracing::warn!(error = %e, "label jobs: store failed; trying again");
        }
    }
}

/// One pass over the due label jobs.
pub async fn step(
    store: &Store,
    shop: &ShopId,
    source: &dyn LabelSource,
    timeout: Duration,
    lang: Lang,
    publish: &(impl Fn(Commands) + Send + Sync),
) -> Result<(), StoreError> {
    let now = store::now_ms();
    let s = shop.clone();
    let jobs = store
        .write(move |txn| due(txn, s.as_str(), now, timeout))
        .await?;
    for job in jobs {
        let s = shop.clone();
        let package = job.package.clone();
        if job.state == LabelState::Sent && job.tries >= MAX_TRIES {
            let why = Why::PrinterSilent {
                printer: job.printer.trim_start_matches("printer/").to_owned(),
                tries: job.tries,
            };
            let cmds = store
                .write(move |txn| failed(txn, s.as_str(), &package, &why, lang))
                .await?;
            publish(cmds);
            continue;
        }
        let Some(tid) = job.tids.first().copied() else {
            continue;
        };
        match source.label(tid).await {
            Ok(label) => {
                let reprint = job.state == LabelState::Sent;
                let l = label.clone();
                let updated = store
                    .write(move |txn| sent(txn, s.as_str(), &package, &l, store::now_ms()))
                    .await?;
                let Some(updated) = updated else { continue };
                let Some(printer) = DeviceId::from_username(&updated.printer) else {
                    continue;
                };
                let mut cmds = vec![(
                    printer,
                    Downlink::Print(print_command(&label, updated.format, &updated.tids)),
                )];
                if reprint && let Some(st) = scanner(&updated.station) {
                    cmds.push((
                        st,
                        notice(
                            false,
                            lang.f(
                                Msg::FlLabelSentAgain,
                                &[&updated.printer.trim_start_matches("printer/"), &tid],
                            ),
                        ),
                    ));
                }
                metrics::counter!("wms_node_floor_labels_total", "result" => if reprint { "reprint" } else { "sent" }).increment(1);
                publish(cmds);
            }
            Err(LabelError::Refused(why)) => {
                let why = Why::Refused(why);
                let cmds = store
                    .write(move |txn| failed(txn, s.as_str(), &package, &why, lang))
                    .await?;
                publish(cmds);
            }
            Err(LabelError::Later(why)) => {
                tracing::info!(package = %job.package, reason = %why, "no waybill yet; asking again");
                let at = store::now_ms().saturating_add(5_000);
                store
                    .write(move |txn| later(txn, s.as_str(), &package, at))
                    .await?;
            }
        }
    }
    Ok(())
}
