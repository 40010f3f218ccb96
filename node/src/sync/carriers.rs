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

use crate::ops::health::{CheckName, Health};
use crate::store::{self, Bytes, Store, StoreError};
use crate::taobao::{Disposition, TopClient};
use firmware_bridge::pace::Backoff;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `code` → [`Carrier`].
pub const CARRIERS: TableDefinition<'static, &'static str, Bytes> =
    TableDefinition::new("carriers");

/// The health check this loop reports (the link itself is the `taobao` check).
pub const CHECK: CheckName = CheckName::Carriers;

/// One carrier as Taobao lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carrier {
    /// `company_code` of a shipment (`YTO`, `SF`, …).
    pub code: String,
    /// Display name.
    pub name: String,
    /// The regex a valid waybill number must match, when Taobao gives one.
    pub reg_mail_no: Option<String>,
}

/// Why an `out_sid` is refused before it becomes a `Ship` op.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaybillError {
    /// The carrier code is not in Taobao's list.
    #[error("unknown carrier code `{0}` (not in taobao.logistics.companies.get)")]
    UnknownCarrier(String),
    /// The number does not match the carrier's `reg_mail_no`.
    #[error("waybill number does not match the rule of carrier `{code}`")]
    Mismatch {
        /// The carrier.
        code: String,
    },
}

impl Carrier {
    /// Whether `out_sid` matches this carrier's rule. A missing or unparsable rule accepts
    /// any non-empty number: Taobao still checks, and refusing a real parcel would be worse.
    pub fn accepts(&self, out_sid: &str) -> bool {
        if out_sid.is_empty() {
            return false;
        }
        match self.reg_mail_no.as_deref().map(regex_lite_full_match) {
            Some(Some(ok)) => ok(out_sid),
            _ => true,
        }
    }
}

/// Compiles `pattern` anchored at both ends; `None` when it does not compile.
fn regex_lite_full_match(pattern: &str) -> Option<impl Fn(&str) -> bool> {
    let anchored = format!(
        "^(?:{})$",
        pattern.trim_start_matches('^').trim_end_matches('$')
    );
    let re = regex::Regex::new(&anchored).ok()?;
    Some(move |s: &str| re.is_match(s))
}

/// Checks `out_sid` against the stored rule of `code`.
pub fn validate_out_sid(store: &Store, code: &str, out_sid: &str) -> Result<(), ValidateError> {
    let carrier: Option<Carrier> = store.read(|txn| store::get(txn, CARRIERS, code))?;
    match carrier {
        None => Err(WaybillError::UnknownCarrier(code.to_owned()).into()),
        Some(c) if c.accepts(out_sid) => Ok(()),
        Some(c) => Err(WaybillError::Mismatch { code: c.code }.into()),
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
    store.read(|txn| {
        let table = match txn.open_table(CARRIERS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            // A damaged row is quarantined by `decode`; the others still count.
            if let Ok(c) = store::decode::<&str, Carrier>(CARRIERS, &k.value(), v.value()) {
                out.push(c);
            }
        }
        Ok(out)
    })
}

/// Replaces the stored list with `carriers` in one durable write.
pub async fn replace(store: &Store, carriers: Vec<Carrier>) -> Result<usize, StoreError> {
    store
        .write(move |txn| {
            let mut table = txn.open_table(CARRIERS)?;
            table.retain(|_, _| false)?;
            drop(table);
            for c in &carriers {
                store::put(txn, CARRIERS, c.code.as_str(), c)?;
            }
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

    #[test]
    fn a_waybill_number_must_match_the_whole_rule() {
        let c = yto();
        assert!(c.accepts("YT1234567890123"));
        assert!(!c.accepts("YT123"));
        assert!(!c.accepts("XYT1234567890123"));
        assert!(!c.accepts(""));
    }

    #[test]
    fn an_unanchored_or_broken_rule_still_judges_sensibly() {
        let mut c = yto();
        c.reg_mail_no = Some("YT\\d{13}".into());
        assert!(!c.accepts("YT1234567890123-extra"));
        c.reg_mail_no = Some("([".into());
        assert!(
            c.accepts("anything"),
            "an unparsable rule must not block shipping"
        );
        c.reg_mail_no = None;
        assert!(c.accepts("X1"));
    }

    #[tokio::test]
    async fn replace_stores_the_list_and_validation_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            crate::store::StoreOptions::new(dir.path().join("s.redb")),
            crate::ops::alert::Alerts::new(),
        )
        .unwrap();
        replace(&store, vec![yto()]).await.unwrap();
        assert_eq!(load(&store).unwrap(), vec![yto()]);
        assert!(validate_out_sid(&store, "YTO", "YT1234567890123").is_ok());
        assert!(matches!(
            validate_out_sid(&store, "YTO", "123"),
            Err(ValidateError::Waybill(WaybillError::Mismatch { .. }))
        ));
        assert!(matches!(
            validate_out_sid(&store, "NOPE", "123"),
            Err(ValidateError::Waybill(WaybillError::UnknownCarrier(_)))
        ));
        replace(&store, vec![]).await.unwrap();
        assert!(load(&store).unwrap().is_empty());
        store.close().await.unwrap();
    }
}
