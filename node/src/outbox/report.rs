//! How the outbox reports itself: the `"outbox"` health check and the status page's section,
//! both from the cached state (neither touches the store).

use super::Operation;
use super::queue::Outbox;
use super::state::LinkStatus;
use crate::ops::health::Status;
use crate::ops::http::{StatusSection, StatusSource};
use crate::store;

impl<Op: Operation> StatusSource for Outbox<Op> {
    fn section(&self) -> StatusSection {
        let (u, s) = {
            let st = self.shared.state();
            (st.usage, st.snapshot())
        };
        let cap = self.shared.store.options().max_bytes;
        let mut rows = vec![
            ("pending".to_owned(), u.count.to_string()),
            ("oldest".to_owned(), format!("{} s", u.oldest_age_secs)),
            ("in flight".to_owned(), s.in_flight.to_string()),
            (
                "link".to_owned(),
                if s.paused {
                    "paused (re-authorize)".to_owned()
                } else {
                    s.link.as_str().to_owned()
                },
            ),
            (
                "bytes".to_owned(),
                if cap > 0 {
                    format!(
                        "{} of {} ({:.0}%)",
                        u.bytes,
                        cap,
                        100.0 * u.bytes as f64 / cap as f64
                    )
                } else {
                    u.bytes.to_string()
                },
            ),
        ];
        if let Some(f) = s.last_failure {
            rows.push(("last failure".to_owned(), f));
        }
        StatusSection {
            title: "Outbox".to_owned(),
            rows,
        }
    }
}
impl<Op: Operation> Outbox<Op> {
    /// Sets the `"outbox"` health check from the cached figures (see
    /// [`OutboxOptions::stall_after`]).
    pub(crate) fn report_health(&self) {
        let Some(health) = self.shared.health.get() else {
            return;
        };
        let (status, message) = self.assess();
        health.set(crate::ops::health::CheckName::Outbox, status, message);
    }

    /// The outbox's health: failing when it stalls (ops wait longer than `stall_after`
    /// while the link is not known to be down) or is paused for re-authorization; degraded
    /// while the link is down (queueing is what it is for).
    pub fn assess(&self) -> (Status, String) {
        let (u, s) = {
            let st = self.shared.state();
            (st.usage, st.snapshot())
        };
        let stall = self.shared.config.stall_after.as_secs();
        let now = store::now_ms();
        let quiet_secs = s.last_success_ms.map(|t| now.saturating_sub(t) / 1000);
        if u.count > 0 && !s.running {
            return (
                Status::Failing,
                format!(
                    "{} ops queued and the delivery loop is not running",
                    u.count
                ),
            );
        }
        if !self.shared.store.is_writable() {
            // The store's own check fails and says why; the outbox is only waiting for it.
            return (
                Status::Degraded,
                format!(
                    "delivery paused while the store cannot record it ({} ops queued)",
                    u.count
                ),
            );
        }
        if s.paused {
            return (
                Status::Failing,
                format!(
                    "delivery paused: re-authorize the shop ({} ops queued)",
                    u.count
                ),
            );
        }
        if s.link == LinkStatus::Down {
            return (
                Status::Degraded,
                format!(
                    "the platform is unreachable; {} ops queued, oldest {} s",
                    u.count, u.oldest_age_secs
                ),
            );
        }
        if u.count > 0 && u.oldest_age_secs > stall && quiet_secs.is_none_or(|q| q > stall) {
            return (
                Status::Failing,
                format!(
                    "stalled: {} ops queued, oldest {} s, nothing delivered for {}",
                    u.count,
                    u.oldest_age_secs,
                    quiet_secs.map_or("ever".to_owned(), |q| format!("{q} s"))
                ),
            );
        }
        (
            Status::Ok,
            format!("{} ops queued, oldest {} s", u.count, u.oldest_age_secs),
        )
    }
}
