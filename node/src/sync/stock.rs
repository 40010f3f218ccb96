//! Stock push: the job that turns what `wms::stock` marked due into outbox ops, and the sink
//! that decides, at delivery, what each op sends (DOMAIN.md §5; the rules are in
//! `wms/stock.rs`).
//!
//! ```text
//!  a committed change (receipt, sale pulled, count, safety, resume …)
//!     └─▶ wms_stock_due ──StockFeed──▶ outbox: PushStock{num_iid, sku_id} (one per listing,
//!                      (bus event,     coalesced; urgent for a zero)  │
//!                       intake window,                                ▼
//!                       every 10 s)         StockGuard at delivery: plan from the ledger
//!                                               │ delta · zero · read (a correction's anchor,
//!                                               │ a lost answer) · correction (intake passed
//!                                               ▼ its reading)
//!                                   record "sending" ─▶ item.quantity.update ─▶ record result
//! ```
//!
//! Waybills voided by `wms::ship` go the same way: the feeder queues their
//! `cainiao.waybill.ii.cancel` ops.
//!
//! Where intake stands (its lag, which gates a correction's read, and its watermark, which a
//! correction waits to pass its reading) is read from the store (the intake cursor), so the
//! running node, the CLI and the delivery all judge it alike. Nothing but a zero is sent as a
//! full value: see `wms/stock.rs` for the race a full value loses.
//!
//! Must never: send a call that was not recorded first (a crash between the two makes its
//! result unknown, never forgotten), or send a delta again without knowing it was not applied.

use crate::alert::{AlertCode, Alerts, Severity, Subject};
use crate::outbox::{Attempt, Outbox, Outcome, Sink};
use crate::store::{Store, StoreError};
use crate::taobao::api::{QuantityUpdate, StockMode};
use crate::taobao::outbox::TaobaoOp;
use crate::taobao::time::Clock;
use crate::taobao::types::ItemQuantity;
use crate::taobao::{Disposition, TopClient, TopError};
use crate::wms::stock::{Gate, Plan, PushMode, Seen, Sent};
use crate::wms::{self, Bus, Event, ShopId, Wms};
use chrono::{DateTime, Utc};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How stock is pushed (built by `config/` from `[stock]`).
#[derive(Debug, Clone)]
pub struct StockOptions {
    /// The shop.
    pub shop: ShopId,
    /// A correction reads the platform only while intake lags less than this.
    pub max_intake_lag: Duration,
    /// How often the feeder looks even without an event (and whether intake caught up).
    pub check_every: Duration,
    /// Ops queued per transaction of the feeder.
    pub batch: usize,
}

impl Default for StockOptions {
    fn default() -> Self {
        StockOptions {
            shop: ShopId::main(),
            max_intake_lag: Duration::from_secs(300),
            check_every: Duration::from_secs(10),
            batch: 500,
        }
    }
}

/// How far behind order intake is: `now − watermark`; `None` when it never stored a window.
pub fn intake_lag(
    store: &Store,
    shop: &ShopId,
    now: DateTime<Utc>,
) -> Result<Option<Duration>, StoreError> {
    let c = store.read(|r| wms::cursor::load(r, shop.as_str(), wms::cursor::TRADES))?;
    Ok(c.filter(|c| c.watermark_ms > 0).map(|c| {
        let ms = now.timestamp_millis().saturating_sub(c.watermark_ms).max(0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }))
}

/// Whether a correction may read the platform now (intake lags less than `max`).
pub fn lag_ok(store: &Store, shop: &ShopId, now: DateTime<Utc>, max: Duration) -> bool {
    gate(store, shop, now, max).lag_ok
}

/// Where intake stands for the stock push: whether it lags less than `max`, and its
/// watermark. A store that cannot be read gives the gate that lets no correction go.
pub fn gate(store: &Store, shop: &ShopId, now: DateTime<Utc>, max: Duration) -> Gate {
    let c = store.read(|r| wms::cursor::load(r, shop.as_str(), wms::cursor::TRADES));
    let watermark_ms = match c {
        Ok(Some(c)) if c.watermark_ms > 0 => Some(c.watermark_ms),
        _ => None,
    };
    let lag_ok = watermark_ms.is_some_and(|w| {
        let ms = now.timestamp_millis().saturating_sub(w).max(0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0)) < max
    });
    Gate {
        lag_ok,
        watermark_ms,
    }
}

/// The feeder: moves due pushes and voided waybills into the outbox.
pub struct StockFeed {
    store: Store,
    outbox: Outbox<TaobaoOp>,
    bus: Bus,
    clock: Clock,
    opts: StockOptions,
}

impl std::fmt::Debug for StockFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StockFeed")
            .field("shop", &self.opts.shop)
            .finish_non_exhaustive()
    }
}

impl StockFeed {
    /// A feeder; nothing runs until [`run`](Self::run).
    pub fn new(
        store: Store,
        outbox: Outbox<TaobaoOp>,
        bus: Bus,
        clock: Clock,
        opts: StockOptions,
    ) -> Self {
        StockFeed {
            store,
            outbox,
            bus,
            clock,
            opts,
        }
    }

    /// Queues what is due now; returns how many ops. Safe to call from anywhere (the CLI
    /// after a change on a stopped node).
    pub async fn feed(&self) -> Result<usize, wms::WmsError> {
        let mut total = 0;
        loop {
            let now = self.clock.now();
            let gate = gate(&self.store, &self.opts.shop, now, self.opts.max_intake_lag);
            let shop = self.opts.shop.clone();
            let outbox = self.outbox.clone();
            let batch = self.opts.batch.max(1);
            let n = wms::write(&self.store, move |txn| {
                let due = wms::stock::take_due(txn, shop.as_str(), gate, batch)?;
                let voids = wms::ship::take_voided(txn, shop.as_str(), batch)?;
                let n = due.len() + voids.len();
                for d in due {
                    let (Ok(num_iid), Ok(sku_id)) = (
                        i64::try_from(d.num_iid),
                        d.sku_id.map(i64::try_from).transpose(),
                    ) else {
                        continue;
                    };
                    outbox.enqueue(
                        txn,
                        TaobaoOp::PushStock {
                            num_iid,
                            sku_id,
                            version: d.version,
                            urgent: d.urgent,
                        },
                    )?;
                }
                for (cp_code, waybill_code) in voids {
                    outbox.enqueue(
                        txn,
                        TaobaoOp::CancelWaybill {
                            cp_code,
                            waybill_code,
                        },
                    )?;
                }
                Ok(n)
            })
            .await?;
            total += n;
            if n < batch {
                return Ok(total);
            }
        }
    }

    /// Feeds until `shutdown`: at once, on every `StockDue`, `WaybillVoided` or `Window`
    /// event, and every `check_every` (which also catches intake catching up).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Infallible> {
        let mut events = self.bus.subscribe();
        let mut tick = tokio::time::interval(self.opts.check_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut glance = tokio::time::interval(GLANCE.min(self.opts.check_every));
        glance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        loop {
            match self.feed().await {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(ops = n, "stock pushes and waybill cancels queued");
                    }
                    failures = 0;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    // A full outbox (reject_new at the cap) or a busy store: the marks stay,
                    // the next round takes them.
                    tracing::warn!(error = %e, tries = failures, "could not queue stock pushes; will retry");
                }
            }
            loop {
                tokio::select! {
                    // Shutdown: nothing in flight (each feed is one transaction).
                    _ = shutdown.cancelled() => return Ok(()),
                    // A committed change made pushes due (or voided a waybill).
                    _ = due(&mut events) => break,
                    // The periodic look (intake may have caught up: waiting corrections read).
                    _ = tick.tick() => break,
                    // Between looks, a read-only glance: intake moves its watermark at every
                    // poll, quiet ones too (which publish no event), and a correction goes as
                    // soon as intake lags little enough to read, or has passed its reading.
                    _ = glance.tick() => if self.correction_ready() { break },
                }
            }
        }
    }

    /// Whether a correction waiting for intake may go now.
    fn correction_ready(&self) -> bool {
        let g = gate(
            &self.store,
            &self.opts.shop,
            self.clock.now(),
            self.opts.max_intake_lag,
        );
        let shop = self.opts.shop.as_str();
        matches!(
            self.store.read(|r| wms::stock::waiting_ready(r, shop, g)),
            Ok(true)
        )
    }
}

/// How often the feeder glances at corrections waiting for intake.
const GLANCE: Duration = Duration::from_secs(1);

/// Resolves at the next event that makes something due (or when events were lost): a
/// change that owes a push, a voided waybill, or an intake window stored (the watermark
/// moved: a correction waiting for it to pass its reading may settle now).
async fn due(events: &mut broadcast::Receiver<(String, Event)>) {
    loop {
        match events.recv().await {
            Ok((
                _,
                Event::StockDue { .. } | Event::WaybillVoided { .. } | Event::Window { .. },
            )) => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            // No more events: the periodic look carries on alone.
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// A [`Sink`] that delivers `PushStock` ops from the ledger and passes every other op on.
#[derive(Clone)]
pub struct StockGuard<S> {
    inner: S,
    client: TopClient,
    store: Store,
    alerts: Alerts,
    clock: Clock,
    opts: StockOptions,
}

impl<S> std::fmt::Debug for StockGuard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StockGuard")
            .field("shop", &self.opts.shop)
            .finish_non_exhaustive()
    }
}

fn seen_of(item: &ItemQuantity, sku_id: Option<i64>, at_ms: i64) -> Option<Seen> {
    match sku_id {
        Some(s) => item.skus.iter().find(|k| k.sku_id == s).and_then(|k| {
            Some(Seen {
                qty: k.quantity?,
                modified_ms: k.modified.map(|m| m.timestamp_millis()),
                at_ms,
            })
        }),
        None => item.num.map(|qty| Seen {
            qty,
            modified_ms: item.modified.map(|m| m.timestamp_millis()),
            at_ms,
        }),
    }
}

impl<S: Sink<TaobaoOp>> StockGuard<S> {
    /// Wraps `inner`.
    pub fn new(
        inner: S,
        client: TopClient,
        store: Store,
        alerts: Alerts,
        clock: Clock,
        opts: StockOptions,
    ) -> Self {
        StockGuard {
            inner,
            client,
            store,
            alerts,
            clock,
            opts,
        }
    }

    async fn write<R: Send + 'static>(
        &self,
        f: impl FnMut(&mut Wms<'_>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, wms::WmsError> {
        let shop = self.opts.shop.clone();
        let now = self.clock.now();
        let mut f = f;
        wms::write(&self.store, move |txn| {
            let mut w = Wms::new(txn, &shop, now);
            let r = f(&mut w)?;
            w.finish()?;
            Ok(r)
        })
        .await
    }

    /// Reads a listing's quantity on the platform.
    async fn read(&self, num_iid: i64, sku_id: Option<i64>) -> Result<Option<Seen>, TopError> {
        let item = self
            .client
            .item_seller_get(num_iid, &["num_iid", "num", "modified", "skus"])
            .await?;
        let at_ms = self.clock.now().timestamp_millis();
        Ok(match sku_id {
            Some(s) => item.skus.iter().find(|k| k.sku_id == s).and_then(|k| {
                Some(Seen {
                    qty: k.quantity?,
                    modified_ms: k.modified.map(|m| m.timestamp_millis()),
                    at_ms,
                })
            }),
            None => item.num.map(|qty| Seen {
                qty,
                modified_ms: item.modified.map(|m| m.timestamp_millis()),
                at_ms,
            }),
        })
    }

    async fn push(&self, num_iid: i64, sku_id: Option<i64>) -> Outcome {
        let (Some(n), s) = (wms::id(num_iid), sku_id.and_then(wms::id)) else {
            return Outcome::Permanent {
                reason: format!("{num_iid} is not an item id"),
            };
        };
        // At most: a read (a lost answer), a read (a correction's anchor), a call; for a
        // pre-sale item found now, a read and a call more.
        for _ in 0..6 {
            let gate = gate(
                &self.store,
                &self.opts.shop,
                self.clock.now(),
                self.opts.max_intake_lag,
            );
            let plan = match self
                .write(move |w| w.plan_push(n, s, gate).map(|(p, _)| p))
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    return Outcome::Retry {
                        after: None,
                        reason: format!("the stock ledger could not be read: {e}"),
                    };
                }
            };
            let sending = match plan {
                Plan::Nothing | Plan::Wait => return Outcome::Done,
                Plan::Read => {
                    // The reading may include any sale placed before the call leaves.
                    let from_ms = self.clock.now().timestamp_millis();
                    let read = self.read(num_iid, sku_id).await;
                    metrics::counter!(
                        "wms_node_stock_pushes_total",
                        "mode" => "read",
                        "result" => if read.is_ok() { "applied" } else { "not_applied" }
                    )
                    .increment(1);
                    let seen = match read {
                        Ok(Some(seen)) => seen,
                        Ok(None) => {
                            return Outcome::Permanent {
                                reason: format!(
                                    "item {num_iid} has no SKU {} on Taobao any more",
                                    sku_id.unwrap_or(0)
                                ),
                            };
                        }
                        Err(e) => return e.outcome(),
                    };
                    match self.write(move |w| w.push_read(n, s, seen, from_ms)).await {
                        Ok((known, _)) => {
                            if !known {
                                tracing::warn!(
                                    num_iid,
                                    sku_id,
                                    "a stock delta's result could not be told from a sale: \
                                     erring on the safe side until a correction settles it"
                                );
                            }
                            continue;
                        }
                        Err(e) => {
                            return Outcome::Retry {
                                after: None,
                                reason: format!("could not record the platform's quantity: {e}"),
                            };
                        }
                    }
                }
                Plan::Send(s) => s,
            };
            let update = QuantityUpdate {
                num_iid,
                sku_id,
                outer_id: None,
                quantity: sending.value,
                mode: if sending.mode.is_incremental() {
                    StockMode::Incremental
                } else {
                    StockMode::Full
                },
            };
            let r = self.client.item_quantity_update(&update).await;
            let at = self.clock.now().timestamp_millis();
            let (sent, outcome) = match &r {
                Ok(item) => (Sent::Applied(seen_of(item, sku_id, at)), Outcome::Done),
                Err(e) if e.may_have_applied() => (Sent::Unknown, e.outcome()),
                Err(e) => (Sent::NotApplied, e.outcome()),
            };
            metrics::counter!(
                "wms_node_stock_pushes_total",
                "mode" => match sending.mode {
                    PushMode::Full => "full",
                    PushMode::Delta => "delta",
                    PushMode::Correction => "correction",
                },
                "result" => match sent {
                    Sent::Applied(_) => "applied",
                    Sent::NotApplied => "not_applied",
                    Sent::Unknown => "unknown",
                }
            )
            .increment(1);
            let presale = sending.mode == PushMode::Full
                && matches!(&r, Err(TopError::Api(e)) if e
                    .sub_code
                    .as_deref()
                    .is_some_and(|c| c.starts_with("isv.item-is-presale")));
            if presale {
                // Deltas only for this listing: the zero goes as minus a fresh reading.
                if let Err(e) = self.write(move |w| w.push_presale(n, s).map(|_| ())).await {
                    return Outcome::Retry {
                        after: None,
                        reason: format!("could not record the result: {e}"),
                    };
                }
                tracing::info!(
                    num_iid,
                    sku_id,
                    "a pre-sale listing: its stock goes as deltas"
                );
                continue;
            }
            let permanent = matches!(outcome, Outcome::Permanent { .. });
            // Only after a success is what is left due again: a failed op is retried by the
            // outbox with its backoff, and a refused one waits for the next change.
            let requeue = outcome == Outcome::Done;
            if let Err(e) = self
                .write(move |w| w.push_done(n, s, sent, requeue).map(|_| ()))
                .await
            {
                // The call stays recorded as sending: the next delivery treats its result as
                // unknown and reads first.
                tracing::error!(num_iid, error = %e, "could not record a stock push's result");
                return Outcome::Retry {
                    after: None,
                    reason: format!("could not record the result: {e}"),
                };
            }
            if let (Err(e), true) = (&r, permanent) {
                self.alerts.raise_about(
                    AlertCode::StockPushRefused,
                    Subject::new("listing", format!("{num_iid}:{}", sku_id.unwrap_or(0))),
                    Severity::Warning,
                    format!(
                        "listing {num_iid}:{}: Taobao refused the stock push ({e}); check the \
                         listing (deleted? pre-sale? units withheld?) and the SKU map",
                        sku_id.unwrap_or(0)
                    ),
                );
            }
            if matches!(&r, Err(e) if matches!(e.disposition(), Disposition::Retry { .. }) && sending.mode.is_incremental() && e.may_have_applied())
            {
                tracing::warn!(
                    num_iid,
                    sku_id,
                    delta = sending.value,
                    "a stock delta's answer was lost; the platform is read before anything more \
                     is sent for this listing"
                );
            }
            return outcome;
        }
        Outcome::Done
    }
}

impl<S: Sink<TaobaoOp>> Sink<TaobaoOp> for StockGuard<S> {
    async fn deliver(&self, attempt: Attempt<'_, TaobaoOp>) -> Outcome {
        match attempt.op {
            TaobaoOp::PushStock {
                num_iid, sku_id, ..
            } => self.push(*num_iid, *sku_id).await,
            _ => self.inner.deliver(attempt).await,
        }
    }
}
