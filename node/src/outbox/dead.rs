//! The dead letters as people see them: a gauge per op kind and one alert per op kind, both
//! worked out from the dead-letter table itself, at start and after every change to it. So
//! the figure does not start again at 0 after a restart, and the alert is there after a
//! restart for as long as the dead letters are, and resolves when the last one of its kind is
//! retried or dropped (by the running node, or offline before the next start).

use super::queue::Shared;
use super::record::{DeadLetter, QueueTables};
use super::state::DeadKind;
use crate::alert::{Severity, Subject};
use crate::store::StoreError;
use redb::ReadableTable;
use std::collections::BTreeMap;

/// Rows looked at per refresh (a table beyond this is counted from the rows seen).
const SCAN_LIMIT: usize = 100_000;

/// The dead letters by op kind (undecodable rows count under `"?"`).
pub(crate) fn summarize(
    q: &QueueTables,
    r: &redb::ReadTransaction,
) -> Result<BTreeMap<String, DeadKind>, StoreError> {
    let mut out: BTreeMap<String, DeadKind> = BTreeMap::new();
    // A queue nothing was ever written to has no tables yet.
    let Some(t) = super::record::read_table(r, q.dead())? else {
        return Ok(out);
    };
    for row in t.iter()?.take(SCAN_LIMIT) {
        let (k, v) = row?;
        let seq = k.value();
        let (kind, critical, summary, reason) = match postcard::from_bytes::<DeadLetter>(v.value())
        {
            Ok(d) => (
                d.envelope.kind,
                d.envelope.critical,
                d.envelope.summary,
                d.reason,
            ),
            Err(_) => ("?".into(), false, "(undecodable)".into(), String::new()),
        };
        let e = out.entry(kind).or_insert_with(|| DeadKind {
            count: 0,
            critical: false,
            latest: (0, String::new(), String::new()),
        });
        e.count += 1;
        e.critical |= critical;
        if seq >= e.latest.0 {
            e.latest = (seq, summary, reason);
        }
    }
    Ok(out)
}

/// Reads the dead letters and brings the gauges and the alerts in line with them.
pub(crate) fn refresh(shared: &Shared) {
    let q = shared.queue;
    let now = match shared.store.read(|r| summarize(&q.tables, r)) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(queue = q.name, error = %e, "cannot count the dead letters");
            return;
        }
    };
    let before = std::mem::replace(&mut shared.state().dead, now.clone());
    for kind in before.keys().filter(|k| !now.contains_key(*k)) {
        metrics::gauge!("wms_node_outbox_dead_letter_ops", "queue" => q.name,
            "kind" => kind.clone())
        .set(0.0);
        shared
            .alerts
            .clear_about(q.dead_letter_alert, &Subject::op_kind(kind));
    }
    // Alerts restored from the store for kinds that have no dead letters any more (retried
    // or dropped while the node was stopped).
    for subject in shared
        .alerts
        .subjects(q.dead_letter_alert)
        .into_iter()
        .flatten()
    {
        if subject.kind == "op_kind" && !now.contains_key(&subject.id) {
            shared.alerts.clear_about(q.dead_letter_alert, &subject);
        }
    }
    for (kind, d) in &now {
        metrics::gauge!("wms_node_outbox_dead_letter_ops", "queue" => q.name,
            "kind" => kind.clone())
        .set(d.count as f64);
        if before.get(kind) == Some(d) {
            continue;
        }
        let (seq, summary, reason) = &d.latest;
        shared.alerts.raise_about(
            q.dead_letter_alert,
            Subject::op_kind(kind),
            if d.critical {
                Severity::Critical
            } else {
                Severity::Warning
            },
            format!(
                "{n} {kind} op{s} refused for good, kept in the {queue} dead letters (latest: op \
                 {seq}, {summary}: {reason}); {hint}",
                n = d.count,
                s = if d.count == 1 { "" } else { "s" },
                queue = q.name,
                hint = q.dead_letter_hint.replace("SEQ", &seq.to_string()),
            ),
        );
    }
}
