//! Packages, e-waybills and shipments (DOMAIN.md §4, §7, §8, §9): what leaves the building
//! and what Taobao is told about it.
//!
//! ```text
//!   order(s) ──package()──▶ Package {lines, waybill?, shipped?}
//!                 │              │ waybill_request(): ask Cainiao (or look up after a timeout)
//!                 │              │ store_waybill():   code + print data, before anything prints
//!                 │              ▼
//!                 └───────── ship(): the ship scan / `wms-node ship`
//!                              hold? carrier + reg_mail_no? lines open? waybill free?
//!                              → lines shipped, orders handed over, stock out,
//!                                one Ship op per trade, all in one transaction
//! ```
//!
//! **Split** (§4): a package holds whole lines (one oid = one tracking number). A package
//! that holds some of a trade's remaining lines ships as `is_split=1` with exactly its oids;
//! the one that holds all of them ships the trade. **Merge** (§4): when the shop allows it
//! (`Rules::merge_orders`), a trade's first package takes every other released trade with the
//! same OAID that is free to go (same buyer, same address: same shop, `WAIT_SELLER_SEND_GOODS`,
//! no hold, nothing shipped, no package yet); the package lists all their tids, gets one
//! waybill, and ships as one `Ship` op per tid with the same number. A member that is held, or
//! whose OAID changes, before the package ships leaves it (un-merge); a waybill already issued
//! for it is voided and cancelled through the outbox, and the rest gets a new one. The
//! package's log says who joined and left.
//!
//! **E-waybills** (§7): one `cainiao.waybill.ii.get` per package, with the package id as
//! `object_id` and `package_info.id`. Before asking, the package records that it asked
//! (`requested_ms`): if the answer is lost, the next attempt looks the number up by trade code
//! before asking again. The number and its print data are kept with the package before
//! anything prints; a reprint reuses them. A voided number is cancelled
//! (`cainiao.waybill.ii.cancel`) through the outbox.

use super::carriers;
use super::order::{LocalState, OrderRecord};
use super::order_ship::{self, OrderShip};
use super::orders::Wms;
use super::tables::{self, OrderKey};
use super::{Event, WmsError};
use crate::outbox::Outbox;
use crate::store::{self, StoreError};
use crate::taobao::outbox::TaobaoOp;
use crate::taobao::types::TradeStatus;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A package's log entry of a trade leaving it: `trade {tid} left: {why}`.
const LEFT_PREFIX: &str = "trade ";
const LEFT_SUFFIX: &str = " left: ";

/// Most orders one merged package may carry (`trade_order_list` ≤ 100).
pub const MAX_MERGED: usize = 100;

/// Most lines of one trade in a split shipment (`sub_tid` ≤ 50).
pub const MAX_SPLIT_LINES: usize = 50;

/// One line in a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PackageLine {
    /// Trade.
    pub tid: u64,
    /// Line.
    pub oid: u64,
}

/// An e-waybill issued for a package.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaybillRecord {
    /// The carrier asked for.
    pub cp_code: String,
    /// The carrier that carries it (differs for virtual carriers): the shipment's
    /// `company_code`.
    pub real_cp_code: String,
    /// The tracking number: the shipment's `out_sid`.
    pub waybill_code: String,
    /// Multi-piece master number, if any.
    pub parent_waybill_code: Option<String>,
    /// Opaque print data (maybe encrypted): passed to the printer, never parsed or logged.
    pub print_data: String,
    /// The template it prints with.
    pub template_url: String,
    /// When issued (epoch ms).
    pub issued_ms: i64,
    /// When voided (epoch ms); a voided number is cancelled and never used.
    pub voided_ms: Option<i64>,
}

impl std::fmt::Debug for WaybillRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaybillRecord")
            .field("cp_code", &self.cp_code)
            .field("real_cp_code", &self.real_cp_code)
            .field("waybill_code", &self.waybill_code)
            .field("print_data_bytes", &self.print_data.len())
            .field("issued_ms", &self.issued_ms)
            .field("voided_ms", &self.voided_ms)
            .finish()
    }
}

/// How a package left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedRecord {
    /// Carrier code.
    pub company_code: String,
    /// Tracking number.
    pub out_sid: String,
    /// When it went through the ship scan (epoch ms).
    pub at_ms: i64,
}

/// One entry of a package's log (ids and words only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When (epoch ms).
    pub at_ms: i64,
    /// What happened.
    pub what: String,
}

/// A parcel: the lines it holds, its waybill, how it left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Unique id: the `object_id` and `package_info.id` of its waybill request.
    pub id: String,
    /// Its lines.
    pub lines: Vec<PackageLine>,
    /// Several trades share it.
    pub merged: bool,
    /// When made (epoch ms).
    pub created_ms: i64,
    /// Its e-waybill.
    pub waybill: Option<WaybillRecord>,
    /// A waybill was asked for and the answer did not arrive (epoch ms of the request).
    pub requested_ms: Option<i64>,
    /// Print jobs made of its waybill.
    pub prints: u32,
    /// How it left.
    pub shipped: Option<ShippedRecord>,
    /// Dissolved (un-merged, or its order closed) before it shipped (epoch ms).
    pub dissolved_ms: Option<i64>,
    /// Who joined and left, waybills voided.
    pub log: Vec<LogEntry>,
}

impl Package {
    /// A package of `lines` made at `now_ms`: no waybill asked for, not printed, not gone.
    fn new(id: String, lines: Vec<PackageLine>, merged: bool, now_ms: i64) -> Package {
        Package {
            id,
            lines,
            merged,
            created_ms: now_ms,
            waybill: None,
            requested_ms: None,
            prints: 0,
            shipped: None,
            dissolved_ms: None,
            log: Vec::new(),
        }
    }

    /// Its trades, ascending.
    pub fn tids(&self) -> Vec<u64> {
        let s: BTreeSet<u64> = self.lines.iter().map(|l| l.tid).collect();
        s.into_iter().collect()
    }

    /// The lines of `tid`.
    pub fn oids_of(&self, tid: u64) -> Vec<u64> {
        self.lines
            .iter()
            .filter(|l| l.tid == tid)
            .map(|l| l.oid)
            .collect()
    }

    /// Neither shipped nor dissolved.
    pub fn is_live(&self) -> bool {
        self.shipped.is_none() && self.dissolved_ms.is_none()
    }

    /// The trades that left it (un-merged: held, closed, re-addressed), from its log.
    pub fn left_trades(&self) -> Vec<u64> {
        self.log
            .iter()
            .filter_map(|e| {
                let rest = e.what.strip_prefix(LEFT_PREFIX)?;
                rest.split_once(LEFT_SUFFIX)?.0.parse().ok()
            })
            .collect()
    }

    /// Its waybill if issued and not voided.
    pub fn live_waybill(&self) -> Option<&WaybillRecord> {
        self.waybill.as_ref().filter(|w| w.voided_ms.is_none())
    }
}

/// A print job for the floor: `print` of format `cainiao` for a station running the Cainiao
/// print component (DOMAIN.md §7). `data` is the waybill's print data, untouched.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintJob {
    /// Unique per print (`<package>-<n>`): a reprint is a new job of the same waybill.
    pub job_id: String,
    /// Always `cainiao`.
    pub format: String,
    /// The print data.
    pub data: String,
    /// The template.
    pub template_url: String,
}

impl std::fmt::Debug for PrintJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrintJob")
            .field("job_id", &self.job_id)
            .field("format", &self.format)
            .field("data_bytes", &self.data.len())
            .field("template_url", &self.template_url)
            .finish()
    }
}

/// What `waybill get` needs to do for a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaybillPlan {
    /// It has one: reprint it.
    Have(Package),
    /// Ask Cainiao (recorded as asked); `lookup_first`: an earlier request's answer was lost,
    /// look it up by trade code before asking again.
    Ask {
        /// The package (its lines, trades).
        package: Package,
        /// Its trades' OAID (one: a package never mixes receivers).
        oaid: String,
        /// `(name, count)` of its goods.
        items: Vec<(String, i64)>,
        /// Look up first.
        lookup_first: bool,
    },
}

/// A shipment to make (the ship scan, `wms-node ship`). Ids are strings in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipRequest {
    /// The trade scanned.
    #[serde(with = "id_string")]
    pub tid: u64,
    /// Carrier code (`YTO`, …).
    pub company_code: String,
    /// The waybill number.
    pub out_sid: String,
    /// The lines in the parcel; empty: the trade's package (all its remaining lines, or the
    /// package it is in).
    #[serde(default, with = "ids_string")]
    pub oids: Vec<u64>,
}

/// One `Ship` op made by a shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipOp {
    /// Trade (a string in JSON).
    #[serde(with = "id_string")]
    pub tid: u64,
    /// Lines of a split shipment; empty: the whole trade (ids as strings in JSON).
    #[serde(with = "ids_string")]
    pub oids: Vec<u64>,
    /// Carrier.
    pub company_code: String,
    /// Waybill number.
    pub out_sid: String,
    /// The op's seq in the outbox.
    pub seq: u64,
}

/// What a shipment did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    /// The package that left.
    pub package: String,
    /// One op per trade.
    pub ops: Vec<ShipOp>,
}

mod id_string {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

mod ids_string {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(u64::to_string))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|x| x.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

/// A package by id.
pub fn package(
    txn: &impl store::ReadTxn,
    shop: &str,
    id: &str,
) -> Result<Option<Package>, StoreError> {
    tables::get_named(txn, tables::PACKAGES, shop, id)
}

/// The packages of a trade, in order.
pub fn packages_of(
    txn: &impl store::ReadTxn,
    shop: &str,
    tid: u64,
) -> Result<Vec<Package>, StoreError> {
    let mut out = Vec::new();
    for id in order_ship::load(txn, shop, tid)?.packages {
        if let Some(p) = package(txn, shop, &id)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// The package whose live waybill is `out_sid` (the number a dock scanner reads off the
/// label; the carrier is the package's), if this node issued or recorded it. Looks through
/// the shop's waybill index: a few thousand numbers at most between clean-ups.
pub fn package_of_waybill(
    txn: &redb::WriteTransaction,
    shop: &str,
    out_sid: &str,
) -> Result<Option<Package>, StoreError> {
    find_waybill(txn, shop, out_sid, true)
}

/// The package that used waybill `out_sid`, voided or not (why a scanned label is void).
pub fn package_of_any_waybill(
    txn: &redb::WriteTransaction,
    shop: &str,
    out_sid: &str,
) -> Result<Option<Package>, StoreError> {
    find_waybill(txn, shop, out_sid, false)
}

fn find_waybill(
    txn: &redb::WriteTransaction,
    shop: &str,
    out_sid: &str,
    live: bool,
) -> Result<Option<Package>, StoreError> {
    let out_sid = out_sid.trim();
    if out_sid.is_empty() {
        return Ok(None);
    }
    let t = txn.open_table(tables::WAYBILLS)?;
    let hi = String::from(char::MAX).repeat(4);
    let suffix = format!(":{out_sid}");
    for row in t.range((shop, "")..=(shop, hi.as_str()))? {
        let (k, v) = row?;
        let (_, key) = k.value();
        if !key.ends_with(&suffix) {
            continue;
        }
        let Ok(id) =
            store::decode::<tables::NameKey, String>(tables::WAYBILLS, &k.value(), v.value())
        else {
            continue;
        };
        let Some(p) = package(txn, shop, &id)? else {
            continue;
        };
        let w = if live {
            p.live_waybill()
        } else {
            p.waybill.as_ref()
        };
        if w.is_some_and(|w| w.waybill_code == out_sid) {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// Whether a trade's local state lets its goods leave (released, on the floor, not gone).
fn on_the_floor(s: LocalState) -> bool {
    matches!(
        s,
        LocalState::Released
            | LocalState::Picking
            | LocalState::Picked
            | LocalState::Verified
            | LocalState::Packed
            | LocalState::Weighed
            | LocalState::Labelled
    )
}

/// The lines of `o` still to ship: not closed or refunded, not shipped on the platform, not
/// through the ship scan here.
fn open_lines(o: &OrderRecord, os: &OrderShip) -> Vec<u64> {
    o.lines
        .iter()
        .filter(|l| !l.is_closed() && !l.is_shipped() && !os.shipped.contains(&l.oid))
        .map(|l| l.oid)
        .collect()
}

pub(crate) fn held_text(o: &OrderRecord) -> String {
    o.holds
        .iter()
        .map(|h| {
            if h.detail.is_empty() {
                h.reason.as_str().to_owned()
            } else {
                format!("{}: {}", h.reason.as_str(), h.detail)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Orders at risk of missing their ship-by deadline: not through the ship scan, paid, due
/// within `within_ms` of `now_ms` (or overdue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineRisk {
    /// Trade.
    pub tid: u64,
    /// Its deadline (epoch ms).
    pub ship_by_ms: i64,
    /// Where it is.
    pub state: LocalState,
    /// Whether it is held.
    pub held: bool,
}

/// Open orders due to ship within `within_ms` (overdue ones too), soonest first.
pub fn deadline_risks(
    txn: &redb::ReadTransaction,
    shop: &str,
    now_ms: i64,
    within_ms: i64,
) -> Result<Vec<DeadlineRisk>, StoreError> {
    let Some(open) = tables::read_table(txn, tables::OPEN)? else {
        return Ok(Vec::new());
    };
    let tids = tables::open_tids(&open, shop)?;
    let mut out = Vec::new();
    for tid in tids {
        let Ok(Some(o)) = store::get::<OrderKey, OrderRecord>(txn, tables::ORDERS, (shop, tid))
        else {
            continue;
        };
        let Some(by) = o.ship_by_ms else { continue };
        let paid = matches!(
            o.taobao_status,
            TradeStatus::PaidForbidConsign
                | TradeStatus::WaitSellerSendGoods
                | TradeStatus::SellerConsignedPart
        );
        if !paid || o.state.gone() || o.state.is_final() || o.state == LocalState::PutBack {
            continue;
        }
        if by - now_ms <= within_ms {
            out.push(DeadlineRisk {
                tid,
                ship_by_ms: by,
                state: o.state,
                held: o.is_held(),
            });
        }
    }
    out.sort_by_key(|r| r.ship_by_ms);
    Ok(out)
}

/// A trade with lines through the ship scan that Taobao has not confirmed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Awaiting {
    /// Trade.
    pub tid: u64,
    /// Its ship-by deadline (epoch ms).
    pub ship_by_ms: Option<i64>,
    /// When its first unconfirmed parcel went through the ship scan (epoch ms).
    pub shipped_ms: Option<i64>,
}

/// Trades with lines through the ship scan whose `Ship` op Taobao has not confirmed yet.
pub fn awaiting_consign(
    txn: &redb::ReadTransaction,
    shop: &str,
) -> Result<Vec<Awaiting>, StoreError> {
    let Some(open) = tables::read_table(txn, tables::OPEN)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for tid in tables::open_tids(&open, shop)? {
        let Ok(Some(o)) = store::get::<OrderKey, OrderRecord>(txn, tables::ORDERS, (shop, tid))
        else {
            continue;
        };
        let os = order_ship::load(txn, shop, tid)?;
        let pending: Vec<u64> = os
            .shipped
            .iter()
            .filter(|oid| !os.consigned.contains(oid))
            .copied()
            .collect();
        if pending.is_empty() {
            continue;
        }
        let at = os
            .packages
            .iter()
            .filter_map(|id| package(txn, shop, id).ok().flatten())
            .filter_map(|p| p.shipped.map(|s| s.at_ms))
            .min();
        out.push(Awaiting {
            tid,
            ship_by_ms: o.ship_by_ms,
            shipped_ms: at,
        });
    }
    Ok(out)
}

/// Packages with a live waybill that have not shipped, issued before `before_ms`.
pub fn unused_waybills(
    txn: &redb::ReadTransaction,
    shop: &str,
    before_ms: i64,
) -> Result<Vec<Package>, StoreError> {
    let Some(t) = tables::read_table(txn, tables::PACKAGES)? else {
        return Ok(Vec::new());
    };
    let all: Vec<Package> = tables::scan_named(&t, tables::PACKAGES, shop)?;
    Ok(all
        .into_iter()
        .filter(|p| p.is_live() && p.live_waybill().is_some_and(|w| w.issued_ms < before_ms))
        .collect())
}

/// Takes the packages whose waybills are to be cancelled (`cainiao.waybill.ii.cancel`):
/// `(cp_code, waybill_code)` each, removed from the list.
pub fn take_voided(
    txn: &redb::WriteTransaction,
    shop: &str,
    limit: usize,
) -> Result<Vec<(String, String)>, StoreError> {
    let hi = String::from(char::MAX).repeat(4);
    let ids: Vec<String> = {
        let t = txn.open_table(tables::WAYBILL_VOID)?;
        let mut v = Vec::new();
        for row in t.range((shop, "")..=(shop, hi.as_str()))? {
            let (k, _) = row?;
            v.push(k.value().1.to_owned());
            if v.len() >= limit {
                break;
            }
        }
        v
    };
    let mut out = Vec::new();
    for id in ids {
        txn.open_table(tables::WAYBILL_VOID)?
            .remove((shop, id.as_str()))?;
        if let Some(w) = package(txn, shop, &id)?.and_then(|p| p.waybill) {
            out.push((w.cp_code, w.waybill_code));
        }
    }
    Ok(out)
}

fn waybill_key(cp: &str, code: &str) -> String {
    format!("{cp}:{code}")
}

impl Wms<'_> {
    fn save_ship(&self, tid: u64, os: &OrderShip) -> Result<(), StoreError> {
        order_ship::save(self.txn, &self.shop, tid, os)
    }

    fn save_package(&self, p: &Package) -> Result<(), StoreError> {
        tables::put_named(self.txn, tables::PACKAGES, &self.shop, &p.id, p)
    }

    fn log(&self, p: &mut Package, what: String) {
        p.log.push(LogEntry {
            at_ms: self.now_ms,
            what,
        });
    }

    /// A new package id for `tid`: `P<tid>-<n>`.
    fn new_package_id(&self, tid: u64, os: &OrderShip) -> Result<String, StoreError> {
        let mut n = os.packages.len() + 1;
        loop {
            let id = format!("P{tid}-{n}");
            if package(self.txn, &self.shop, &id)?.is_none() {
                return Ok(id);
            }
            n += 1;
        }
    }

    /// Checks that `o` may have a package made now.
    fn packable(&self, o: &OrderRecord) -> Result<(), WmsError> {
        if o.is_held() {
            return Err(WmsError::Refused(format!(
                "order {} is held ({}): STOP",
                o.tid,
                held_text(o)
            )));
        }
        if !on_the_floor(o.state) {
            return Err(WmsError::Refused(format!(
                "order {} is {}: {}",
                o.tid,
                o.state,
                match o.state {
                    LocalState::New => "not released to the floor",
                    LocalState::HandedOver | LocalState::Consigned => "it has shipped",
                    _ => "nothing to ship",
                }
            )));
        }
        if !matches!(
            o.taobao_status,
            TradeStatus::WaitSellerSendGoods | TradeStatus::SellerConsignedPart
        ) {
            return Err(WmsError::Refused(format!(
                "order {} is {} on Taobao: it may not ship",
                o.tid,
                o.taobao_status.as_str()
            )));
        }
        Ok(())
    }

    /// Other released trades with the same OAID that may share `o`'s first package.
    fn merge_candidates(&self, o: &OrderRecord) -> Result<Vec<OrderRecord>, StoreError> {
        let Some(oaid) = o.oaid.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(Vec::new());
        };
        let tids = {
            let t = self.txn.open_table(tables::OPEN)?;
            tables::open_tids(&t, &self.shop)?
        };
        let mut out = Vec::new();
        for tid in tids {
            if tid == o.tid {
                continue;
            }
            let Ok(Some(m)) = self.get(tid) else { continue };
            if m.oaid.as_deref() != Some(oaid)
                || m.is_held()
                || !on_the_floor(m.state)
                || m.state == LocalState::Labelled
                || m.taobao_status != TradeStatus::WaitSellerSendGoods
            {
                continue;
            }
            let os = order_ship::load(self.txn, &self.shop, tid)?;
            let live = os
                .packages
                .iter()
                .filter_map(|id| package(self.txn, &self.shop, id).ok().flatten())
                .any(|p| p.is_live() || p.shipped.is_some());
            if live || !os.shipped.is_empty() {
                continue;
            }
            out.push(m);
            if out.len() + 1 >= MAX_MERGED {
                break;
            }
        }
        Ok(out)
    }

    /// The package of `tid` to label or ship: the `n`-th (1-based), a new one of exactly
    /// `oids`, or (neither) its first live package, made now if it has none (merged with
    /// other trades of the same receiver when `merge`).
    pub fn package(
        &mut self,
        tid: u64,
        n: Option<u32>,
        oids: &[u64],
        merge: bool,
    ) -> Result<Package, WmsError> {
        let o = self.get(tid)?.ok_or(WmsError::NoOrder(tid))?;
        let mut os = order_ship::load(self.txn, &self.shop, tid)?;
        if let Some(n) = n {
            let id = os
                .packages
                .get((n as usize).wrapping_sub(1))
                .ok_or_else(|| {
                    WmsError::Refused(format!(
                        "order {tid} has {} package(s); there is no package {n}",
                        os.packages.len()
                    ))
                })?
                .clone();
            let p = package(self.txn, &self.shop, &id)?
                .ok_or_else(|| WmsError::Refused(format!("package {id} is missing")))?;
            return Ok(p);
        }
        let open = open_lines(&o, &os);
        if !oids.is_empty() {
            let mut want: Vec<u64> = oids.to_vec();
            want.sort_unstable();
            want.dedup();
            for oid in &want {
                if !o.lines.iter().any(|l| l.oid == *oid) {
                    return Err(WmsError::Refused(format!(
                        "line {oid} is not a line of order {tid}"
                    )));
                }
                if !open.contains(oid) {
                    return Err(WmsError::Refused(format!(
                        "line {oid} of order {tid} has shipped or was refunded"
                    )));
                }
            }
            if want.len() > MAX_SPLIT_LINES {
                return Err(WmsError::Refused(format!(
                    "a split parcel holds at most {MAX_SPLIT_LINES} lines"
                )));
            }
            // The same lines as a live package of its own: that one.
            for id in &os.packages {
                if let Some(p) = package(self.txn, &self.shop, id)?
                    && p.is_live()
                    && !p.merged
                    && p.oids_of(tid) == want
                {
                    return Ok(p);
                }
            }
            self.packable(&o)?;
            // Lines move out of live packages that have no waybill yet; a labelled one keeps
            // them (void it first).
            for id in os.packages.clone() {
                let Some(mut p) = package(self.txn, &self.shop, &id)? else {
                    continue;
                };
                if !p.is_live() || !p.lines.iter().any(|l| want.contains(&l.oid)) {
                    continue;
                }
                if let Some(w) = p.live_waybill() {
                    return Err(WmsError::Refused(format!(
                        "lines of order {tid} are on package {} with waybill {}: ship that \
                         package, or void its waybill first",
                        p.id, w.waybill_code
                    )));
                }
                p.lines.retain(|l| !want.contains(&l.oid));
                if p.lines.is_empty() {
                    p.dissolved_ms = Some(self.now_ms);
                }
                let what = format!("lines {want:?} moved to a split package");
                self.log(&mut p, what);
                self.save_package(&p)?;
            }
            let id = self.new_package_id(tid, &os)?;
            let lines = want
                .iter()
                .map(|oid| PackageLine { tid, oid: *oid })
                .collect();
            let p = Package::new(id.clone(), lines, false, self.now_ms);
            self.save_package(&p)?;
            os.packages.push(id);
            self.save_ship(tid, &os)?;
            return Ok(p);
        }
        for id in &os.packages {
            if let Some(p) = package(self.txn, &self.shop, id)?
                && p.is_live()
            {
                return Ok(p);
            }
        }
        self.packable(&o)?;
        // Lines not in a live package.
        if open.is_empty() {
            return Err(WmsError::Refused(format!(
                "order {tid} has no line left to ship"
            )));
        }
        if open.len() > MAX_SPLIT_LINES && !os.shipped.is_empty() {
            return Err(WmsError::Refused(format!(
                "order {tid}: at most {MAX_SPLIT_LINES} lines per split parcel; give --oids"
            )));
        }
        let mut lines: Vec<PackageLine> = open
            .iter()
            .map(|oid| PackageLine { tid, oid: *oid })
            .collect();
        let mut members = Vec::new();
        if merge && os.shipped.is_empty() && o.taobao_status == TradeStatus::WaitSellerSendGoods {
            members = self.merge_candidates(&o)?;
        }
        let id = self.new_package_id(tid, &os)?;
        let mut p = Package::new(id.clone(), Vec::new(), !members.is_empty(), self.now_ms);
        for m in &members {
            let mos = order_ship::load(self.txn, &self.shop, m.tid)?;
            let mopen = open_lines(m, &mos);
            if mopen.is_empty() {
                continue;
            }
            lines.extend(mopen.iter().map(|oid| PackageLine {
                tid: m.tid,
                oid: *oid,
            }));
            let mut mos = mos;
            mos.packages.push(id.clone());
            self.save_ship(m.tid, &mos)?;
            let what = format!("trade {} joined (same receiver as trade {tid})", m.tid);
            self.log(&mut p, what);
            self.events.push(Event::Merged {
                tid: m.tid,
                package: id.clone(),
            });
        }
        lines.sort();
        p.lines = lines;
        if p.merged {
            self.events.push(Event::Merged {
                tid,
                package: id.clone(),
            });
        }
        self.save_package(&p)?;
        os.packages.push(id);
        self.save_ship(tid, &os)?;
        Ok(p)
    }

    /// Takes `tid` out of its merged live package (held, closed, or a new address); `why`
    /// goes to the log. A labelled package is re-issued for the others (its waybill voided).
    /// Returns whether it was in one.
    pub fn unmerge(&mut self, tid: u64, why: &str) -> Result<bool, StoreError> {
        let mut os = order_ship::load(self.txn, &self.shop, tid)?;
        let mut changed = false;
        for id in os.packages.clone() {
            let Some(mut p) = package(self.txn, &self.shop, &id)? else {
                continue;
            };
            if !p.is_live() || !p.merged || !p.lines.iter().any(|l| l.tid == tid) {
                continue;
            }
            p.lines.retain(|l| l.tid != tid);
            let what = format!("{LEFT_PREFIX}{tid}{LEFT_SUFFIX}{why}");
            self.log(&mut p, what);
            if p.tids().len() <= 1 {
                p.merged = false;
            }
            if p.live_waybill().is_some() {
                self.reissue(p, &format!("trade {tid} left the package"))?;
            } else {
                if p.lines.is_empty() {
                    p.dissolved_ms = Some(self.now_ms);
                }
                self.save_package(&p)?;
            }
            os.packages.retain(|x| x != &id);
            changed = true;
            self.events.push(Event::Unmerged {
                tid,
                package: id.clone(),
            });
        }
        if changed {
            self.save_ship(tid, &os)?;
        }
        Ok(changed)
    }

    /// Voids the package's live waybill (it is cancelled through the outbox).
    fn void(&mut self, p: &mut Package, why: &str) -> Result<(), StoreError> {
        let Some(w) = p.waybill.as_mut().filter(|w| w.voided_ms.is_none()) else {
            return Ok(());
        };
        w.voided_ms = Some(self.now_ms);
        let code = w.waybill_code.clone();
        txn_void(self.txn, &self.shop, &p.id)?;
        self.log(p, format!("waybill {code} voided: {why}"));
        self.events.push(Event::WaybillVoided {
            package: p.id.clone(),
        });
        Ok(())
    }

    /// Voids `p`'s waybill and dissolves it; its lines (if any) move to a new package with a
    /// new id, so the next request gets a new number (Cainiao answers a package id it knows
    /// with the number it issued). Returns the new package.
    fn reissue(&mut self, mut p: Package, why: &str) -> Result<Option<Package>, StoreError> {
        self.void(&mut p, why)?;
        p.dissolved_ms = Some(self.now_ms);
        let mut next = None;
        if let Some(first) = p.tids().first().copied() {
            let os = order_ship::load(self.txn, &self.shop, first)?;
            let id = self.new_package_id(first, &os)?;
            let mut n = Package {
                log: p.log.clone(),
                ..Package::new(id.clone(), p.lines.clone(), p.tids().len() > 1, self.now_ms)
            };
            self.log(&mut n, format!("follows package {} ({why})", p.id));
            for t in n.tids() {
                let mut mos = order_ship::load(self.txn, &self.shop, t)?;
                for x in mos.packages.iter_mut() {
                    if *x == p.id {
                        *x = id.clone();
                    }
                }
                if !mos.packages.contains(&id) {
                    mos.packages.push(id.clone());
                }
                self.save_ship(t, &mos)?;
            }
            self.log(&mut p, format!("replaced by package {id}"));
            self.save_package(&n)?;
            next = Some(n);
        }
        self.save_package(&p)?;
        Ok(next)
    }

    /// The receiver of `tid` changed (a new OAID): it leaves a merged package, and a label of
    /// its own that has not shipped is voided (the address on it is wrong); the lines get a
    /// new package.
    pub(crate) fn readdressed(&mut self, tid: u64) -> Result<(), StoreError> {
        self.unmerge(tid, "new receiver address")?;
        for p in packages_of(self.txn, &self.shop, tid)? {
            if p.is_live() && p.live_waybill().is_some() {
                self.reissue(p, "the receiver's address changed")?;
            }
        }
        Ok(())
    }

    /// Dissolves the live packages of a trade that will not ship (closed, put back), voiding
    /// their waybills; merged packages just lose it.
    pub(crate) fn drop_packages(&mut self, tid: u64, why: &str) -> Result<(), StoreError> {
        self.unmerge(tid, why)?;
        let os = order_ship::load(self.txn, &self.shop, tid)?;
        for id in os.packages {
            let Some(mut p) = package(self.txn, &self.shop, &id)? else {
                continue;
            };
            if !p.is_live() {
                continue;
            }
            self.void(&mut p, why)?;
            p.dissolved_ms = Some(self.now_ms);
            self.save_package(&p)?;
        }
        Ok(())
    }

    /// Voids the waybill of `tid`'s package `n` (`waybill void`): the number is cancelled
    /// through the outbox, and the package's lines get a new package (and a new number at
    /// the next `waybill get`). Returns the new package.
    pub fn void_waybill(
        &mut self,
        tid: u64,
        n: Option<u32>,
        why: &str,
    ) -> Result<Package, WmsError> {
        let p = match n {
            Some(_) => self.package(tid, n, &[], false)?,
            None => packages_of(self.txn, &self.shop, tid)?
                .into_iter()
                .find(|p| p.is_live() && p.live_waybill().is_some())
                .ok_or_else(|| WmsError::Refused(format!("order {tid} has no waybill to void")))?,
        };
        if p.shipped.is_some() {
            return Err(WmsError::Refused(format!(
                "package {} has shipped: its waybill cannot be voided",
                p.id
            )));
        }
        if !p.is_live() || p.live_waybill().is_none() {
            return Err(WmsError::Refused(format!(
                "package {} has no waybill to void",
                p.id
            )));
        }
        let id = p.id.clone();
        self.reissue(p, why)?
            .ok_or_else(|| WmsError::Refused(format!("package {id} had no lines")))
    }

    /// Plans `waybill get` for `tid` (see [`WaybillPlan`]); an `Ask` is recorded as asked in
    /// this transaction, before the call.
    pub fn waybill_request(
        &mut self,
        tid: u64,
        n: Option<u32>,
        oids: &[u64],
        merge: bool,
    ) -> Result<WaybillPlan, WmsError> {
        let mut p = self.package(tid, n, oids, merge)?;
        if !p.is_live() {
            return Err(WmsError::Refused(format!(
                "package {} has {}",
                p.id,
                if p.shipped.is_some() {
                    "shipped"
                } else {
                    "been dissolved"
                }
            )));
        }
        if p.live_waybill().is_some() {
            return Ok(WaybillPlan::Have(p));
        }
        let mut oaid = None;
        let mut items: BTreeMap<String, i64> = BTreeMap::new();
        for t in p.tids() {
            let o = self.get(t)?.ok_or(WmsError::NoOrder(t))?;
            self.packable(&o)?;
            let Some(a) = o.oaid.clone().filter(|s| !s.is_empty()) else {
                return Err(WmsError::Refused(format!(
                    "order {t} has no OAID (was it read with its receiver fields?): Cainiao \
                     needs it to print the address"
                )));
            };
            match &oaid {
                None => oaid = Some(a),
                Some(x) if *x != a => {
                    return Err(WmsError::Refused(format!(
                        "package {} mixes receivers; void it and pack again",
                        p.id
                    )));
                }
                Some(_) => {}
            }
            for oid in p.oids_of(t) {
                if let Some(l) = o.lines.iter().find(|l| l.oid == oid) {
                    let name = l
                        .mapping
                        .code()
                        .map(str::to_owned)
                        .or_else(|| l.title.clone())
                        .unwrap_or_else(|| oid.to_string());
                    *items.entry(name).or_default() += i64::from(l.qty);
                }
            }
        }
        let lookup_first = p.requested_ms.is_some();
        p.requested_ms = Some(self.now_ms);
        self.save_package(&p)?;
        Ok(WaybillPlan::Ask {
            oaid: oaid.unwrap_or_default(),
            items: items.into_iter().take(100).collect(),
            lookup_first,
            package: p,
        })
    }

    /// Keeps the waybill Cainiao issued for `package` (before anything prints).
    pub fn store_waybill(
        &mut self,
        package_id: &str,
        w: WaybillRecord,
    ) -> Result<Package, WmsError> {
        let mut p = package(self.txn, &self.shop, package_id)?
            .ok_or_else(|| WmsError::Refused(format!("no package {package_id}")))?;
        if let Some(old) = p.live_waybill() {
            if old.waybill_code == w.waybill_code {
                return Ok(p);
            }
            // Two numbers for one package: keep the first, cancel the second.
            let extra = Package {
                waybill: Some(w),
                ..p.clone()
            };
            let id = format!("{}-x{}", p.id, self.now_ms);
            let mut extra = Package { id, ..extra };
            extra.dissolved_ms = Some(self.now_ms);
            self.void(&mut extra, "a second number for the same package")?;
            self.save_package(&extra)?;
            return Ok(p);
        }
        tables::put_named(
            self.txn,
            tables::WAYBILLS,
            &self.shop,
            &waybill_key(&w.real_cp_code, &w.waybill_code),
            &p.id,
        )?;
        let what = format!("waybill {} issued ({})", w.waybill_code, w.real_cp_code);
        p.waybill = Some(w);
        p.requested_ms = None;
        self.log(&mut p, what);
        self.save_package(&p)?;
        self.events.push(Event::WaybillIssued {
            package: p.id.clone(),
        });
        Ok(p)
    }

    /// The request for `package` was refused (not issued): it may be asked again at once.
    pub fn waybill_refused(&mut self, package_id: &str) -> Result<(), StoreError> {
        if let Some(mut p) = package(self.txn, &self.shop, package_id)? {
            p.requested_ms = None;
            self.save_package(&p)?;
        }
        Ok(())
    }

    /// A print job of `package`'s waybill (a new job id each time).
    pub fn print_job(&mut self, package_id: &str) -> Result<PrintJob, WmsError> {
        let mut p = package(self.txn, &self.shop, package_id)?
            .ok_or_else(|| WmsError::Refused(format!("no package {package_id}")))?;
        let w = p
            .live_waybill()
            .cloned()
            .ok_or_else(|| WmsError::Refused(format!("package {package_id} has no waybill")))?;
        p.prints += 1;
        let job = PrintJob {
            job_id: format!("{}-{}", p.id, p.prints),
            format: "cainiao".to_owned(),
            data: w.print_data,
            template_url: w.template_url,
        };
        self.save_package(&p)?;
        Ok(job)
    }

    /// Ships a parcel: the ship scan and `wms-node ship` (see the module doc). Checks the
    /// holds of every trade in it, the carrier and the waybill number against the carrier
    /// list, then, in this transaction, marks the lines shipped, moves the trades to
    /// `handed_over` when nothing is left, takes the goods off the ledger and enqueues one
    /// `Ship` op per trade.
    pub fn ship(
        &mut self,
        req: &ShipRequest,
        outbox: &Outbox<TaobaoOp>,
        merge: bool,
    ) -> Result<Shipment, WmsError> {
        let company = req.company_code.trim().to_owned();
        let out_sid = req.out_sid.trim().to_owned();
        let o = self.get(req.tid)?.ok_or(WmsError::NoOrder(req.tid))?;
        if o.is_held() {
            return Err(WmsError::Refused(format!(
                "order {} is held ({}): STOP, take it to the exception desk",
                o.tid,
                held_text(&o)
            )));
        }
        match carriers::validate(self.txn, &company, &out_sid)? {
            Ok(_) => {}
            Err(e) => return Err(WmsError::Refused(e.to_string())),
        }
        let mut p = self.package(req.tid, None, &req.oids, merge)?;
        if let Some(w) = p.live_waybill()
            && w.waybill_code != out_sid
        {
            return Err(WmsError::Refused(format!(
                "package {} has waybill {} ({}): ship it with that number, or void it \
                     first (wms-node waybill void {})",
                p.id, w.waybill_code, w.real_cp_code, req.tid
            )));
        }
        // A number belongs to one package.
        let wkey = waybill_key(&company, &out_sid);
        if let Some(owner) =
            tables::get_named::<String>(self.txn, tables::WAYBILLS, &self.shop, &wkey)?
            && owner != p.id
        {
            return Err(WmsError::Refused(format!(
                "waybill {out_sid} is already used by package {owner}"
            )));
        }
        let tids = p.tids();
        let mut orders = Vec::new();
        for t in &tids {
            let m = self.get(*t)?.ok_or(WmsError::NoOrder(*t))?;
            self.packable(&m)?;
            orders.push(m);
        }
        let mut ops = Vec::new();
        for old in orders {
            let tid = old.tid;
            let mut os = order_ship::load(self.txn, &self.shop, tid)?;
            let parcel = p.oids_of(tid);
            let open = open_lines(&old, &os);
            if parcel.iter().any(|oid| !open.contains(oid)) {
                return Err(WmsError::Refused(format!(
                    "a line of order {tid} in package {} has shipped or was refunded since it \
                     was packed; check the parcel",
                    p.id
                )));
            }
            let whole = open.iter().all(|oid| parcel.contains(oid));
            os.shipped.extend(parcel.iter().copied());
            self.save_ship(tid, &os)?;
            let mut new = old.clone();
            if whole {
                new.state = LocalState::HandedOver;
                self.events.push(Event::StateChanged {
                    tid,
                    from: old.state,
                    to: new.state,
                });
            }
            self.save(Some(&old), &new)?;
            // The goods leave the ledger.
            for oid in &parcel {
                let Some(l) = old.lines.iter().find(|l| l.oid == *oid) else {
                    continue;
                };
                let qty = i64::from(l.qty);
                match &l.mapping {
                    super::Mapping::Sku(c) => self.ship_out(c, qty, tid)?,
                    super::Mapping::Bundle { parts, .. } => {
                        for (c, q) in parts {
                            self.ship_out(c, qty * i64::from(*q), tid)?;
                        }
                    }
                    _ => {}
                }
            }
            let op_oids: Vec<u64> = if whole && os.shipped.len() == parcel.len() {
                Vec::new()
            } else {
                parcel.clone()
            };
            let (Ok(t), Ok(oids)) = (
                i64::try_from(tid),
                op_oids
                    .iter()
                    .map(|o| i64::try_from(*o))
                    .collect::<Result<Vec<_>, _>>(),
            ) else {
                return Err(WmsError::Refused(format!("{tid} is not a trade id")));
            };
            let enq = outbox.enqueue(
                self.txn,
                TaobaoOp::Ship {
                    tid: t,
                    oids,
                    company_code: company.clone(),
                    out_sid: out_sid.clone(),
                },
            )?;
            ops.push(ShipOp {
                tid,
                oids: op_oids,
                company_code: company.clone(),
                out_sid: out_sid.clone(),
                seq: enq.seq,
            });
            self.events.push(Event::Shipped {
                tid,
                package: p.id.clone(),
            });
        }
        tables::put_named(self.txn, tables::WAYBILLS, &self.shop, &wkey, &p.id)?;
        p.shipped = Some(ShippedRecord {
            company_code: company.clone(),
            out_sid: out_sid.clone(),
            at_ms: self.now_ms,
        });
        let what = format!("shipped with {company} {out_sid}");
        self.log(&mut p, what);
        self.save_package(&p)?;
        Ok(Shipment {
            package: p.id.clone(),
            ops,
        })
    }

    /// Whether the lines of a `Ship` op (`oids` empty: the trade's) went through the ship
    /// scan here.
    pub(crate) fn lines_gone(&self, o: &OrderRecord, oids: &[u64]) -> Result<bool, StoreError> {
        if o.state.gone() {
            return Ok(true);
        }
        let os = order_ship::load(self.txn, &self.shop, o.tid)?;
        if oids.is_empty() {
            return Ok(false);
        }
        Ok(oids.iter().all(|oid| os.shipped.contains(oid)))
    }

    /// Records that Taobao accepted the lines of a `Ship` op (`oids` empty: every line that
    /// went through the ship scan). Returns whether the whole trade is now consigned.
    pub(crate) fn record_consigned(&mut self, tid: u64, oids: &[u64]) -> Result<bool, StoreError> {
        let Some(o) = self.get(tid)? else {
            return Ok(false);
        };
        let mut os = order_ship::load(self.txn, &self.shop, tid)?;
        let lines: Vec<u64> = if oids.is_empty() {
            o.lines
                .iter()
                .filter(|l| !l.is_closed())
                .map(|l| l.oid)
                .collect()
        } else {
            oids.to_vec()
        };
        for oid in lines {
            if !os.consigned.contains(&oid) {
                os.consigned.push(oid);
            }
        }
        self.save_ship(tid, &os)?;
        Ok(o.lines
            .iter()
            .all(|l| l.is_closed() || l.is_shipped() || os.consigned.contains(&l.oid)))
    }
}

/// Lists `package` id for cancelling its waybill.
fn txn_void(txn: &redb::WriteTransaction, shop: &str, id: &str) -> Result<(), StoreError> {
    txn.open_table(tables::WAYBILL_VOID)?
        .insert((shop, id), ())?;
    Ok(())
}

/// Whether any waybill waits to be cancelled.
pub fn any_voided(txn: &redb::ReadTransaction, shop: &str) -> Result<bool, StoreError> {
    let Some(t) = tables::read_table(txn, tables::WAYBILL_VOID)? else {
        return Ok(false);
    };
    let hi = String::from(char::MAX).repeat(4);
    Ok(t.range((shop, "")..=(shop, hi.as_str()))?.next().is_some())
}
