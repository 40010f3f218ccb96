//! Carrier codes and their waybill-number rules, from `taobao.logistics.companies.get`.
//!
//! Fetched at start-up and then daily (DOMAIN.md §8), and kept in the `carriers` table, so a
//! box that restarts offline still validates `out_sid` before it creates a `Ship` op (a
//! mismatch would only come back from Taobao as B60, hours later). The start-up fetch is also
//! the node's first signed call: `/healthz` shows whether Taobao answered.
//!
//! ```text
//!   start ─▶ fetch ─ok─▶ replace table ─▶ sleep refresh_every ─▶ fetch …
//!              └─retry (offline, 5xx, ban)─▶ sleep backoff (full jitter, ≤ 5 min) ─▶ fetch
//!              └─auth / permanent─────────▶ health degraded ─▶ sleep 1 h ─▶ fetch
//! ```
//!
//! Must never: drop the stored list because a fetch failed, or retry in a tight loop.

use crate::status::health::{CheckName, Health};
use crate::store::{Store, StoreError};
use crate::taobao::{Disposition, TopClient};
use firmware_bridge::pace::Backoff;
use std::convert::Infallible;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use crate::wms::carriers::{CARRIERS, Carrier, WaybillError};

/// The health check this loop reports (the link itself is the `taobao` check).
pub const CHECK: CheckName = CheckName::Carriers;

/// Checks `out_sid` against the stored rule of `code`.
pub fn validate_out_sid(store: &Store, code: &str, out_sid: &str) -> Result<(), ValidateError> {
    let carriers = load(store)?;
    match carriers.iter().find(|c| c.code == code) {
        None if carriers.is_empty() => Err(WaybillError::NoList(code.to_owned()).into()),
        None => Err(WaybillError::UnknownCarrier {
            code: code.to_owned(),
            nearest: crate::wms::carriers::nearest(code, &carriers),
        }
        .into()),
        Some(c) if c.accepts(out_sid) => Ok(()),
        Some(c) => Err(WaybillError::Mismatch {
            code: c.code.clone(),
            out_sid: out_sid.to_owned(),
            rule: c.reg_mail_no.clone().unwrap_or_default(),
        }
        .into()),
    }
}

/// [`validate_out_sid`]'s failures.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The number or the carrier is wrong: tell the operator.
    #[error(transparent)]
    Waybill(#[from] WaybillError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every stored carrier, by code.
pub fn load(store: &Store) -> Result<Vec<Carrier>, StoreError> {
    store.read(crate::wms::carriers::all)
}

/// Replaces the stored list with `carriers` in one durable write.
pub async fn replace(store: &Store, carriers: Vec<Carrier>) -> Result<usize, StoreError> {
    store
        .write(move |txn| {
            crate::wms::carriers::replace(txn, &carriers)?;
            Ok(carriers.len())
        })
        .await
}

/// How often the list is fetched again after a success.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// After a success.
    pub refresh_every: Duration,
    /// After an auth or permanent failure (nothing to gain from trying sooner).
    pub after_refusal: Duration,
    /// After a retryable failure.
    pub backoff: Backoff,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            refresh_every: Duration::from_secs(24 * 3600),
            after_refusal: Duration::from_secs(3600),
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
        }
    }
}

/// Fetches the carrier list now and on `schedule` until `shutdown`.
pub async fn run(
    client: TopClient,
    store: Store,
    health: Health,
    schedule: Schedule,
    shutdown: CancellationToken,
) -> Result<(), Infallible> {
    let mut failures = 0u32;
    loop {
        let wait = match client.logistics_companies_get(None).await {
            Ok(list) => {
                failures = 0;
                let carriers: Vec<Carrier> = list
                    .into_iter()
                    .filter_map(|c| {
                        let code = c.code.filter(|s| !s.is_empty())?;
                        Some(Carrier {
                            name: c.name.unwrap_or_else(|| code.clone()),
                            code,
                            reg_mail_no: c.reg_mail_no.filter(|s| !s.is_empty()),
                        })
                    })
                    .collect();
                match replace(&store, carriers).await {
                    Ok(n) => {
                        tracing::info!(carriers = n, "carrier list refreshed from Taobao");
                        metrics::gauge!("wms_node_taobao_carriers").set(n as f64);
                        health.ok(CHECK, format!("Taobao answered; {n} carriers known"));
                        schedule.refresh_every
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot store the carrier list");
                        schedule.after_refusal
                    }
                }
            }
            Err(e) => match e.disposition() {
                Disposition::Retry { after } => {
                    failures = failures.saturating_add(1);
                    let known = load(&store).map(|v| v.len()).unwrap_or(0);
                    health.degraded(
                        CHECK,
                        format!("Taobao not reachable ({failures} tries); {known} carriers stored"),
                    );
                    tracing::warn!(error = %e, tries = failures, "carrier list fetch failed; will retry");
                    after
                        .unwrap_or_default()
                        .max(schedule.backoff.delay(failures, rand::random()))
                }
                Disposition::Auth | Disposition::Permanent | Disposition::AlreadyDone => {
                    health.degraded(CHECK, format!("Taobao refused the carrier list: {e}"));
                    tracing::warn!(error = %e, "carrier list refused");
                    schedule.after_refusal
                }
            },
        };
        tokio::select! {
            // Shutdown: nothing in flight to finish.
            _ = shutdown.cancelled() => return Ok(()),
            // Next fetch.
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yto() -> Carrier {
        Carrier {
            code: "YTO".into(),
            name: "圆通".into(),
            reg_mail_no: Some("^YT\\d{13}$".into()),
        }
    }

    #[tokio::test]
    async fn replace_stores_the_list_and_validation_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            crate::store::StoreOptions::new(dir.path().join("s.redb")),
            crate::alert::Alerts::new(),
        )
        .unwrap();
        assert!(matches!(
            validate_out_sid(&store, "YTO", "YT1234567890123"),
            Err(ValidateError::Waybill(WaybillError::NoList(_)))
        ));
        replace(&store, vec![yto()]).await.unwrap();
        assert_eq!(load(&store).unwrap(), vec![yto()]);
        assert!(validate_out_sid(&store, "YTO", "YT1234567890123").is_ok());
        assert!(matches!(
            validate_out_sid(&store, "YTO", "123"),
            Err(ValidateError::Waybill(WaybillError::Mismatch { .. }))
        ));
        assert!(matches!(
            validate_out_sid(&store, "YT0", "123"),
            Err(ValidateError::Waybill(WaybillError::UnknownCarrier { nearest, .. })) if nearest == ["YTO"]
        ));
        replace(&store, vec![]).await.unwrap();
        assert!(load(&store).unwrap().is_empty());
        store.close().await.unwrap();
    }
}
