//! `sku sync`: builds the listing → SKU map from the shop's listings (DOMAIN.md §6).
//!
//! ```text
//!  items.onsale.get (200 a page) ─▶ every num_iid ─▶ item.seller.get (SKUs, outer ids)
//!        ─▶ one transaction: map by outer id, drop entries of deleted items,
//!           re-map held orders (they are released by themselves)
//! ```
//!
//! An explicit mapping from `sku import` is never overridden, and an outer id that names no
//! SKU of the master is reported, not guessed at. The progress callback gets (items done,
//! items in total) so the CLI can draw a bar.

use crate::store::Store;
use crate::taobao::api::OnsaleQuery;
use crate::taobao::time::Clock;
use crate::taobao::{TopClient, TopError};
use crate::wms::{self, Bus, Rules, ShopId, Wms, sku::SeenListing, sku::SyncReport};

/// Why a sync failed (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A TOP call failed.
    #[error(transparent)]
    Top(#[from] TopError),
    /// The store failed.
    #[error(transparent)]
    Wms(#[from] wms::WmsError),
}

/// `sku sync` as the operators' API runs it (`ops::orders` implements its `SkuSyncer` with it).
#[derive(Clone)]
pub struct SkuSync {
    /// The Taobao client.
    pub client: TopClient,
    /// The store.
    pub store: Store,
    /// The shop.
    pub shop: ShopId,
    /// Hold rules (for the orders the new map releases).
    pub rules: Rules,
    /// Where the events go.
    pub bus: Bus,
    /// The clock.
    pub clock: Clock,
}

/// Reads every listed item and its SKUs, then maps them in one write.
pub async fn sync(
    client: &TopClient,
    store: &Store,
    shop: &ShopId,
    rules: &Rules,
    bus: &Bus,
    clock: &Clock,
    mut progress: impl FnMut(usize, usize),
) -> Result<SyncReport, SyncError> {
    let mut q = OnsaleQuery {
        fields: vec!["num_iid".into(), "outer_id".into()],
        page_size: 200,
        order_by: Some("list_time:asc".into()),
        ..OnsaleQuery::default()
    };
    let first = client.items_onsale_get(&q).await?;
    let total = first.total_results.unwrap_or(0).max(0) as usize;
    let mut ids: Vec<i64> = first.items.iter().map(|i| i.num_iid).collect();
    let pages = total.div_ceil(200).max(1);
    for p in 2..=pages {
        q.page_no = u32::try_from(p).unwrap_or(u32::MAX);
        let page = client.items_onsale_get(&q).await?;
        if page.items.is_empty() {
            break;
        }
        ids.extend(page.items.iter().map(|i| i.num_iid));
    }
    ids.sort_unstable();
    ids.dedup();
    let mut seen = Vec::new();
    let mut gone = Vec::new();
    progress(0, ids.len());
    for (i, num_iid) in ids.iter().enumerate() {
        let Some(n) = wms::id(*num_iid) else { continue };
        match client
            .item_seller_get(*num_iid, &["num_iid", "outer_id", "skus"])
            .await
        {
            Ok(item) if item.skus.is_empty() => seen.push(SeenListing {
                num_iid: n,
                sku_id: None,
                outer_id: item.outer_id,
            }),
            Ok(item) => {
                for s in item.skus {
                    let Some(sku_id) = wms::id(s.sku_id) else {
                        continue;
                    };
                    seen.push(SeenListing {
                        num_iid: n,
                        sku_id: Some(sku_id),
                        outer_id: s.outer_id,
                    });
                }
            }
            Err(TopError::Api(e))
                if e.sub_code.as_deref().is_some_and(|s| {
                    s.starts_with("isv.item-not-exist") || s.starts_with("isv.item-is-delete")
                }) =>
            {
                gone.push(n);
            }
            Err(e) => return Err(e.into()),
        }
        progress(i + 1, ids.len());
    }
    let items = ids.len();
    let shop = shop.clone();
    let rules = rules.clone();
    let bus = bus.clone();
    let now = clock.now();
    let mut report = wms::write(store, move |txn| {
        let mut w = Wms::new(txn, &shop, now);
        let r = w.sync_listings(&seen, &gone, &rules)?;
        let events = w.finish()?;
        bus.publish_after_commit(shop.as_str(), events);
        Ok(r)
    })
    .await?;
    report.items = items;
    tracing::info!(
        items = report.items,
        listings = report.listings,
        mapped = report.mapped,
        unknown = report.unknown_code.len(),
        released = report.orders_released.len(),
        "SKU map synced from the shop's listings"
    );
    Ok(report)
}
