//! Per-shop counters kept in the same transactions as the orders they count, so `/metrics`
//! and the status page never scan the order table: orders by local state, holds by reason,
//! and the orders that arrived on each of the last days (GMT+8) by their state now.

use super::order::OrderRecord;
use super::tables;
use crate::store::{self, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Days of arrivals kept.
pub const DAYS_KEPT: usize = 8;

/// The counters of one shop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Orders by local state (`released` → 12).
    pub states: BTreeMap<String, u64>,
    /// Held orders by hold reason (an order with two reasons counts under both).
    pub holds: BTreeMap<String, u64>,
    /// Orders held for any reason.
    pub held: u64,
    /// `yyyy-mm-dd` (GMT+8 day of arrival) → state → orders.
    pub days: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The GMT+8 day of an instant, as `yyyy-mm-dd`.
pub fn day_of(ms: i64) -> String {
    super::time::at(ms)
        .with_timezone(&crate::taobao::time::cst())
        .format("%Y-%m-%d")
        .to_string()
}

impl Counts {
    /// Adds (`sign` 1) or removes (`sign` -1) what `o` contributes.
    pub fn apply(&mut self, o: &OrderRecord, sign: i8) {
        let bump = |m: &mut BTreeMap<String, u64>, k: &str| {
            let v = m.entry(k.to_owned()).or_insert(0);
            *v = if sign > 0 {
                v.saturating_add(1)
            } else {
                v.saturating_sub(1)
            };
            if *v == 0 {
                m.remove(k);
            }
        };
        bump(&mut self.states, o.state.as_str());
        for r in o.hold_reasons() {
            bump(&mut self.holds, r.as_str());
        }
        if o.is_held() {
            self.held = if sign > 0 {
                self.held.saturating_add(1)
            } else {
                self.held.saturating_sub(1)
            };
        }
        let day = day_of(o.arrived_ms);
        let d = self.days.entry(day.clone()).or_default();
        bump(d, o.state.as_str());
        if d.is_empty() {
            self.days.remove(&day);
        }
        while self.days.len() > DAYS_KEPT {
            let first = self.days.keys().next().cloned();
            if let Some(k) = first {
                self.days.remove(&k);
            }
        }
    }

    /// Orders in total.
    pub fn total(&self) -> u64 {
        self.states.values().sum()
    }
}

/// Reads a shop's counters (zero when none yet).
pub fn load(txn: &impl store::ReadTxn, shop: &str) -> Result<Counts, StoreError> {
    Ok(store::get::<&str, Counts>(txn, tables::COUNTS, shop)?.unwrap_or_default())
}

/// Writes a shop's counters.
pub fn save(txn: &redb::WriteTransaction, shop: &str, counts: &Counts) -> Result<(), StoreError> {
    store::put::<&str, Counts>(txn, tables::COUNTS, shop, counts)
}
