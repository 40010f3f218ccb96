//! E-waybills (DOMAIN.md §7): one `cainiao.waybill.ii.get` per package, kept with its print
//! data before anything prints; a reprint reuses it; an answer that did not arrive is looked
//! up by trade code (`cainiao.waybill.ii.query.by.tradecode`) before asking again.
//!
//! ```text
//!  get(tid, package N | oids)
//!    wms: the package (made now if new, merged with the same receiver's orders when allowed)
//!      ├─ has a waybill ─────────────────────────────────▶ print job (reprint)
//!      └─ none: recorded "asked" (durable) ─▶ asked before without an answer?
//!                        yes ─▶ query.by.tradecode ─ found ─▶ keep it ─▶ print job
//!                                                  └ none ──┐
//!                        no ──────────────────────────────▶ ii.get(object_id = package id)
//!                                 ok ─▶ keep it (one write) ─▶ print job
//!                                 no answer ─▶ stays "asked": the next get looks up first
//!                                 refused ─▶ "asked" cleared, alert, error
//! ```
//!
//! `wms-node waybill get` and the floor's pack step call [`get`]. The print job's data is the
//! opaque print data, never parsed or logged.
//!
//! Must never: ask Cainiao twice for one package without looking up first, or hold a store
//! transaction across a call.

use crate::alert::{AlertCode, Alerts, Severity};
use crate::store::Store;
use crate::taobao::api::{
    WaybillOrder, WaybillOrderInfo, WaybillPackage, WaybillParty, WaybillRecipient, WaybillRequest,
};
use crate::taobao::time::Clock;
use crate::taobao::types::Waybill;
use crate::taobao::{TopClient, TopError};
use crate::wms::ship::{Package, PrintJob, WaybillPlan, WaybillRecord};
use crate::wms::{self, Bus, ShopId, Wms, WmsError};
use serde::{Deserialize, Serialize};

/// How e-waybills are asked for (built by `config/` from `[waybill]`).
#[derive(Debug, Clone, Default)]
pub struct WaybillOptions {
    /// The shop.
    pub shop: ShopId,
    /// The carrier's Cainiao code; `None`: e-waybills are off.
    pub cp_code: Option<String>,
    /// The waybill account's branch.
    pub branch_code: String,
    /// The cloud-print template.
    pub template_url: String,
    /// `TB` or `TM`.
    pub order_channels_type: String,
    /// Ask for encrypted print data.
    pub need_encrypt: bool,
    /// The warehouse, as registered with the branch.
    pub sender: WaybillParty,
    /// Merge orders of one receiver into one package.
    pub merge_orders: bool,
}

/// Why `get` failed.
#[derive(Debug, thiserror::Error)]
pub enum WaybillGetError {
    /// Refused here (held order, nothing to ship, e-waybills off): nothing was asked.
    #[error("{0}")]
    Refused(String),
    /// No such order.
    #[error("no order with tid {0}")]
    NoOrder(u64),
    /// Cainiao refused the request (its message); it may be asked again after a fix.
    #[error("Cainiao refused the waybill request for package {package}: {error}")]
    Cainiao {
        /// The package.
        package: String,
        /// What Cainiao said.
        error: TopError,
    },
    /// No answer: the next `get` looks the number up first.
    #[error(
        "no answer from Cainiao for package {package} ({error}); the next attempt looks the \
         number up by trade code before asking again"
    )]
    Unknown {
        /// The package.
        package: String,
        /// Why.
        error: TopError,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

impl From<WmsError> for WaybillGetError {
    fn from(e: WmsError) -> Self {
        match e {
            WmsError::NoOrder(t) => WaybillGetError::NoOrder(t),
            WmsError::Refused(m) => WaybillGetError::Refused(m),
            other => WaybillGetError::Store(other.to_string()),
        }
    }
}

/// What `waybill get` shows (ids as strings; the print data only by size).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaybillView {
    /// The package.
    pub package: String,
    /// Its trades.
    pub tids: Vec<String>,
    /// The tracking number.
    pub waybill_code: String,
    /// The carrier asked for.
    pub cp_code: String,
    /// The carrier that carries it (the shipment's `company_code`).
    pub real_cp_code: String,
    /// Whether it was issued before (a reprint).
    pub reprint: bool,
    /// The print job for the floor (`print`, format `cainiao`).
    pub print_job: PrintJobView,
}

/// A print job without its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintJobView {
    /// Job id.
    pub job_id: String,
    /// `cainiao`.
    pub format: String,
    /// The template.
    pub template_url: String,
    /// The print data's size (the data itself goes to the printer only).
    pub data_bytes: usize,
}

impl WaybillView {
    fn of(p: &Package, job: &PrintJob, reprint: bool) -> WaybillView {
        let w = p.live_waybill();
        WaybillView {
            package: p.id.clone(),
            tids: p.tids().iter().map(u64::to_string).collect(),
            waybill_code: w.map(|w| w.waybill_code.clone()).unwrap_or_default(),
            cp_code: w.map(|w| w.cp_code.clone()).unwrap_or_default(),
            real_cp_code: w.map(|w| w.real_cp_code.clone()).unwrap_or_default(),
            reprint,
            print_job: PrintJobView {
                job_id: job.job_id.clone(),
                format: job.format.clone(),
                template_url: job.template_url.clone(),
                data_bytes: job.data.len(),
            },
        }
    }
}

/// The floor's `print` command for a waybill's print job: format `cainiao`, the print data as
/// Cainiao issued it and the template, for a station that runs the Cainiao print component
/// (serial label printers refuse it as the wrong format).
pub fn print_command(job: &PrintJob) -> firmware_bridge::proto::Print<String> {
    firmware_bridge::proto::Print {
        v: firmware_bridge::proto::VERSION,
        job_id: job.job_id.clone(),
        format: firmware_bridge::proto::PrintFormat::Cainiao,
        data: job.data.clone(),
        template_url: Some(job.template_url.clone()),
    }
}

/// Asks for (or reuses) the waybill of `tid`'s package (`n`-th, or a new one of `oids`, or
/// its first) and returns the package and a print job.
#[allow(clippy::too_many_arguments)]
pub async fn get(
    client: &TopClient,
    store: &Store,
    bus: &Bus,
    alerts: &Alerts,
    clock: &Clock,
    opts: &WaybillOptions,
    tid: u64,
    n: Option<u32>,
    oids: Vec<u64>,
) -> Result<(Package, PrintJob, WaybillView), WaybillGetError> {
    let cp_code = opts.cp_code.clone().ok_or_else(|| {
        WaybillGetError::Refused(
            "e-waybills are off: set [waybill] cp_code, branch_code, template_url and the \
             sender in the config"
                .into(),
        )
    })?;
    let shop = opts.shop.clone();
    let merge = opts.merge_orders;
    let plan = write(store, bus, &shop, clock, move |w| {
        w.waybill_request(tid, n, &oids, merge)
    })
    .await?;
    let (package, oaid, items, lookup_first) = match plan {
        WaybillPlan::Have(p) => {
            let id = p.id.clone();
            let job = write(store, bus, &shop, clock, move |w| w.print_job(&id)).await?;
            metrics::counter!("wms_node_waybills_total", "result" => "reprint").increment(1);
            let view = WaybillView::of(&p, &job, true);
            return Ok((p, job, view));
        }
        WaybillPlan::Ask {
            package,
            oaid,
            items,
            lookup_first,
        } => (package, oaid, items, lookup_first),
    };
    let tids = package.tids();
    let mut found: Option<Waybill> = None;
    if lookup_first {
        let first = tids.first().map(u64::to_string).unwrap_or_default();
        match client
            .cainiao_waybill_ii_query_by_tradecode(&[(package.id.clone(), first)])
            .await
        {
            Ok(results) => {
                found = results
                    .into_iter()
                    .filter(|r| r.success != Some(false))
                    .filter_map(|r| r.waybill_cloud_print_response)
                    .find(|w| {
                        w.object_id
                            .as_deref()
                            .is_some_and(|o| o.eq_ignore_ascii_case(&package.id))
                            && w.waybill_code.as_deref().is_some_and(|c| !c.is_empty())
                    });
                if let Some(w) = &found {
                    tracing::info!(
                        package = %package.id,
                        waybill = w.waybill_code.as_deref().unwrap_or(""),
                        "waybill found by trade code after a lost answer"
                    );
                }
            }
            Err(e) => {
                metrics::counter!("wms_node_waybills_total", "result" => "unknown").increment(1);
                return Err(WaybillGetError::Unknown {
                    package: package.id.clone(),
                    error: e,
                });
            }
        }
    }
    let was_found = found.is_some();
    let waybill = match found {
        Some(w) => w,
        None => {
            let req = WaybillRequest {
                cp_code: cp_code.clone(),
                sender: opts.sender.clone(),
                trade_order_info_dtos: vec![WaybillOrder {
                    object_id: package.id.clone(),
                    order_info: WaybillOrderInfo {
                        order_channels_type: opts.order_channels_type.clone(),
                        trade_order_list: tids.iter().map(u64::to_string).collect(),
                    },
                    package_info: WaybillPackage {
                        id: Some(package.id.clone()),
                        items: items
                            .iter()
                            .map(|(name, count)| crate::taobao::api::WaybillItem {
                                name: name.clone(),
                                count: *count,
                            })
                            .collect(),
                        weight: None,
                        volume: None,
                    },
                    recipient: WaybillRecipient {
                        oaid: Some(oaid.clone()),
                        tid: tids.first().map(u64::to_string),
                        ..WaybillRecipient::default()
                    },
                    template_url: opts.template_url.clone(),
                    user_id: None,
                }],
                need_encrypt: opts.need_encrypt.then_some(true),
                product_code: None,
            };
            match client.cainiao_waybill_ii_get(&req).await {
                Ok(modules) => {
                    let Some(w) = modules.into_iter().find(|m| {
                        m.object_id
                            .as_deref()
                            .is_none_or(|o| o.eq_ignore_ascii_case(&package.id))
                    }) else {
                        return Err(WaybillGetError::Unknown {
                            package: package.id.clone(),
                            error: TopError::Decode {
                                method: "cainiao.waybill.ii.get".into(),
                                detail: "no module for the package in the answer".into(),
                            },
                        });
                    };
                    w
                }
                Err(e) if e.may_have_applied() => {
                    metrics::counter!("wms_node_waybills_total", "result" => "unknown")
                        .increment(1);
                    return Err(WaybillGetError::Unknown {
                        package: package.id.clone(),
                        error: e,
                    });
                }
                Err(e) => {
                    metrics::counter!("wms_node_waybills_total", "result" => "refused")
                        .increment(1);
                    let id = package.id.clone();
                    let _ = write(store, bus, &shop, clock, move |w| {
                        w.waybill_refused(&id).map_err(WmsError::from)
                    })
                    .await;
                    if e.api().is_some() {
                        alerts.raise(
                            AlertCode::WaybillRefused,
                            Severity::Warning,
                            format!(
                                "package {} (trade {}): Cainiao refused the waybill request \
                                 ({e}); check [waybill] and the waybill account",
                                package.id,
                                tids.first().copied().unwrap_or(tid)
                            ),
                        );
                    }
                    return Err(WaybillGetError::Cainiao {
                        package: package.id.clone(),
                        error: e,
                    });
                }
            }
        }
    };
    let Some(code) = waybill.waybill_code.clone().filter(|c| !c.is_empty()) else {
        return Err(WaybillGetError::Unknown {
            package: package.id.clone(),
            error: TopError::Decode {
                method: "cainiao.waybill.ii.get".into(),
                detail: "no waybill_code in the answer".into(),
            },
        });
    };
    let record = WaybillRecord {
        cp_code: waybill.cp_code.clone().unwrap_or_else(|| cp_code.clone()),
        real_cp_code: waybill
            .real_cp_code
            .clone()
            .filter(|c| !c.is_empty())
            .or_else(|| waybill.cp_code.clone())
            .unwrap_or(cp_code),
        waybill_code: code,
        parent_waybill_code: waybill
            .parent_waybill_code
            .clone()
            .filter(|c| !c.is_empty()),
        print_data: waybill.print_data.clone().unwrap_or_default(),
        template_url: opts.template_url.clone(),
        issued_ms: clock.now().timestamp_millis(),
        voided_ms: None,
    };
    let id = package.id.clone();
    let (p, job) = write(store, bus, &shop, clock, move |w| {
        let p = w.store_waybill(&id, record.clone())?;
        let job = w.print_job(&p.id)?;
        Ok((p, job))
    })
    .await?;
    alerts.clear(AlertCode::WaybillRefused);
    metrics::counter!(
        "wms_node_waybills_total",
        "result" => if was_found { "found" } else { "issued" }
    )
    .increment(1);
    let view = WaybillView::of(&p, &job, false);
    tracing::info!(package = %p.id, waybill = %view.waybill_code, "e-waybill issued");
    Ok((p, job, view))
}

async fn write<R: Send + 'static>(
    store: &Store,
    bus: &Bus,
    shop: &ShopId,
    clock: &Clock,
    f: impl FnMut(&mut Wms<'_>) -> Result<R, WmsError> + Send + 'static,
) -> Result<R, WmsError> {
    let (shop, bus, now) = (shop.clone(), bus.clone(), clock.now());
    let mut f = f;
    wms::write(store, move |txn| {
        let mut w = Wms::new(txn, &shop, now);
        let r = f(&mut w)?;
        bus.publish_after_commit(shop.as_str(), w.finish()?);
        Ok(r)
    })
    .await
}

/// [`get`] as the operators' API runs it (`ops::goods` implements its `WaybillIssuer` with it).
#[derive(Clone)]
pub struct Issuer {
    /// The Taobao client.
    pub client: TopClient,
    /// The store.
    pub store: Store,
    /// Where the events go.
    pub bus: Bus,
    /// Alerts.
    pub alerts: Alerts,
    /// The clock.
    pub clock: Clock,
    /// `[waybill]`.
    pub opts: WaybillOptions,
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware_bridge::proto::json::{decode_downlink, downlink_to_vec};
    use firmware_bridge::proto::{Downlink, PrintFormat};

    #[test]
    fn a_waybill_reaches_the_floor_as_a_cainiao_print_job_with_its_template() {
        let job = PrintJob {
            job_id: "P1-2".into(),
            format: "cainiao".into(),
            data: r#"{"encryptedData":"AAEC","signature":"s","templateURL":"t","ver":"v"}"#.into(),
            template_url: "http://cloudprint.cainiao.com/template/standard/101".into(),
        };
        let bytes = downlink_to_vec(&Downlink::Print(print_command(&job))).unwrap_or_default();
        let Ok(Downlink::Print(back)) = decode_downlink(&bytes) else {
            panic!("not a print job: {}", String::from_utf8_lossy(&bytes));
        };
        assert_eq!(back.format, PrintFormat::Cainiao);
        assert_eq!(back.job_id, "P1-2");
        assert_eq!(back.data, job.data, "the print data goes as issued");
        assert_eq!(
            back.template_url.as_deref(),
            Some(job.template_url.as_str())
        );
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains(r#""format":"cainiao""#), "{text}");
    }
}
