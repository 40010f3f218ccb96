//! Goods out as operators see it: the status page's "Goods out" section (ship-by risk,
//! shipments Taobao has not confirmed yet, stock at zero or not synced, the last
//! reconciliation's findings), read from the store and the reconciler's shared state at the
//! instant of the request.

use super::reconcile::{CheckStatus, SharedState};
use crate::status::i18n::Msg;
use crate::status::{At, Observation, StatusSection, StatusSource};
use crate::store::Store;
use crate::taobao::time::Clock;
use crate::wms::{self, ShopId};
use std::collections::BTreeMap;
use std::time::Duration;

/// The "Goods out" section.
pub struct GoodsSection {
    store: Store,
    shop: ShopId,
    clock: Clock,
    warning: Duration,
    critical: Duration,
    reconcile: SharedState,
}

impl GoodsSection {
    /// The section of one shop; `warning` and `critical` are `[shipping]`'s deadlines.
    pub fn new(
        store: Store,
        shop: ShopId,
        clock: Clock,
        warning: Duration,
        critical: Duration,
        reconcile: SharedState,
    ) -> Self {
        GoodsSection {
            store,
            shop,
            clock,
            warning,
            critical,
            reconcile,
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What the section shows, worked out from one reading (pure, for the tests).
#[derive(Debug, Default, PartialEq, Eq)]
struct Figures {
    overdue: usize,
    critical: usize,
    warning: usize,
    /// The first trade due, and by when (epoch ms).
    first: Option<(u64, i64)>,
    held_at_risk: usize,
    awaiting: usize,
    oldest_awaiting_ms: Option<i64>,
    skus: usize,
    out_of_stock: usize,
    sync_stopped: usize,
}

fn figures(
    risks: &[wms::ship::DeadlineRisk],
    awaiting: &[wms::ship::Awaiting],
    stock: &[(i64, bool)],
    now_ms: i64,
    critical_ms: i64,
) -> Figures {
    let mut f = Figures::default();
    for r in risks {
        let left = r.ship_by_ms - now_ms;
        if left < 0 {
            f.overdue += 1;
        } else if left <= critical_ms {
            f.critical += 1;
        } else {
            f.warning += 1;
        }
        if r.held {
            f.held_at_risk += 1;
        }
        if f.first.is_none_or(|(_, by)| r.ship_by_ms < by) {
            f.first = Some((r.tid, r.ship_by_ms));
        }
    }
    f.awaiting = awaiting.len();
    f.oldest_awaiting_ms = awaiting.iter().filter_map(|a| a.shipped_ms).min();
    f.skus = stock.len();
    f.out_of_stock = stock.iter().filter(|(avail, _)| *avail <= 0).count();
    f.sync_stopped = stock.iter().filter(|(_, stopped)| *stopped).count();
    f
}

fn at_ms(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

impl GoodsSection {
    fn rows(&self, at: &At<'_>) -> Vec<(String, String)> {
        let now = self.clock.now().timestamp_millis();
        let shop = self.shop.as_str();
        let read = self.store.read(|r| {
            let risks = wms::ship::deadline_risks(r, shop, now, ms(self.warning))?;
            let awaiting = wms::ship::awaiting_consign(r, shop)?;
            let stock = match wms::stock::show(r, shop, None)? {
                Ok(v) => v
                    .iter()
                    .map(|(s, _)| (s.available, s.sync == "stopped"))
                    .collect(),
                Err(_) => Vec::new(),
            };
            Ok((risks, awaiting, stock))
        });
        let mut rows = Vec::new();
        match read {
            Err(e) => rows.push((at.t(Msg::RowState), at.f(Msg::CannotReadStore, &[&e]))),
            Ok((risks, awaiting, stock)) => {
                let f = figures(&risks, &awaiting, &stock, now, ms(self.critical));
                rows.push((
                    at.t(Msg::RowShipByRisk),
                    if risks.is_empty() {
                        at.f(Msg::NoneDueWithin, &[&at.age(self.warning)])
                    } else {
                        let mut parts = Vec::new();
                        if f.overdue > 0 {
                            parts.push(at.f(Msg::Overdue, &[&f.overdue]));
                        }
                        if f.critical > 0 {
                            parts
                                .push(at.f(Msg::DueWithin, &[&f.critical, &at.age(self.critical)]));
                        }
                        if f.warning > 0 {
                            parts.push(at.f(Msg::DueWithin, &[&f.warning, &at.age(self.warning)]));
                        }
                        if f.held_at_risk > 0 {
                            parts.push(at.f(Msg::OfThemHeld, &[&f.held_at_risk]));
                        }
                        if let Some((tid, by)) = f.first {
                            parts.push(at.f(Msg::FirstDue, &[&tid, &at.local.format(at_ms(by))]));
                        }
                        parts.join(&at.t(Msg::PartsSep))
                    },
                ));
                rows.push((
                    at.t(Msg::RowAwaitingConfirm),
                    match (f.awaiting, f.oldest_awaiting_ms) {
                        (0, _) => at.t(Msg::None_),
                        (n, Some(t)) => at.f(Msg::TradesOldestShipped, &[&n, &at.when(at_ms(t))]),
                        (n, None) => at.f(Msg::NTrades, &[&n]),
                    },
                ));
                rows.push((
                    at.t(Msg::RowStock),
                    if f.skus == 0 {
                        at.t(Msg::NoSkusInMaster)
                    } else {
                        let stopped = if f.sync_stopped > 0 {
                            at.f(Msg::SyncStoppedFor, &[&f.sync_stopped])
                        } else {
                            String::new()
                        };
                        at.f(Msg::SkusSummary, &[&f.skus, &f.out_of_stock, &stopped])
                    },
                ));
            }
        }
        rows.push((at.t(Msg::RowLastReconcile), self.reconciliation(at)));
        rows
    }

    fn reconciliation(&self, at: &At<'_>) -> String {
        let s = self
            .reconcile
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let last = match &s.last {
            None if s.running => return at.t(Msg::RecRunningFirst),
            None => return at.t(Msg::RecNotYet),
            Some(r) => r,
        };
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        let mut not_run = Vec::new();
        for c in &last.checks {
            for f in &c.findings {
                *kinds.entry(f.kind.as_str()).or_default() += 1;
            }
            if c.status == CheckStatus::NotRun {
                not_run.push(c.name.as_str());
            }
        }
        let found: usize = kinds.values().sum();
        // The time in the warehouse's zone, with its age.
        let finished = chrono::DateTime::parse_from_rfc3339(&last.finished)
            .ok()
            .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
            .map_or_else(|| last.finished.clone(), |ms| at.when(ms));
        let sep = at.t(Msg::ListSep);
        let mut text = at.f(
            Msg::RecFinished,
            &[
                &finished,
                &if found == 0 {
                    at.t(Msg::RecClean)
                } else {
                    let kinds: Vec<String> = kinds
                        .iter()
                        .map(|(k, n)| at.f(Msg::CountOf, &[n, k]))
                        .collect();
                    at.f(Msg::RecFoundKinds, &[&found, &kinds.join(&sep)])
                },
            ],
        );
        if !not_run.is_empty() {
            text.push_str(&at.f(Msg::RecCouldNotRun, &[&not_run.join(&sep)]));
        }
        if s.running {
            text.push_str(&at.t(Msg::RecRunningAgain));
        }
        text
    }
}

impl StatusSource for GoodsSection {
    fn observe(&self, at: &At<'_>) -> Observation {
        Observation {
            checks: Vec::new(),
            section: Some(StatusSection {
                title: at.t(Msg::SecGoodsOut),
                rows: self.rows(at),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wms::LocalState;
    use crate::wms::ship::{Awaiting, DeadlineRisk};

    fn risk(tid: u64, ship_by_ms: i64, held: bool) -> DeadlineRisk {
        DeadlineRisk {
            tid,
            ship_by_ms,
            state: LocalState::Released,
            held,
        }
    }

    #[test]
    fn risks_fall_into_overdue_critical_and_warning_and_the_soonest_is_named() {
        let now = 1_000_000;
        let hour = 3_600_000;
        let risks = [
            risk(3, now + 3 * hour, false),
            risk(1, now - 10, true),
            risk(2, now + hour / 2, false),
        ];
        let awaiting = [
            Awaiting {
                tid: 9,
                ship_by_ms: None,
                shipped_ms: Some(now - 5),
            },
            Awaiting {
                tid: 8,
                ship_by_ms: None,
                shipped_ms: Some(now - 50),
            },
        ];
        let stock = [(0, false), (5, true), (-1, false)];
        let f = figures(&risks, &awaiting, &stock, now, hour);
        assert_eq!(
            f,
            Figures {
                overdue: 1,
                critical: 1,
                warning: 1,
                first: Some((1, now - 10)),
                held_at_risk: 1,
                awaiting: 2,
                oldest_awaiting_ms: Some(now - 50),
                skus: 3,
                out_of_stock: 2,
                sync_stopped: 1,
            }
        );
    }

    #[test]
    fn nothing_at_risk_gives_empty_figures() {
        assert_eq!(figures(&[], &[], &[], 5, 10), Figures::default());
    }
}
