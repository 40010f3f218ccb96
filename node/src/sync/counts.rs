//! The order counters as last published: the `wms_node_orders{state}` and
//! `wms_node_order_holds{reason}` gauges, the `unmapped_sku` alert, and the copy the status
//! page reads (it must not read the store while it renders).

use crate::alert::{AlertCode, Alerts, Severity};
use crate::store::Store;
use crate::wms::{self, ShopId};
use std::sync::Mutex;

/// The counters as last published, for the status page (which must not read the store).
static COUNTS: Mutex<std::collections::BTreeMap<String, wms::counts::Counts>> =
    Mutex::new(std::collections::BTreeMap::new());

/// The counters of `shop` as last published (`None` before the first publication).
pub fn cached_counts(shop: &ShopId) -> Option<wms::counts::Counts> {
    COUNTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(shop.as_str())
        .cloned()
}

/// Sets `wms_node_orders{state}` and `wms_node_order_holds{reason}` from the stored counters
/// and raises or clears the `unmapped_sku` alert. Cheap: one small read.
pub fn publish_counts(store: &Store, shop: &ShopId, alerts: &Alerts) {
    let Ok(c) = store.read(|r| wms::view::counts(r, shop)) else {
        return;
    };
    COUNTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(shop.as_str().to_owned(), c.clone());
    for s in wms::LocalState::ALL {
        let n = c.states.get(s.as_str()).copied().unwrap_or(0);
        metrics::gauge!("wms_node_orders", "state" => s.as_str()).set(n as f64);
    }
    for r in [
        wms::HoldReason::Refund,
        wms::HoldReason::TradeClosed,
        wms::HoldReason::PaidForbidConsign,
        wms::HoldReason::PresaleUnpaid,
        wms::HoldReason::UnmappedSku,
        wms::HoldReason::AmbiguousSku,
        wms::HoldReason::PartialRefund,
        wms::HoldReason::Review,
        wms::HoldReason::Operator,
    ] {
        let n = c.holds.get(r.as_str()).copied().unwrap_or(0);
        metrics::gauge!("wms_node_order_holds", "reason" => r.as_str()).set(n as f64);
    }
    let unmapped = c.holds.get("unmapped_sku").copied().unwrap_or(0)
        + c.holds.get("ambiguous_sku").copied().unwrap_or(0);
    if unmapped > 0 {
        alerts.raise(
            AlertCode::UnmappedSku,
            Severity::Warning,
            format!(
                "{unmapped} orders are held because a line maps to no SKU (or to several): fix \
                 the map with `wms-node sku import` or `wms-node sku sync`; they are released \
                 by themselves"
            ),
        );
    } else {
        alerts.clear(AlertCode::UnmappedSku);
    }
}
