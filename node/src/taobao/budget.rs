//! The day's count of TOP calls, kept in the store so that a restart does not hand out the
//! app's daily budget (`taobao.daily_call_budget`, TAOBAO.md §7) a second time.
//!
//! The client counts in memory ([`TopClient::calls_today`]); [`keep`] writes the count to the
//! `taobao_calls` table every few seconds while it changes, and [`restore`] starts the count
//! from it at start-up. A crash loses at most one interval of counting, which the budget's
//! headroom (intake stops at 97 %, stock at 90 %) absorbs; a node in a restart loop no longer
//! starts every run at zero.

use super::client::TopClient;
use crate::store::{Bytes, Store, StoreError};
use chrono::NaiveDate;
use redb::TableDefinition;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The `taobao_calls` table (owned by this module), created by its first write.
pub const CALLS: TableDefinition<'static, &'static str, Bytes> =
    TableDefinition::new("taobao_calls");
/// The one key: the node serves one shop through one app.
const TODAY: &str = "today";

/// How often [`keep`] writes a changed count.
pub const KEEP_EVERY: Duration = Duration::from_secs(10);

/// What is stored: the GMT+8 day and the calls counted on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct DayRecord {
    /// Days since 0001-01-01 (chrono's `num_days_from_ce`).
    day: i32,
    calls: u64,
}

/// Starts `client`'s count of today from the store. A count of another day is ignored.
pub fn restore(client: &TopClient, store: &Store) -> Result<(), StoreError> {
    let rec: Option<DayRecord> = store.read(|txn| crate::store::get(txn, CALLS, TODAY))?;
    if let Some(rec) = rec
        && let Some(day) = NaiveDate::from_num_days_from_ce_opt(rec.day)
    {
        client.resume_calls_today(day, rec.calls);
    }
    Ok(())
}

/// Writes `client`'s count of today whenever it has changed, every [`KEEP_EVERY`], and once
/// more at shutdown. A failed write (a full disk) is tried again at the next tick.
pub async fn keep(
    client: TopClient,
    store: Store,
    every: Duration,
    shutdown: CancellationToken,
) -> Result<(), Infallible> {
    let mut written: Option<DayRecord> = None;
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(every) => false,
        };
        let (day, calls) = client.calls_today();
        let rec = DayRecord {
            day: chrono::Datelike::num_days_from_ce(&day),
            calls,
        };
        if written != Some(rec) {
            match store
                .write(move |txn| crate::store::put(txn, CALLS, TODAY, &rec))
                .await
            {
                Ok(()) => written = Some(rec),
                Err(e) => tracing::warn!(error = %e, "could not record today's Taobao call count"),
            }
        }
        if stopping {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Alerts;
    use crate::secret::Secret;
    use crate::store::StoreOptions;
    use crate::taobao::client::{ClientOptions, Params, Session};
    use crate::taobao::limit::RateLimits;

    fn client() -> TopClient {
        // Nothing listens there: every attempt fails at once and still counts.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut o = ClientOptions::new(
            format!("http://127.0.0.1:{port}/router/rest"),
            "k",
            Secret::new("s"),
        );
        o.limits = RateLimits::unlimited();
        o.daily_call_budget = Some(1_000);
        TopClient::new(o, None, Alerts::new()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_restart_goes_on_counting_the_same_day() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(StoreOptions::new(&path), Alerts::new())
                .unwrap_or_else(|e| panic!("{e}"));
            let c = client();
            restore(&c, &store).unwrap_or_else(|e| panic!("{e}"));
            for _ in 0..3 {
                let _ = c
                    .call(
                        "taobao.logistics.offline.send",
                        Params::new(),
                        Session::None,
                    )
                    .await;
            }
            let stop = CancellationToken::new();
            stop.cancel();
            // A cancelled keeper writes once and returns.
            let _ = keep(c.clone(), store.clone(), Duration::from_secs(3600), stop).await;
        }
        let store =
            Store::open(StoreOptions::new(&path), Alerts::new()).unwrap_or_else(|e| panic!("{e}"));
        let c = client();
        assert_eq!(c.calls_today().1, 0);
        restore(&c, &store).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.calls_today().1, 3);
        assert_eq!(c.budget().calls_today, 3);
    }

    #[tokio::test]
    async fn a_count_of_another_day_is_not_restored() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(StoreOptions::new(dir.path().join("s.redb")), Alerts::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let c = client();
        let yesterday = c
            .calls_today()
            .0
            .pred_opt()
            .unwrap_or_else(|| panic!("no day"));
        let rec = DayRecord {
            day: chrono::Datelike::num_days_from_ce(&yesterday),
            calls: 900,
        };
        store
            .write(move |txn| crate::store::put(txn, CALLS, TODAY, &rec))
            .await
            .unwrap_or_else(|e: StoreError| panic!("{e}"));
        restore(&c, &store).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.calls_today().1, 0);
    }

    #[test]
    fn an_empty_store_restores_nothing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(StoreOptions::new(dir.path().join("s.redb")), Alerts::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let c = client();
        restore(&c, &store).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.calls_today().1, 0);
    }
}
