//! The pre-consign check (DOMAIN.md §3.3): before the outbox sends a `Ship` op, the order is
//! read again, and a shipment is never sent for an order that is held while its parcel is
//! still in the building.
//!
//! ```text
//!  Ship op due ─▶ Wms::consign_check(tid)
//!     untracked / not held ─▶ send ─▶ done: order → consigned
//!     held, before the ship scan (consign at label print) ─▶ op cancelled, alert "pull it"
//!     held, through the ship scan ─▶ send (the parcel is gone), FAIL report queued,
//!                                    alert "courier interception"
//! ```
//!
//! Every other op goes straight to the Taobao sink. This wrapper is the only place where the
//! outbox learns about orders, which keeps `taobao/` and `outbox/` free of the warehouse.

use super::intake::queue_feedback;
use crate::alert::{AlertCode, Alerts, Severity, Subject};
use crate::outbox::{Attempt, Outbox, Outcome, Sink};
use crate::store::Store;
use crate::taobao::outbox::{TaobaoOp, TaobaoSink};
use crate::taobao::time::Clock;
use crate::wms::{self, Bus, ConsignCheck, ShopId, Wms};

/// A [`Sink`] that checks each `Ship` op against the order before sending it.
#[derive(Clone)]
pub struct ConsignGuard {
    inner: TaobaoSink,
    store: Store,
    outbox: Outbox<TaobaoOp>,
    shop: ShopId,
    bus: Bus,
    alerts: Alerts,
    clock: Clock,
}

impl std::fmt::Debug for ConsignGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsignGuard")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl ConsignGuard {
    /// Wraps `inner`.
    pub fn new(
        inner: TaobaoSink,
        outbox: Outbox<TaobaoOp>,
        shop: ShopId,
        bus: Bus,
        alerts: Alerts,
        clock: Clock,
    ) -> Self {
        ConsignGuard {
            inner,
            store: outbox.store().clone(),
            outbox,
            shop,
            bus,
            alerts,
            clock,
        }
    }

    async fn check(&self, tid: u64, oids: Vec<u64>) -> Result<ConsignCheck, wms::WmsError> {
        let shop = self.shop.clone();
        let outbox = self.outbox.clone();
        let bus = self.bus.clone();
        let now = self.clock.now();
        let when = crate::taobao::time::format(now);
        wms::write(&self.store, move |txn| {
            let mut w = Wms::new(txn, &shop, now);
            let c = w.consign_check(tid, &oids)?;
            if let ConsignCheck::Intercept { feedback, .. } = &c {
                for f in feedback {
                    queue_feedback(&outbox, txn, f, &when);
                }
            }
            let events = w.finish()?;
            bus.publish_after_commit(shop.as_str(), events);
            Ok(c)
        })
        .await
    }

    async fn consigned(&self, tid: u64, oids: Vec<u64>) {
        let shop = self.shop.clone();
        let bus = self.bus.clone();
        let now = self.clock.now();
        let r = wms::write(&self.store, move |txn| {
            let mut w = Wms::new(txn, &shop, now);
            w.consigned(tid, &oids)?;
            let events = w.finish()?;
            bus.publish_after_commit(shop.as_str(), events);
            Ok(())
        })
        .await;
        if let Err(e) = r {
            // The next pull sees the trade shipped and moves the order on anyway.
            tracing::warn!(tid, error = %e, "could not mark the order consigned");
        }
    }

    async fn ship(&self, attempt: Attempt<'_, TaobaoOp>, tid: i64, oids: Vec<u64>) -> Outcome {
        let Some(id) = wms::id(tid) else {
            return self.inner.deliver(attempt).await;
        };
        let check = match self.check(id, oids.clone()).await {
            Ok(c) => c,
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    reason: format!("the pre-consign check could not read the order: {e}"),
                };
            }
        };
        let reasons =
            |r: &[wms::HoldReason]| r.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");
        match &check {
            ConsignCheck::Pull { reasons: r } => {
                self.alerts.raise_about(
                    AlertCode::PullParcel,
                    Subject::tid(tid),
                    Severity::Critical,
                    format!(
                        "the shipment of trade {tid} was cancelled because the order is held \
                         ({}): pull the parcel and take it to the exception desk",
                        reasons(r)
                    ),
                );
                return Outcome::Cancelled {
                    reason: format!("order held ({}) before the ship scan", reasons(r)),
                };
            }
            ConsignCheck::Intercept { reasons: r, .. } => {
                self.alerts.raise_about(
                    AlertCode::CourierInterception,
                    Subject::tid(tid),
                    Severity::Critical,
                    format!(
                        "trade {tid} is held ({}) but its parcel already left: the shipment is \
                         reported to Taobao; ask the carrier to intercept the parcel",
                        reasons(r)
                    ),
                );
            }
            ConsignCheck::Untracked | ConsignCheck::Clear => {}
        }
        let outcome = self.inner.deliver(attempt).await;
        if matches!(outcome, Outcome::Done | Outcome::AlreadyDone)
            && check != ConsignCheck::Untracked
        {
            self.consigned(id, oids).await;
        }
        outcome
    }
}

impl Sink<TaobaoOp> for ConsignGuard {
    async fn deliver(&self, attempt: Attempt<'_, TaobaoOp>) -> Outcome {
        match attempt.op {
            TaobaoOp::Ship { tid, oids, .. } => {
                let tid = *tid;
                let oids = oids.iter().filter_map(|o| wms::id(*o)).collect();
                self.ship(attempt, tid, oids).await
            }
            _ => self.inner.deliver(attempt).await,
        }
    }
}
