//! The jobs between Taobao and the store.
//!
//! | module        | job                                                                   |
//! |---------------|-----------------------------------------------------------------------|
//! | [`intake`]    | order intake: the incremental pull, fullinfo, re-scans                |
//! | [`consign`]   | the check before a `Ship` op leaves (DOMAIN.md §3.3)                  |
//! | [`carriers`]  | carrier codes and waybill-number rules, at start-up and daily         |
//! | [`skus`]      | `sku sync`: the listing → SKU map from the shop's listings            |
//! | [`stock`]     | stock pushes: the feeder and the guard that decides what each sends   |
//! | [`waybill`]   | Cainiao e-waybills: ask once, look up after a lost answer             |
//! | [`deadlines`] | ship-by deadline alerts                                               |
//! | [`reconcile`] | the comparison with Taobao (DOMAIN.md §11), on demand and periodic    |
//!
//! Every effect on Taobao goes through the outbox ([`crate::taobao::outbox`]); the state
//! they change is the warehouse's (`wms/`).
//!
//! Must never: write to Taobao directly (every effect goes through the outbox), or hold a
//! store transaction across a network call.

pub mod carriers;
pub mod consign;
pub mod counts;
pub mod deadlines;
pub mod goods_status;
pub mod intake;
pub mod reconcile;
pub mod skus;
pub mod stock;
pub mod waybill;

/// The sink the outbox delivers Taobao ops through: stock pushes decided from the ledger
/// ([`stock::StockGuard`]), shipments checked against their order ([`consign::ConsignGuard`]),
/// everything else straight to the client.
pub fn taobao_sink(
    client: &crate::taobao::TopClient,
    outbox: &crate::outbox::Outbox<crate::taobao::outbox::TaobaoOp>,
    bus: &crate::wms::Bus,
    alerts: &crate::alert::Alerts,
    clock: &crate::taobao::time::Clock,
    stock: &stock::StockOptions,
) -> stock::StockGuard<consign::ConsignGuard> {
    let consign = consign::ConsignGuard::new(
        crate::taobao::outbox::TaobaoSink::new(client.clone(), alerts.clone()),
        outbox.clone(),
        stock.shop.clone(),
        bus.clone(),
        alerts.clone(),
        clock.clone(),
    );
    stock::StockGuard::new(
        consign,
        client.clone(),
        outbox.store().clone(),
        alerts.clone(),
        clock.clone(),
        stock.clone(),
    )
}
