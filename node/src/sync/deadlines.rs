//! Ship-by deadlines (DOMAIN.md §9): an alert when an order that has not shipped comes
//! within `warning` (4 h) and again within `critical` (1 h) of its deadline, and an alert of
//! its own when shipments wait in the outbox while the link is down and a deadline is near.
//!
//! ```text
//!  every minute: open orders with ship_by − now ≤ 4 h, not through the ship scan
//!     ≤ 1 h → ship_deadline (critical), else ship_deadline (warning): one alert per order
//!     (subject `tid`), told once per level, resolved when the order ships or leaves the window
//!  handed over, Ship op not confirmed, ship_by − now ≤ 1 h, link down → deadline_outage
//! ```
//!
//! `Ship` ops already go first in the outbox (urgent priority); this job only tells people.
//!
//! Must never: write to the store (it only reads and alerts).

use crate::alert::{AlertCode, Alerts, Severity, Subject};
use crate::outbox::{LinkStatus, Outbox};
use crate::store::Store;
use crate::taobao::outbox::TaobaoOp;
use crate::taobao::time::Clock;
use crate::wms::{self, ShopId};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// When deadline alerts go (built by `config/` from `[shipping]`).
#[derive(Debug, Clone)]
pub struct DeadlineOptions {
    /// The shop.
    pub shop: ShopId,
    /// The first alert this long before the deadline.
    pub warning: Duration,
    /// The second, critical one.
    pub critical: Duration,
    /// How often to look.
    pub every: Duration,
}

impl Default for DeadlineOptions {
    fn default() -> Self {
        DeadlineOptions {
            shop: ShopId::main(),
            warning: Duration::from_secs(4 * 3600),
            critical: Duration::from_secs(3600),
            every: Duration::from_secs(60),
        }
    }
}

/// The deadline watcher.
pub struct Deadlines {
    store: Store,
    outbox: Outbox<TaobaoOp>,
    alerts: Alerts,
    clock: Clock,
    opts: DeadlineOptions,
    /// `(tid, level)` already alerted (level 1 warning, 2 critical, 3 outage).
    told: BTreeSet<(u64, u8)>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Deadlines {
    /// A watcher; nothing runs until [`run`](Self::run).
    pub fn new(
        store: Store,
        outbox: Outbox<TaobaoOp>,
        alerts: Alerts,
        clock: Clock,
        opts: DeadlineOptions,
    ) -> Self {
        Deadlines {
            store,
            outbox,
            alerts,
            clock,
            opts,
            told: BTreeSet::new(),
        }
    }

    /// One look: raises what is due; returns the alerts raised.
    pub fn check(&mut self) -> usize {
        let now = self.clock.now().timestamp_millis();
        let shop = self.opts.shop.clone();
        let within = ms(self.opts.warning);
        let risks = match self
            .store
            .read(|r| wms::ship::deadline_risks(r, shop.as_str(), now, within))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the orders' deadlines");
                return 0;
            }
        };
        let mut raised = 0;
        let mut alive = BTreeSet::new();
        for r in &risks {
            let left = r.ship_by_ms - now;
            let critical = left <= ms(self.opts.critical);
            let level = if critical { 2 } else { 1 };
            alive.insert(r.tid);
            if !self.told.insert((r.tid, level)) {
                continue;
            }
            raised += 1;
            metrics::counter!("wms_node_ship_deadline_alerts_total", "level" => if critical { "critical" } else { "warning" })
                .increment(1);
            self.alerts.raise_about(
                AlertCode::ShipDeadline,
                Subject::tid(r.tid),
                if critical {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                format!(
                    "trade {}: must ship by {} ({}), it is {}{}: pick and pack it first",
                    r.tid,
                    crate::taobao::time::format(wms::time::at(r.ship_by_ms)),
                    if left < 0 {
                        "overdue".to_owned()
                    } else {
                        format!(
                            "{} left",
                            humantime::format_duration(Duration::from_secs(
                                u64::try_from(left / 60_000 * 60).unwrap_or(0)
                            ))
                        )
                    },
                    r.state,
                    if r.held { ", held" } else { "" }
                ),
            );
        }
        metrics::gauge!("wms_node_orders_near_deadline").set(risks.len() as f64);
        // Shipments that wait for the link.
        if self.outbox.status().link == LinkStatus::Down {
            let waiting = self
                .store
                .read(|r| wms::ship::awaiting_consign(r, shop.as_str()))
                .unwrap_or_default();
            let near: Vec<u64> = waiting
                .iter()
                .filter(|a| {
                    a.ship_by_ms
                        .is_some_and(|b| b - now <= ms(self.opts.critical))
                })
                .map(|a| a.tid)
                .collect();
            if let Some(first) = near.first()
                && self.told.insert((*first, 3))
            {
                raised += 1;
                self.alerts.raise(
                    AlertCode::DeadlineOutage,
                    Severity::Critical,
                    format!(
                        "trade {first}{}: shipped here, but Taobao cannot be told while the \
                             link is down and the ship-by deadline is within {}: restore the \
                             link (a phone hotspot will do)",
                        if near.len() > 1 {
                            format!(" and {} more", near.len() - 1)
                        } else {
                            String::new()
                        },
                        humantime::format_duration(self.opts.critical)
                    ),
                );
            }
        } else {
            self.alerts.clear(AlertCode::DeadlineOutage);
            self.told.retain(|(_, l)| *l != 3);
        }
        // Forget orders that shipped or left the window; their alerts are resolved.
        let gone: BTreeSet<u64> = self
            .told
            .iter()
            .filter(|(t, l)| *l != 3 && !alive.contains(t))
            .map(|(t, _)| *t)
            .collect();
        for t in gone {
            self.alerts
                .clear_about(AlertCode::ShipDeadline, &Subject::tid(t));
        }
        self.told.retain(|(t, l)| *l == 3 || alive.contains(t));
        if risks.is_empty() {
            self.alerts.clear(AlertCode::ShipDeadline);
        }
        raised
    }

    /// Looks every `every` until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Infallible> {
        let mut tick = tokio::time::interval(self.opts.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Shutdown.
                _ = shutdown.cancelled() => return Ok(()),
                // The next look.
                _ = tick.tick() => {
                    self.check();
                }
            }
        }
    }
}
