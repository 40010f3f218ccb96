//! [`Wms`]: the warehouse's operations on orders and SKUs inside one write transaction.
//!
//! `Wms` is one type whose operations stand in three files, by what they change: orders here
//! (with the transaction's start and [`finish`](Wms::finish)), the stock ledger in
//! [`stock`](super::stock), packages and shipments in [`ship`](super::ship). They share the
//! transaction's state (its events, its pending stock changes) and call each other's methods:
//! saving an order re-counts its reservation, `finish` settles packages and pushes.
//!
//! ```text
//!  let mut w = Wms::new(txn, shop, now);
//!  w.apply_trade(&trade, &rules)?;      // intake: upsert, holds, state, feedback
//!  w.hold(tid, "call buyer")?;           // operator
//!  w.import_skus(&rows, &bundles, &rules)?;  // map changes re-map held orders
//!  let events = w.finish()?;             // counters + audit ring written; publish after commit
//! ```
//!
//! How a trade's platform state becomes the order's local state and holds (DOMAIN.md §2, §3):
//!
//! | platform status                                   | local state                          | holds                          |
//! |---------------------------------------------------|--------------------------------------|--------------------------------|
//! | unpaid (`WAIT_BUYER_PAY`, …)                      | `new`, never released                | none                           |
//! | `PAID_FORBID_CONSIGN`                             | stays                                | `paid_forbid_consign`          |
//! | `WAIT_SELLER_SEND_GOODS`, `SELLER_CONSIGNED_PART` | `new` → `released` once no hold is on | refund, SKU map, pre-sale, rules |
//! | `WAIT_BUYER_CONFIRM_GOODS`, signed, finished      | `consigned` (found shipped elsewhere if never handed over) | none        |
//! | `TRADE_CLOSED`                                    | `cancelled` before picking, `put_back` with goods in hand, `handed_over` stays (interception) | `trade_closed` while goods are out of place |
//! | `TRADE_CLOSED_BY_TAOBAO`                          | `cancelled`: never shipped           | none                           |
//!
//! A refund on any line holds the whole order at once; a refund that closes or is refused
//! lifts that hold only. An operator's hold is never lifted by the platform. Upserts are by
//! `tid` and only when the incoming `modified` is newer: the state never goes back.

use super::counts::{self, Counts};
use super::events::{self, Event};
use super::order::{Hold, HoldReason, Line, LocalState, Mapping, OrderRecord, Rules, mask_name};
use super::tables::{self, OPEN, ORDERS, OrderKey};
use super::time::ms;
use super::{ShopId, WmsError, cursor, id, sku};
use crate::store::{self, StoreError};
use crate::taobao::types::{RefundStatus, Trade, TradeStatus};
use chrono::{DateTime, Utc};
use redb::WriteTransaction;
use serde::{Deserialize, Serialize};

/// What [`Wms::apply_trade`] did with a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// First time stored.
    Inserted,
    /// A newer version replaced the stored one.
    Updated,
    /// Not newer than what is stored: nothing changed.
    Unchanged,
}

/// An AliGenius "shipment stopped / already gone" report to queue (DOMAIN.md §3.7). The
/// caller turns it into an outbox op in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// Trade.
    pub tid: u64,
    /// The refunded line.
    pub oid: u64,
    /// The refund.
    pub refund_id: u64,
    /// `true`: the order was stopped before it left (`SUCCESS`); `false`: it had left (`FAIL`).
    pub stopped: bool,
}

/// What [`Wms::apply_trade`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Inserted, updated or unchanged.
    pub change: Change,
    /// Reports to queue.
    pub feedback: Vec<Feedback>,
}

/// The pre-consign check (DOMAIN.md §3.3): what to do with a `Ship` op about to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsignCheck {
    /// The node does not track this trade (shipped by `wms-node ship` or the demo): send.
    Untracked,
    /// Not held: send.
    Clear,
    /// Held, and the parcel has not gone through the ship scan: cancel the op, pull the
    /// parcel.
    Pull {
        /// Why it is held.
        reasons: Vec<HoldReason>,
    },
    /// Held, but the parcel already left: send, report FAIL, ask for courier interception.
    Intercept {
        /// Why it is held.
        reasons: Vec<HoldReason>,
        /// The FAIL reports to queue.
        feedback: Vec<Feedback>,
    },
}

/// The warehouse's operations within one write transaction of one shop.
pub struct Wms<'t> {
    pub(super) txn: &'t WriteTransaction,
    pub(super) shop: String,
    pub(super) now_ms: i64,
    counts: Option<Counts>,
    pub(super) events: Vec<Event>,
    /// This transaction's stock changes, settled into pushes at [`finish`](Self::finish).
    pub(super) stock: super::stock::Pending,
}

impl<'t> Wms<'t> {
    /// Operations of `shop` in `txn`, at `now`.
    pub fn new(txn: &'t WriteTransaction, shop: &ShopId, now: DateTime<Utc>) -> Self {
        Wms {
            txn,
            shop: shop.as_str().to_owned(),
            now_ms: ms(now),
            counts: None,
            events: Vec::new(),
            stock: super::stock::Pending::default(),
        }
    }

    /// The transaction.
    pub fn txn(&self) -> &'t WriteTransaction {
        self.txn
    }

    /// The shop.
    pub fn shop(&self) -> &str {
        &self.shop
    }

    fn key(&self, tid: u64) -> (&str, u64) {
        (&self.shop, tid)
    }

    /// The stored order `tid`.
    pub fn get(&self, tid: u64) -> Result<Option<OrderRecord>, StoreError> {
        store::get::<OrderKey, OrderRecord>(self.txn, ORDERS, self.key(tid))
    }

    /// Whether a trade last modified at `modified` needs reading in full: unknown here, or
    /// newer than the stored version.
    pub fn needs_fullinfo(&self, tid: u64, modified: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(match self.get(tid) {
            Ok(Some(o)) => o.modified_ms < ms(modified),
            Ok(None) => true,
            // A stored record that does not decode is quarantined; read the trade again.
            Err(StoreError::Corrupt { .. }) => true,
            Err(e) => return Err(e),
        })
    }

    fn counts(&mut self) -> Result<&mut Counts, StoreError> {
        if self.counts.is_none() {
            self.counts = Some(counts::load(self.txn, &self.shop)?);
        }
        Ok(self.counts.get_or_insert_with(Counts::default))
    }

    /// Writes `new` (replacing `old`), keeping the counters, the open index and the stock
    /// reservations in step.
    pub(super) fn save(
        &mut self,
        old: Option<&OrderRecord>,
        new: &OrderRecord,
    ) -> Result<(), StoreError> {
        store::put::<OrderKey, OrderRecord>(self.txn, ORDERS, self.key(new.tid), new)?;
        self.account(new)?;
        let was_open = old.is_some_and(OrderRecord::is_open);
        if new.is_open() != was_open {
            let mut t = self.txn.open_table(OPEN)?;
            if new.is_open() {
                t.insert(self.key(new.tid), ())?;
            } else {
                t.remove(self.key(new.tid))?;
            }
        }
        let c = self.counts()?;
        if let Some(o) = old {
            c.apply(o, -1);
        }
        c.apply(new, 1);
        Ok(())
    }

    /// Upserts a trade read with `trade.fullinfo.get` (DOMAIN.md §1 rule 4): stored when new
    /// or newer than the stored version, then its holds and local state are worked out.
    pub fn apply_trade(&mut self, trade: &Trade, rules: &Rules) -> Result<Applied, WmsError> {
        let tid = id(trade.tid)
            .ok_or_else(|| WmsError::Refused(format!("{} is not a trade id", trade.tid)))?;
        let modified_ms = trade.modified.map(ms).unwrap_or(0);
        let old = match self.get(tid) {
            Ok(o) => o,
            Err(StoreError::Corrupt { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(o) = &old {
            if modified_ms < o.modified_ms {
                return Ok(Applied {
                    change: Change::Unchanged,
                    feedback: Vec::new(),
                });
            }
            if modified_ms == o.modified_ms {
                // The same version read again (a periodic refresh): remember when.
                let mut same = o.clone();
                same.refreshed_ms = self.now_ms;
                store::put::<OrderKey, OrderRecord>(self.txn, ORDERS, self.key(tid), &same)?;
                return Ok(Applied {
                    change: Change::Unchanged,
                    feedback: Vec::new(),
                });
            }
        }
        let status = trade
            .status
            .clone()
            .or_else(|| old.as_ref().map(|o| o.taobao_status.clone()))
            .unwrap_or(TradeStatus::Other(String::new()));
        let mut lines = Vec::with_capacity(trade.orders.len());
        for o in &trade.orders {
            let Some(oid) = id(o.oid) else { continue };
            let num_iid = o.num_iid.and_then(id);
            let sku_id = o.sku_id.and_then(id);
            let prev = old
                .as_ref()
                .and_then(|r| r.lines.iter().find(|l| l.oid == oid));
            let same_listing = prev.is_some_and(|p| {
                p.num_iid == num_iid
                    && p.sku_id == sku_id
                    && p.outer_sku_id == o.outer_sku_id
                    && p.outer_iid == o.outer_iid
            });
            let mapping = match prev {
                Some(p) if same_listing && p.mapping.code().is_some() => p.mapping.clone(),
                _ => sku::resolve(
                    self.txn,
                    &self.shop,
                    num_iid,
                    sku_id,
                    o.outer_sku_id.as_deref(),
                    o.outer_iid.as_deref(),
                )?,
            };
            lines.push(Line {
                oid,
                num_iid,
                sku_id,
                outer_iid: o.outer_iid.clone(),
                outer_sku_id: o.outer_sku_id.clone(),
                title: o.title.clone(),
                properties: o.sku_properties_name.clone(),
                qty: o
                    .num
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(1)
                    .max(1),
                status: o.status.clone(),
                refund_status: o.refund_status.clone(),
                refund_id: o.refund_id.and_then(id),
                mapping,
            });
        }
        let ship_by_ms = [trade.delivery_time, trade.est_con_time, trade.send_time]
            .into_iter()
            .flatten()
            .map(ms)
            .min()
            .or_else(|| {
                trade
                    .pay_time
                    .map(|p| ms(p).saturating_add(rules.default_promise_s.saturating_mul(1000)))
            });
        let r = &trade.receiver;
        let mut rec = match &old {
            Some(o) => o.clone(),
            None => OrderRecord {
                tid,
                state: LocalState::New,
                taobao_status: status.clone(),
                trade_type: None,
                step_trade_status: None,
                created_ms: None,
                pay_time_ms: None,
                modified_ms: 0,
                ship_by_ms: None,
                arrived_ms: self.now_ms,
                refreshed_ms: self.now_ms,
                oaid: None,
                province: None,
                city: None,
                district: None,
                receiver: None,
                seller_flag: 0,
                lines: Vec::new(),
                holds: Vec::new(),
                version: 0,
                feedback_for: Vec::new(),
                partial_accepted: false,
                review_released: None,
                shipped_elsewhere: false,
            },
        };
        let status_changed = old.as_ref().is_some_and(|o| o.taobao_status != status);
        let address_changed = old
            .as_ref()
            .is_some_and(|o| o.oaid.is_some() && r.oaid.is_some() && o.oaid != r.oaid);
        let lines_changed = rec.lines != lines;
        rec.taobao_status = status;
        rec.trade_type = trade.trade_type.clone().or(rec.trade_type);
        rec.step_trade_status = trade.step_trade_status.clone();
        rec.created_ms = trade.created.map(ms).or(rec.created_ms);
        rec.pay_time_ms = trade.pay_time.map(ms).or(rec.pay_time_ms);
        rec.modified_ms = modified_ms;
        rec.ship_by_ms = ship_by_ms.or(rec.ship_by_ms);
        rec.refreshed_ms = self.now_ms;
        rec.oaid = r.oaid.clone().or(rec.oaid);
        rec.province = r.state.clone().or(rec.province);
        rec.city = r.city.clone().or(rec.city);
        rec.district = r.district.clone().or(rec.district);
        if let Some(name) = r.masked_name.as_deref() {
            rec.receiver = mask_name(name);
        }
        rec.seller_flag = trade
            .seller_flag
            .and_then(|f| u8::try_from(f).ok())
            .filter(|f| *f <= 5)
            .unwrap_or(0);
        rec.lines = lines;
        if lines_changed {
            rec.version = rec.version.saturating_add(1);
        }
        let review = rules.review_key(
            rec.seller_flag,
            trade.seller_memo.as_ref().map(|m| m.as_str()),
        );
        let feedback = self.settle(&mut rec, old.as_ref(), Review::Known(review), rules);
        if old.is_none() {
            self.events.push(Event::Arrived {
                tid,
                state: rec.state,
            });
        } else if status_changed {
            self.events.push(Event::StatusChanged {
                tid,
                taobao_status: rec.taobao_status.as_str().to_owned(),
            });
        }
        if address_changed {
            self.events.push(Event::AddressChanged { tid });
        }
        self.save(old.as_ref(), &rec)?;
        Ok(Applied {
            change: if old.is_some() {
                Change::Updated
            } else {
                Change::Inserted
            },
            feedback,
        })
    }

    /// Works out the local state and the holds from what `rec` says now; records events.
    fn settle(
        &mut self,
        rec: &mut OrderRecord,
        old: Option<&OrderRecord>,
        review: Review,
        rules: &Rules,
    ) -> Vec<Feedback> {
        let tid = rec.tid;
        let before = rec.state;
        let closed_now = old.is_none_or(|o| o.taobao_status != rec.taobao_status);
        // 1. What the platform status says about the local state.
        match rec.taobao_status {
            TradeStatus::TradeClosedByTaobao if !rec.state.gone() => {
                rec.state = LocalState::Cancelled;
            }
            TradeStatus::TradeClosed => {
                if matches!(rec.state, LocalState::New | LocalState::Released) {
                    rec.state = LocalState::Cancelled;
                } else if rec.state.goods_in_hand() {
                    rec.state = LocalState::PutBack;
                } else if rec.state == LocalState::HandedOver && closed_now {
                    self.events.push(Event::InterceptionNeeded { tid });
                }
            }
            TradeStatus::WaitBuyerConfirmGoods
            | TradeStatus::TradeBuyerSigned
            | TradeStatus::TradeFinished
                if !matches!(rec.state, LocalState::Consigned | LocalState::Cancelled) =>
            {
                if !rec.state.gone() && !rec.shipped_elsewhere {
                    rec.shipped_elsewhere = true;
                    self.events.push(Event::ShippedElsewhere { tid });
                }
                rec.state = LocalState::Consigned;
            }
            _ => {}
        }
        // 2. Which holds the platform, the map and the rules call for now.
        let to_ship = matches!(
            rec.taobao_status,
            TradeStatus::PaidForbidConsign
                | TradeStatus::WaitSellerSendGoods
                | TradeStatus::SellerConsignedPart
        );
        let mut want: Vec<(HoldReason, String)> = Vec::new();
        if !rec.state.is_final() {
            if rec.taobao_status == TradeStatus::TradeClosed
                && matches!(rec.state, LocalState::PutBack | LocalState::HandedOver)
            {
                want.push((
                    HoldReason::TradeClosed,
                    if rec.state == LocalState::PutBack {
                        "closed after picking: put the goods back".to_owned()
                    } else {
                        "closed after handover: ask the carrier to intercept the parcel".to_owned()
                    },
                ));
            }
            if to_ship {
                if rec.taobao_status == TradeStatus::PaidForbidConsign {
                    want.push((
                        HoldReason::PaidForbidConsign,
                        "Taobao forbids shipping for now".to_owned(),
                    ));
                }
                if rec
                    .step_trade_status
                    .as_deref()
                    .is_some_and(|s| !s.is_empty() && s != "FRONT_PAID_FINAL_PAID")
                {
                    want.push((
                        HoldReason::PresaleUnpaid,
                        format!(
                            "pre-sale: {}",
                            rec.step_trade_status.as_deref().unwrap_or_default()
                        ),
                    ));
                }
                let refunds: Vec<String> = rec
                    .lines
                    .iter()
                    .filter(|l| l.refund_blocks())
                    .map(|l| {
                        format!(
                            "line {}: {}",
                            l.oid,
                            l.refund_status.as_ref().map_or("", RefundStatus::as_str)
                        )
                    })
                    .collect();
                if !refunds.is_empty() {
                    want.push((HoldReason::Refund, refunds.join("; ")));
                }
                let refunded = rec.lines.iter().filter(|l| l.is_closed()).count();
                let open = rec.lines.iter().filter(|l| !l.is_closed()).count();
                if refunded > 0 && open > 0 && !rules.partial_shipment && !rec.partial_accepted {
                    want.push((
                        HoldReason::PartialRefund,
                        format!(
                            "{refunded} of {} lines refunded: ship the rest? (`wms-node orders release`)",
                            rec.lines.len()
                        ),
                    ));
                }
                let describe = |pick: fn(&Mapping) -> bool| -> Vec<String> {
                    rec.lines
                        .iter()
                        .filter(|l| !l.is_closed() && pick(&l.mapping))
                        .map(|l| {
                            let code = l
                                .outer_sku_id
                                .as_deref()
                                .or(l.outer_iid.as_deref())
                                .filter(|c| !c.is_empty())
                                .unwrap_or("no merchant code");
                            format!(
                                "line {} (listing {}, {code})",
                                l.oid,
                                tables::listing_key(l.num_iid.unwrap_or(0), l.sku_id)
                            )
                        })
                        .collect()
                };
                let unmapped = describe(|m| matches!(m, Mapping::Unmapped));
                if !unmapped.is_empty() {
                    want.push((HoldReason::UnmappedSku, unmapped.join("; ")));
                }
                let ambiguous = describe(|m| matches!(m, Mapping::Ambiguous(_)));
                if !ambiguous.is_empty() {
                    want.push((HoldReason::AmbiguousSku, ambiguous.join("; ")));
                }
            }
        }
        let review_hold = match review {
            Review::Known(Some(k)) if to_ship && rec.review_released.as_ref() != Some(&k) => {
                Some(Some(k))
            }
            Review::Known(_) => Some(None),
            Review::Keep => None,
        };
        // 3. Apply: system holds follow their causes; the operator's stay.
        let mut changed = false;
        let system = |r: HoldReason| r != HoldReason::Operator && r != HoldReason::Review;
        let mut kept = Vec::with_capacity(rec.holds.len());
        for h in rec.holds.drain(..) {
            let still = if h.reason == HoldReason::Review {
                match &review_hold {
                    Some(k) => k.is_some() && !rec.state.is_final(),
                    None => !rec.state.is_final(),
                }
            } else if system(h.reason) {
                want.iter().any(|(r, _)| *r == h.reason)
            } else {
                true
            };
            if still {
                kept.push(h);
            } else {
                changed = true;
                self.events.push(Event::Unheld {
                    tid,
                    reason: h.reason,
                });
            }
        }
        rec.holds = kept;
        if let Some(Some(k)) = review_hold
            && !rec.state.is_final()
        {
            want.push((HoldReason::Review, k));
        }
        for (reason, detail) in want {
            match rec.holds.iter_mut().find(|h| h.reason == reason) {
                Some(h) => h.detail = detail,
                None => {
                    changed = true;
                    rec.holds.push(Hold {
                        reason,
                        since_ms: self.now_ms,
                        detail,
                    });
                    self.events.push(Event::Held {
                        tid,
                        reason,
                        state: rec.state,
                    });
                }
            }
        }
        // 4. Release when nothing holds it.
        if rec.state == LocalState::New
            && matches!(
                rec.taobao_status,
                TradeStatus::WaitSellerSendGoods | TradeStatus::SellerConsignedPart
            )
            && rec.holds.is_empty()
        {
            rec.state = LocalState::Released;
            self.events.push(Event::Released { tid });
        }
        if rec.state != before {
            self.events.push(Event::StateChanged {
                tid,
                from: before,
                to: rec.state,
            });
        }
        if changed {
            rec.version = rec.version.saturating_add(1);
        }
        // 5. AliGenius feedback, once per refund-only request on a line not yet shipped.
        let mut feedback = Vec::new();
        if rules.ag_feedback {
            for l in &rec.lines {
                let (Some(RefundStatus::WaitSellerAgree), Some(refund_id)) =
                    (&l.refund_status, l.refund_id)
                else {
                    continue;
                };
                if l.is_shipped() || rec.feedback_for.contains(&refund_id) {
                    continue;
                }
                feedback.push(Feedback {
                    tid,
                    oid: l.oid,
                    refund_id,
                    stopped: !rec.state.gone(),
                });
            }
            rec.feedback_for
                .extend(feedback.iter().map(|f| f.refund_id));
        }
        feedback
    }

    /// Puts an operator's hold on `tid` (`wms-node orders hold`).
    pub fn hold(&mut self, tid: u64, reason: &str) -> Result<OrderRecord, WmsError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(WmsError::Refused("a hold needs a reason".into()));
        }
        if reason.chars().count() > 200 {
            return Err(WmsError::Refused(
                "the reason may be at most 200 characters".into(),
            ));
        }
        let old = self.get(tid)?.ok_or(WmsError::NoOrder(tid))?;
        if old.state.is_final() {
            return Err(WmsError::Refused(format!(
                "order {tid} is {}: nothing left to hold",
                old.state
            )));
        }
        let mut rec = old.clone();
        if let Some(h) = rec
            .holds
            .iter_mut()
            .find(|h| h.reason == HoldReason::Operator)
        {
            h.detail = reason.to_owned();
        } else {
            rec.holds.push(Hold {
                reason: HoldReason::Operator,
                since_ms: self.now_ms,
                detail: reason.to_owned(),
            });
            rec.version = rec.version.saturating_add(1);
            self.events.push(Event::Held {
                tid,
                reason: HoldReason::Operator,
                state: rec.state,
            });
        }
        self.save(Some(&old), &rec)?;
        Ok(rec)
    }

    /// Lifts the holds an operator may lift (`wms-node orders release`): the operator's own,
    /// and the decisions (ship the rest after a partial refund, a flag/memo review). Holds
    /// with another cause stay and are named in the refusal when nothing could be lifted.
    pub fn release(&mut self, tid: u64) -> Result<(OrderRecord, Vec<HoldReason>), WmsError> {
        let old = self.get(tid)?.ok_or(WmsError::NoOrder(tid))?;
        let (lift, stay): (Vec<Hold>, Vec<Hold>) = old
            .holds
            .iter()
            .cloned()
            .partition(|h| h.reason.operator_may_release());
        if lift.is_empty() {
            return Err(WmsError::Refused(if stay.is_empty() {
                format!("order {tid} is not held")
            } else {
                format!(
                    "order {tid} is held for {}: these clear by themselves when their cause does \
                     (the refund closes, the SKU map is fixed); an operator cannot release them",
                    stay.iter()
                        .map(|h| h.reason.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }));
        }
        let mut rec = old.clone();
        rec.holds = stay;
        for h in &lift {
            match h.reason {
                HoldReason::PartialRefund => rec.partial_accepted = true,
                HoldReason::Review => rec.review_released = Some(h.detail.clone()),
                _ => {}
            }
            self.events.push(Event::Unheld {
                tid,
                reason: h.reason,
            });
        }
        rec.version = rec.version.saturating_add(1);
        let before = rec.state;
        if rec.state == LocalState::New
            && rec.holds.is_empty()
            && matches!(
                rec.taobao_status,
                TradeStatus::WaitSellerSendGoods | TradeStatus::SellerConsignedPart
            )
        {
            rec.state = LocalState::Released;
            self.events.push(Event::Released { tid });
            self.events.push(Event::StateChanged {
                tid,
                from: before,
                to: rec.state,
            });
        }
        self.save(Some(&old), &rec)?;
        Ok((rec, lift.iter().map(|h| h.reason).collect()))
    }

    /// Moves `tid` on the floor (pick, pack, ship scans; put-back): forward only, and never
    /// while held unless the move is to `put_back`, `exception` or `cancelled`.
    pub fn move_to(&mut self, tid: u64, to: LocalState) -> Result<OrderRecord, WmsError> {
        let old = self.get(tid)?.ok_or(WmsError::NoOrder(tid))?;
        if !old.state.may_move_to(to) {
            return Err(WmsError::Refused(format!(
                "order {tid} cannot go from {} to {to}",
                old.state
            )));
        }
        let side = matches!(
            to,
            LocalState::PutBack | LocalState::Exception | LocalState::Cancelled
        );
        if old.is_held() && !side {
            return Err(WmsError::Refused(format!(
                "order {tid} is held ({}): STOP",
                old.hold_reasons()
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut rec = old.clone();
        rec.state = to;
        self.events.push(Event::StateChanged {
            tid,
            from: old.state,
            to,
        });
        self.save(Some(&old), &rec)?;
        Ok(rec)
    }

    /// Taobao accepted the `Ship` op of `tid` for `oids` (empty: the whole trade). The order
    /// is consigned once every line is.
    pub fn consigned(&mut self, tid: u64, oids: &[u64]) -> Result<(), StoreError> {
        let Some(old) = self.get(tid)? else {
            return Ok(());
        };
        if matches!(old.state, LocalState::Consigned | LocalState::Cancelled) {
            return Ok(());
        }
        if !self.record_consigned(tid, oids)? {
            // A split parcel: the order goes on with its other lines.
            return Ok(());
        }
        let mut rec = old.clone();
        rec.state = LocalState::Consigned;
        // Whatever held it is moot now that the goods are with the carrier and Taobao knows.
        for h in rec.holds.drain(..) {
            if h.reason == HoldReason::Operator {
                continue;
            }
            self.events.push(Event::Unheld {
                tid,
                reason: h.reason,
            });
        }
        rec.holds = old
            .holds
            .iter()
            .filter(|h| h.reason == HoldReason::Operator)
            .cloned()
            .collect();
        self.events.push(Event::StateChanged {
            tid,
            from: old.state,
            to: rec.state,
        });
        self.save(Some(&old), &rec)
    }

    /// The pre-consign check of a `Ship` op for `tid` carrying `oids` (empty: the whole
    /// trade), recorded: a pulled parcel is an event, an intercepted one queues its FAIL
    /// reports once (DOMAIN.md §3.3). The parcel is gone when the order, or every line of the
    /// op, went through the ship scan.
    pub fn consign_check(&mut self, tid: u64, oids: &[u64]) -> Result<ConsignCheck, StoreError> {
        let Some(old) = self.get(tid)? else {
            return Ok(ConsignCheck::Untracked);
        };
        if !old.is_held() {
            return Ok(ConsignCheck::Clear);
        }
        let reasons = old.hold_reasons();
        if !self.lines_gone(&old, oids)? {
            self.events.push(Event::ShipmentCancelled { tid });
            return Ok(ConsignCheck::Pull { reasons });
        }
        let mut rec = old.clone();
        let mut feedback = Vec::new();
        for l in &old.lines {
            if let (Some(RefundStatus::WaitSellerAgree), Some(r)) = (&l.refund_status, l.refund_id)
                && !rec.feedback_for.contains(&r)
            {
                rec.feedback_for.push(r);
                feedback.push(Feedback {
                    tid,
                    oid: l.oid,
                    refund_id: r,
                    stopped: false,
                });
            }
        }
        self.events.push(Event::InterceptionNeeded { tid });
        if rec != old {
            self.save(Some(&old), &rec)?;
        }
        Ok(ConsignCheck::Intercept { reasons, feedback })
    }

    /// Maps again the lines of open orders that do not map (after the SKU map changed) and
    /// lifts the holds that no longer apply. Returns the orders released.
    pub fn remap_open(&mut self, rules: &Rules) -> Result<Vec<u64>, StoreError> {
        let tids = {
            let t = self.txn.open_table(OPEN)?;
            tables::open_tids(&t, &self.shop)?
        };
        let mut released = Vec::new();
        for tid in tids {
            let Some(old) = self.get(tid).ok().flatten() else {
                continue;
            };
            if !old
                .lines
                .iter()
                .any(|l| matches!(l.mapping, Mapping::Unmapped | Mapping::Ambiguous(_)))
            {
                continue;
            }
            let mut rec = old.clone();
            for l in &mut rec.lines {
                if l.mapping.code().is_none() {
                    l.mapping = sku::resolve(
                        self.txn,
                        &self.shop,
                        l.num_iid,
                        l.sku_id,
                        l.outer_sku_id.as_deref(),
                        l.outer_iid.as_deref(),
                    )?;
                }
            }
            if rec.lines == old.lines {
                continue;
            }
            rec.version = rec.version.saturating_add(1);
            let before = self.events.len();
            let feedback = self.settle(&mut rec, Some(&old), Review::Keep, rules);
            debug_assert!(feedback.is_empty());
            if self.events[before..]
                .iter()
                .any(|e| matches!(e, Event::Released { .. }))
            {
                released.push(tid);
            }
            self.save(Some(&old), &rec)?;
        }
        Ok(released)
    }

    /// Imports SKU and bundle rows (already checked by [`sku::parse_skus`] /
    /// [`sku::parse_bundles`]): all or nothing. With `dry_run` nothing is written and the
    /// report says what would change.
    pub fn import_skus(
        &mut self,
        rows: &[sku::SkuRow],
        bundles: &[sku::BundleRow],
        dry_run: bool,
        rules: &Rules,
    ) -> Result<sku::ImportReport, WmsError> {
        let mut report = match sku::plan_import(self.txn, &self.shop, rows, bundles)? {
            Ok(r) => r,
            Err(e) => return Err(WmsError::BadRows(e)),
        };
        if dry_run {
            return Ok(report);
        }
        let sku::Written {
            codes: written,
            listings: mapped,
            seeds,
        } = sku::apply_import(self.txn, &self.shop, rows, bundles, self.now_ms)?;
        for (code, n) in seeds {
            self.seed(&code, n)?;
        }
        for (code, safety) in sku::safety_of(rows) {
            if super::stock::rules(self.txn, &self.shop, &code)?.safety != safety {
                self.set_safety(&code, safety)?;
            }
        }
        self.map_changed()?;
        report.applied = true;
        report.orders_released = self.remap_open(rules)?;
        if written > 0 || mapped > 0 {
            self.events.push(Event::SkuMapChanged {
                skus: written,
                listings: mapped,
            });
        }
        Ok(report)
    }

    /// Applies what `sku sync` saw on Taobao, then re-maps held orders.
    pub fn sync_listings(
        &mut self,
        seen: &[sku::SeenListing],
        gone: &[u64],
        rules: &Rules,
    ) -> Result<sku::SyncReport, StoreError> {
        let mut report = sku::SyncReport::default();
        let mapped = sku::apply_sync(self.txn, &self.shop, seen, gone, &mut report)?;
        self.map_changed()?;
        report.orders_released = self.remap_open(rules)?;
        if mapped > 0 || report.stale_removed > 0 {
            self.events.push(Event::SkuMapChanged {
                skus: 0,
                listings: mapped,
            });
        }
        Ok(report)
    }

    /// Reads an intake cursor.
    pub fn cursor(&self, name: &str) -> Result<Option<cursor::Cursor>, StoreError> {
        cursor::load(self.txn, &self.shop, name)
    }

    /// Writes an intake cursor.
    pub fn set_cursor(&mut self, name: &str, c: &cursor::Cursor) -> Result<(), StoreError> {
        cursor::save(self.txn, &self.shop, name, c)
    }

    /// Records an event that is not an order change (a window of the pull).
    pub fn record(&mut self, e: Event) {
        self.events.push(e);
    }

    /// Settles what this transaction's changes mean for packages (a held or re-addressed
    /// trade leaves its merged package; a closed one's packages are dissolved) and for stock
    /// (what each listing now owes the shop), then writes the counters and the audit rows;
    /// returns the events to publish after commit.
    pub fn finish(mut self) -> Result<Vec<Event>, StoreError> {
        self.ledger_ready()?;
        let mut seen = std::collections::BTreeSet::new();
        for e in self.events.clone() {
            match e {
                Event::Held { tid, reason, .. } if seen.insert((tid, 0)) => {
                    self.unmerge(tid, &format!("held ({})", reason.as_str()))?;
                }
                Event::AddressChanged { tid } if seen.insert((tid, 1)) => {
                    self.readdressed(tid)?;
                }
                Event::StateChanged {
                    tid,
                    to: LocalState::Cancelled | LocalState::PutBack,
                    ..
                } if seen.insert((tid, 2)) => {
                    self.drop_packages(tid, "the order will not ship")?;
                }
                _ => {}
            }
        }
        self.settle_stock()?;
        if let Some(c) = &self.counts {
            counts::save(self.txn, &self.shop, c)?;
        }
        events::append(self.txn, &self.shop, self.now_ms, &self.events)?;
        Ok(self.events)
    }
}

/// How [`Wms::settle`] treats the flag/memo review hold.
enum Review {
    /// The current review key (from a fresh trade).
    Known(Option<String>),
    /// Not known (no memo at hand): leave a review hold as it is.
    Keep,
}

/// Reads one order outside a write (views, the admin API).
pub fn read_order(
    txn: &impl store::ReadTxn,
    shop: &ShopId,
    tid: u64,
) -> Result<Option<OrderRecord>, StoreError> {
    store::get::<OrderKey, OrderRecord>(txn, ORDERS, (shop.as_str(), tid))
}
