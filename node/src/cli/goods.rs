//! The backend shared by `wms-node stock`, `ship`, `waybill` and `reconcile`: the running
//! node's admin API, or the store file opened by this process (with a Taobao client built
//! from the config when the command needs one).

use super::orders::{Backend, Failure, connect};
use anyhow::Context;
use std::sync::Arc;
use wms_node::config::Config;
use wms_node::ops::alert::Alerts;
use wms_node::ops::goods::{GoodsAdmin, GoodsClient, GoodsError};
use wms_node::outbox::Outbox;
use wms_node::store::Store;
use wms_node::sync::reconcile::Reconciler;
use wms_node::taobao::outbox::TaobaoOp;
use wms_node::taobao::time::Clock;
use wms_node::wms::{Bus, ShopId};

/// Where goods commands go.
pub enum Goods {
    /// The running node's HTTP API.
    Node(GoodsClient),
    /// The store, opened (and locked) by this process.
    Local(GoodsAdmin),
}

impl From<GoodsError> for Failure {
    fn from(e: GoodsError) -> Self {
        match e {
            GoodsError::Failed(m) => Failure::Other(anyhow::anyhow!(m)),
            e => Failure::Said(e.to_string()),
        }
    }
}

impl Goods {
    /// Connects to the running node, or opens the store when nothing answers.
    pub async fn connect(config: &Config) -> anyhow::Result<(Goods, Backend)> {
        let backend = connect(config).await?;
        let g = match &backend {
            Backend::Node(c) => Goods::Node(GoodsClient(c.0.clone())),
            Backend::Local(a) => Goods::Local(local(a.store().clone(), config)),
        };
        Ok((g, backend))
    }

    /// For a stopped node: this process reaches Taobao itself (`waybill get`).
    pub async fn with_taobao(self, config: &Config) -> anyhow::Result<Goods> {
        let Goods::Local(a) = self else {
            return Ok(self);
        };
        let (client, _) = taobao(a.store(), config).await?;
        let issuer = wms_node::sync::waybill::Issuer {
            client,
            store: a.store().clone(),
            bus: Bus::new(),
            alerts: a.alerts().clone(),
            clock: Clock::system(),
            opts: config.waybill_options(),
        };
        Ok(Goods::Local(a.with_waybills(Arc::new(issuer))))
    }
}

/// The goods admin over a store opened here.
fn local(store: Store, config: &Config) -> GoodsAdmin {
    let alerts = Alerts::new();
    let outbox: Outbox<TaobaoOp> =
        Outbox::new(store.clone(), config.outbox_options(), alerts.clone());
    GoodsAdmin::new(
        store,
        outbox,
        ShopId::main(),
        config.shipping.merge_orders,
        config.stock.max_intake_lag,
        Bus::new(),
        alerts,
        Clock::system(),
    )
}

/// A Taobao client over the store's tokens.
async fn taobao(
    store: &Store,
    config: &Config,
) -> anyhow::Result<(wms_node::taobao::TopClient, Alerts)> {
    let alerts = Alerts::new();
    let t =
        wms_node::taobao::setup::connect(&config.taobao_options(), store.clone(), alerts.clone())
            .await
            .context("cannot set up the Taobao client")?;
    Ok((t.client, alerts))
}

/// A reconciler running in this process (a stopped node).
pub async fn reconciler(store: &Store, config: &Config) -> anyhow::Result<Reconciler> {
    let (client, alerts) = taobao(store, config).await?;
    Ok(Reconciler::new(
        client,
        store.clone(),
        wms_node::outbox::admin::Admin::offline(store.clone()),
        alerts,
        Clock::system(),
        config.reconcile_options(),
    ))
}
