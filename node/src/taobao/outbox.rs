//! The Taobao effects the outbox delivers: [`TaobaoOp`] and the [`TaobaoSink`] that applies
//! them through the client.
//!
//! | op              | call                                   | fifo key            | coalesce  | priority            | critical |
//! |-----------------|----------------------------------------|---------------------|-----------|---------------------|----------|
//! | `Ship`          | `taobao.logistics.offline.send`        | `trade:<tid>`       | —         | Urgent              | yes      |
//! | `SetStock`      | `taobao.item.quantity.update` (type=1) | `stock:<iid>:<sku>` | same key  | Urgent at 0, Normal | no       |
//! | `CancelWaybill` | `cainiao.waybill.ii.cancel`            | `waybill:<cp>:<no>` | —         | Low                 | no       |
//! | `CancelFeedback`| `taobao.rdc.aligenius.sendgoods.cancel`| `trade:<tid>`       | —         | Normal              | no       |
//! | `PushStock`     | `taobao.item.quantity.update` (type=1 or 2), decided at delivery | `stock:<iid>:<sku>` | same key | Urgent for a zero, Normal | no |
//!
//! `CancelFeedback` (DOMAIN.md §3.7) shares the trade's FIFO key, so a `FAIL` ("already gone")
//! queued when a held parcel had to ship anyway reaches the platform after the shipment. When
//! the op does not carry the refunded amount, the sink reads it with `taobao.refund.get` first.
//!
//! Outcomes come from [`TopError::outcome`](super::TopError::outcome) and nowhere else, with
//! one op-specific rule: B04 ("already shipped or closed") on a `Ship` is `AlreadyDone`
//! (the gateway refuses a repeat, so a re-delivery after a crash is harmless); the trade is then
//! re-read: a closed trade raises the `shipped_closed_trade` alert, and lines shipped with
//! another waybill number than the op's raise `shipped_other_waybill`. A code 27 has already
//! had its one refresh inside the client; what reaches here is `Auth`.
//!
//! `SetStock` carries an absolute quantity (latest wins when coalesced); `version` is the
//! producer's monotonic stamp, kept for `queue list` and for dropping stale pushes upstream.
//! `PushStock` carries no quantity: it says a listing owes the shop a push, and the stock
//! guard (`sync::stock::StockGuard`) decides at delivery what it sends, from the ledger
//! (`wms::stock`). Delivered by this sink alone it is refused as permanent.

use super::api::{OfflineSend, QuantityUpdate, StockMode};
use super::client::TopClient;
use super::types::TradeStatus;
use crate::alert::{AlertCode, Alerts, Severity, Subject};
use crate::outbox::{Attempt, Operation, Outcome, Priority, Queue, Sink};
use serde::{Deserialize, Serialize};
use std::future::Future;

/// An effect on the Taobao shop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaobaoOp {
    /// Consign a trade with a waybill number. `oids` empty: the whole trade; otherwise a
    /// split shipment of exactly these lines (`is_split=1`, `sub_tid`).
    Ship {
        /// Trade.
        tid: i64,
        /// Lines in this parcel (empty = whole trade).
        oids: Vec<i64>,
        /// Carrier code (`YTO`, …).
        company_code: String,
        /// Waybill number.
        out_sid: String,
    },
    /// Set a SKU's (or an item's) platform stock to an absolute value.
    SetStock {
        /// Item.
        num_iid: i64,
        /// SKU; `None` for an item without SKUs.
        sku_id: Option<i64>,
        /// The quantity to show (negative values are pushed as 0).
        qty: i64,
        /// The producer's monotonic stamp.
        version: u64,
    },
    /// Void an unused e-waybill number.
    CancelWaybill {
        /// Carrier code.
        cp_code: String,
        /// Waybill number.
        waybill_code: String,
    },
    /// Tell AliGenius whether an unshipped order was stopped after a refund-only request.
    CancelFeedback {
        /// Trade.
        tid: i64,
        /// The refunded line.
        oid: i64,
        /// The refund.
        refund_id: i64,
        /// Amount in fen, when known (else read with `taobao.refund.get` at delivery).
        refund_fee: Option<i64>,
        /// `true`: stopped (`SUCCESS`); `false`: already gone (`FAIL`).
        stopped: bool,
        /// When the warehouse acted, `yyyy-MM-dd HH:mm:ss` GMT+8.
        operate_time: String,
    },
    /// A listing owes the shop a stock push; what it sends (a delta, a correction against a
    /// reading, a zero, or a read first) is decided at delivery from the ledger.
    PushStock {
        /// Item.
        num_iid: i64,
        /// SKU; `None` for an item without SKUs.
        sku_id: Option<i64>,
        /// The listing's version when it became due.
        version: u64,
        /// A zero: delivered ahead of other stock ops.
        urgent: bool,
    },
}

impl Operation for TaobaoOp {
    const QUEUE: Queue = Queue {
        name: "taobao",
        ..Queue::DEFAULT
    };

    fn fifo_key(&self) -> String {
        match self {
            TaobaoOp::Ship { tid, .. } => format!("trade:{tid}"),
            TaobaoOp::SetStock {
                num_iid, sku_id, ..
            } => {
                format!("stock:{num_iid}:{}", sku_id.unwrap_or(0))
            }
            TaobaoOp::CancelWaybill {
                cp_code,
                waybill_code,
            } => format!("waybill:{cp_code}:{waybill_code}"),
            TaobaoOp::CancelFeedback { tid, .. } => format!("trade:{tid}"),
            TaobaoOp::PushStock {
                num_iid, sku_id, ..
            } => format!("stock:{num_iid}:{}", sku_id.unwrap_or(0)),
        }
    }

    fn coalesce_key(&self) -> Option<String> {
        match self {
            TaobaoOp::SetStock { .. } | TaobaoOp::PushStock { .. } => Some(self.fifo_key()),
            _ => None,
        }
    }

    fn is_critical(&self) -> bool {
        matches!(self, TaobaoOp::Ship { .. })
    }

    fn priority(&self) -> Priority {
        match self {
            TaobaoOp::Ship { .. } => Priority::Urgent,
            // The zero fast path (DOMAIN.md §5): selling out must reach the shop first.
            TaobaoOp::SetStock { qty, .. } if *qty <= 0 => Priority::Urgent,
            TaobaoOp::SetStock { .. } => Priority::Normal,
            TaobaoOp::CancelWaybill { .. } => Priority::Low,
            TaobaoOp::CancelFeedback { .. } => Priority::Normal,
            TaobaoOp::PushStock { urgent: true, .. } => Priority::Urgent,
            TaobaoOp::PushStock { .. } => Priority::Normal,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            TaobaoOp::Ship { .. } => "ship",
            TaobaoOp::SetStock { .. } => "set_stock",
            TaobaoOp::CancelWaybill { .. } => "cancel_waybill",
            TaobaoOp::CancelFeedback { .. } => "cancel_feedback",
            TaobaoOp::PushStock { .. } => "push_stock",
        }
    }

    fn summary(&self) -> String {
        match self {
            TaobaoOp::Ship {
                tid,
                oids,
                company_code,
                out_sid,
            } => {
                if oids.is_empty() {
                    format!("ship tid {tid} with {company_code} {out_sid}")
                } else {
                    let oids = oids
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(",");
                    format!("ship tid {tid} lines {oids} with {company_code} {out_sid}")
                }
            }
            TaobaoOp::SetStock {
                num_iid,
                sku_id,
                qty,
                version,
            } => match sku_id {
                Some(sku) => format!("stock num_iid {num_iid} sku {sku} = {qty} (v{version})"),
                None => format!("stock num_iid {num_iid} = {qty} (v{version})"),
            },
            TaobaoOp::CancelWaybill {
                cp_code,
                waybill_code,
            } => format!("cancel waybill {cp_code} {waybill_code}"),
            TaobaoOp::CancelFeedback {
                tid,
                oid,
                refund_id,
                stopped,
                ..
            } => format!(
                "refund feedback {} for tid {tid} line {oid} (refund {refund_id})",
                if *stopped { "SUCCESS" } else { "FAIL" }
            ),
            TaobaoOp::PushStock {
                num_iid,
                sku_id,
                version,
                urgent,
            } => format!(
                "push stock of num_iid {num_iid}{} (v{version}){}",
                sku_id.map(|s| format!(" sku {s}")).unwrap_or_default(),
                if *urgent { ", zero" } else { "" }
            ),
        }
    }
}

/// Delivers [`TaobaoOp`]s through a [`TopClient`].
#[derive(Clone)]
pub struct TaobaoSink {
    client: TopClient,
    alerts: Alerts,
}

impl std::fmt::Debug for TaobaoSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaobaoSink")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl TaobaoSink {
    /// A sink over `client`.
    pub fn new(client: TopClient, alerts: Alerts) -> Self {
        TaobaoSink { client, alerts }
    }

    async fn ship(
        &self,
        tid: i64,
        oids: Vec<i64>,
        company_code: String,
        out_sid: String,
    ) -> Outcome {
        let send = OfflineSend {
            tid,
            sub_tids: oids.clone(),
            out_sid: out_sid.clone(),
            company_code,
            feature: None,
        };
        match self.client.logistics_offline_send(&send).await {
            Ok(true) => Outcome::Done,
            Ok(false) => Outcome::Retry {
                after: None,
                reason: format!("logistics.offline.send for tid {tid} answered is_success=false"),
            },
            Err(e) => {
                let outcome = e.outcome();
                if outcome == Outcome::AlreadyDone {
                    self.check_already_shipped(tid, &oids, &out_sid).await;
                }
                outcome
            }
        }
    }

    /// After B04: the trade is re-read. A closed trade means goods left for an order that
    /// will not be paid for; lines shipped with another number mean the buyer tracks another
    /// parcel. The same number on the lines is the normal case: a re-delivery after a lost
    /// answer (DOMAIN.md §4).
    async fn check_already_shipped(&self, tid: i64, oids: &[i64], out_sid: &str) {
        match self
            .client
            .trade_fullinfo_get(tid, &["tid", "status", "orders"])
            .await
        {
            Ok(t) => {
                if matches!(
                    t.status,
                    Some(TradeStatus::TradeClosed | TradeStatus::TradeClosedByTaobao)
                ) {
                    self.alerts.raise_about(
                        AlertCode::ShippedClosedTrade,
                        Subject::tid(tid),
                        Severity::Critical,
                        format!(
                            "trade {tid} was shipped on the floor but is closed on Taobao \
                             (refunded or cancelled): stop the parcel if it can still be stopped"
                        ),
                    );
                    return;
                }
                let other: Vec<String> = t
                    .orders
                    .iter()
                    .filter(|o| oids.is_empty() || oids.contains(&o.oid))
                    .filter_map(|o| o.invoice_no.clone())
                    .filter(|n| !n.is_empty() && n != out_sid)
                    .collect();
                if other.is_empty() {
                    tracing::info!(tid, "shipment already recorded by Taobao (B04)");
                } else {
                    self.alerts.raise_about(
                        AlertCode::ShippedOtherWaybill,
                        Subject::tid(tid),
                        Severity::Warning,
                        format!(
                            "trade {tid}: Taobao has it shipped with waybill {} but the floor \
                             shipped it with {out_sid}: check which parcel the buyer gets \
                             (logistics.consign.resend changes the number within 50 days)",
                            other.join(", ")
                        ),
                    );
                }
            }
            Err(e) => tracing::warn!(tid, error = %e, "could not re-read the trade after B04"),
        }
    }

    async fn set_stock(&self, num_iid: i64, sku_id: Option<i64>, qty: i64) -> Outcome {
        let u = QuantityUpdate {
            num_iid,
            sku_id,
            outer_id: None,
            quantity: qty.max(0),
            mode: StockMode::Full,
        };
        match self.client.item_quantity_update(&u).await {
            Ok(_) => Outcome::Done,
            Err(e) => e.outcome(),
        }
    }

    async fn cancel_waybill(&self, cp_code: String, waybill_code: String) -> Outcome {
        match self
            .client
            .cainiao_waybill_ii_cancel(&cp_code, &waybill_code)
            .await
        {
            Ok(true) => Outcome::Done,
            Ok(false) => Outcome::Permanent {
                reason: format!("Cainiao refused to cancel waybill {cp_code} {waybill_code}"),
            },
            Err(e) => e.outcome(),
        }
    }
}

impl TaobaoSink {
    async fn cancel_feedback(
        &self,
        tid: i64,
        oid: i64,
        refund_id: i64,
        refund_fee: Option<i64>,
        stopped: bool,
        operate_time: String,
    ) -> Outcome {
        let refund_fee = match refund_fee {
            Some(f) => f,
            None => match self.client.refund_get(refund_id).await {
                Ok(r) => r.refund_fee.map_or(0, |f| f.0),
                Err(e) => return e.outcome(),
            },
        };
        let c = super::api::CancelGoods {
            tid,
            oid,
            refund_id,
            refund_fee,
            status: if stopped { "SUCCESS" } else { "FAIL" }.into(),
            operate_time,
            msg: if stopped {
                "warehouse stopped the order before shipping".into()
            } else {
                "the parcel had already left the warehouse".into()
            },
        };
        match self.client.rdc_aligenius_sendgoods_cancel(&c).await {
            Ok(true) => Outcome::Done,
            Ok(false) => Outcome::Permanent {
                reason: format!(
                    "rdc.aligenius.sendgoods.cancel for tid {tid} line {oid} answered success=false"
                ),
            },
            Err(e) => e.outcome(),
        }
    }
}

impl Sink<TaobaoOp> for TaobaoSink {
    fn deliver(&self, attempt: Attempt<'_, TaobaoOp>) -> impl Future<Output = Outcome> + Send {
        let op = attempt.op.clone();
        let seq = attempt.seq;
        let n = attempt.attempt;
        async move {
            let kind = op.kind();
            let outcome = match op {
                TaobaoOp::Ship {
                    tid,
                    oids,
                    company_code,
                    out_sid,
                } => self.ship(tid, oids, company_code, out_sid).await,
                TaobaoOp::SetStock {
                    num_iid,
                    sku_id,
                    qty,
                    ..
                } => self.set_stock(num_iid, sku_id, qty).await,
                TaobaoOp::CancelWaybill {
                    cp_code,
                    waybill_code,
                } => self.cancel_waybill(cp_code, waybill_code).await,
                TaobaoOp::CancelFeedback {
                    tid,
                    oid,
                    refund_id,
                    refund_fee,
                    stopped,
                    operate_time,
                } => {
                    self.cancel_feedback(tid, oid, refund_id, refund_fee, stopped, operate_time)
                        .await
                }
                TaobaoOp::PushStock { .. } => Outcome::Permanent {
                    reason: "a stock push is decided by the stock guard (sync::stock), which \
                             this sink was built without"
                        .into(),
                },
            };
            tracing::debug!(seq, attempt = n, kind, outcome = ?outcome, "taobao op delivered");
            outcome
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ship() -> TaobaoOp {
        TaobaoOp::Ship {
            tid: 3_456_789_012_345_678_901,
            oids: vec![],
            company_code: "YTO".into(),
            out_sid: "YT1234567890123".into(),
        }
    }

    fn stock(qty: i64) -> TaobaoOp {
        TaobaoOp::SetStock {
            num_iid: 600_123_456_789,
            sku_id: Some(4_567_890_123_456),
            qty,
            version: 7,
        }
    }

    #[test]
    fn a_shipment_is_urgent_critical_and_ordered_per_trade() {
        let s = ship();
        assert_eq!(s.fifo_key(), "trade:3456789012345678901");
        assert_eq!(s.coalesce_key(), None);
        assert!(s.is_critical());
        assert_eq!(s.priority(), Priority::Urgent);
        assert_eq!(s.kind(), "ship");
        assert_eq!(
            s.summary(),
            "ship tid 3456789012345678901 with YTO YT1234567890123"
        );
    }

    #[test]
    fn stock_updates_coalesce_per_sku_and_zero_jumps_the_queue() {
        assert_eq!(
            stock(5).coalesce_key().as_deref(),
            Some("stock:600123456789:4567890123456")
        );
        assert_eq!(stock(5).fifo_key(), "stock:600123456789:4567890123456");
        assert_eq!(stock(5).priority(), Priority::Normal);
        assert_eq!(stock(0).priority(), Priority::Urgent);
        assert!(!stock(0).is_critical());
        let item_level = TaobaoOp::SetStock {
            num_iid: 1,
            sku_id: None,
            qty: 1,
            version: 1,
        };
        assert_eq!(item_level.fifo_key(), "stock:1:0");
    }

    #[test]
    fn a_waybill_cancel_is_low_priority() {
        let c = TaobaoOp::CancelWaybill {
            cp_code: "YTO".into(),
            waybill_code: "YT1".into(),
        };
        assert_eq!(c.priority(), Priority::Low);
        assert_eq!(c.fifo_key(), "waybill:YTO:YT1");
        assert_eq!(c.kind(), "cancel_waybill");
    }

    #[test]
    fn ops_round_trip_through_postcard() {
        for op in [
            ship(),
            stock(3),
            TaobaoOp::CancelWaybill {
                cp_code: "ZTO".into(),
                waybill_code: "1".into(),
            },
        ] {
            let bytes = postcard::to_allocvec(&op).unwrap_or_default();
            let back: Result<TaobaoOp, _> = postcard::from_bytes(&bytes);
            assert_eq!(back.ok(), Some(op));
        }
    }
}
