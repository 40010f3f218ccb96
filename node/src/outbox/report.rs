//! How the outbox reports itself: its health check and its section of the status page,
//! both worked out from one reading of the cached state (neither touches the store), so the
//! page never says "ok, 0 queued" above a table that says 9 pending and the link down.

use super::Operation;
use super::queue::Outbox;
use super::state::{DeliveryStatus, LinkStatus, Usage};
use crate::status::health::Status;
use crate::status::i18n::Msg;
use crate::status::{At, Observation, StatusSection, StatusSource, bytes};
use crate::store;

/// One reading of the outbox's state.
struct Reading {
    usage: Usage,
    delivery: DeliveryStatus,
    dead: u64,
    cap: u64,
    writable: bool,
}

impl<Op: Operation> StatusSource for Outbox<Op> {
    fn observe(&self, at: &At<'_>) -> Observation {
        let r = self.read();
        let (status, message) = self.assess_reading(&r, at.now_ms);
        Observation {
            checks: vec![(self.shared.queue.check, status, message)],
            section: Some(self.section_of(&r, at)),
        }
    }
}

impl<Op: Operation> Outbox<Op> {
    fn read(&self) -> Reading {
        let (usage, delivery, dead) = {
            let st = self.shared.state();
            (
                st.usage,
                st.snapshot(),
                st.dead.values().map(|d| d.count).sum(),
            )
        };
        Reading {
            usage,
            delivery,
            dead,
            cap: self.shared.cap().0,
            writable: self.shared.store.is_writable(),
        }
    }

    fn section_of(&self, r: &Reading, at: &At<'_>) -> StatusSection {
        let (u, s) = (&r.usage, &r.delivery);
        let link = if s.paused {
            at.t(Msg::PausedReauthorise)
        } else {
            match (s.link, s.down_since_ms) {
                (LinkStatus::Down, Some(since)) => at.f(
                    Msg::DownSinceAttempts,
                    &[&at.when(since), &s.consecutive_failures],
                ),
                (LinkStatus::Up, _) => at.t(Msg::LinkUp),
                (LinkStatus::Down, None) => at.t(Msg::LinkDown),
                (LinkStatus::Unknown, _) => at.t(Msg::LinkUnknown),
            }
        };
        let mut rows = vec![
            (at.t(Msg::RowLink), link),
            (at.t(Msg::RowPending), u.count.to_string()),
            (
                at.t(Msg::RowOldest),
                if u.count == 0 {
                    "-".to_owned()
                } else {
                    at.age(std::time::Duration::from_secs(u.oldest_age_secs))
                },
            ),
            (at.t(Msg::RowInFlight), s.in_flight.to_string()),
            (at.t(Msg::RowDeadLetters), r.dead.to_string()),
            (
                at.t(Msg::RowSize),
                if r.cap > 0 {
                    at.f(
                        Msg::SizeOfCap,
                        &[
                            &bytes(u.bytes),
                            &bytes(r.cap),
                            &format!("{:.0}", 100.0 * u.bytes as f64 / r.cap as f64),
                        ],
                    )
                } else {
                    bytes(u.bytes)
                },
            ),
            (
                at.t(Msg::RowLastSuccess),
                s.last_success_ms
                    .map_or(at.t(Msg::NoneSinceStart), |t| at.when(t)),
            ),
        ];
        if let (Some(f), Some(t)) = (&s.last_failure, s.last_failure_ms) {
            // A failure the link has recovered from says so, so it does not read as current.
            let recovered = s.last_success_ms.is_some_and(|ok| ok > t);
            rows.push((
                at.t(Msg::RowLastFailure),
                at.f(
                    Msg::FailureAt,
                    &[
                        &at.when(t),
                        f,
                        &if recovered {
                            at.t(Msg::RecoveredSince)
                        } else {
                            String::new()
                        },
                    ],
                ),
            ));
        }
        StatusSection {
            title: at.t(self.shared.queue.title),
            rows,
        }
    }

    /// Sets the outbox's health check from the cached figures (see
    /// [`OutboxOptions::stall_after`]); the delivery loop does so every 5 s, so changes are
    /// logged even when nobody looks.
    pub(crate) fn report_health(&self) {
        let Some(health) = self.shared.health.get() else {
            return;
        };
        let (status, message) = self.assess();
        health.set(self.shared.queue.check, status, message);
    }

    /// The outbox's health: failing when it stalls (ops wait longer than `stall_after`
    /// while the link is not known to be down) or is paused for re-authorization; degraded
    /// while the link is down (queueing is what it is for). A queue that is not essential
    /// (the alert notices) is at worst degraded.
    pub fn assess(&self) -> (Status, String) {
        self.assess_reading(&self.read(), store::now_ms())
    }

    fn assess_reading(&self, r: &Reading, now: u64) -> (Status, String) {
        let (mut status, message) = self.judge(r, now);
        if !self.shared.queue.essential {
            status = status.min(Status::Degraded);
        }
        (status, message)
    }

    fn judge(&self, r: &Reading, now: u64) -> (Status, String) {
        let (u, s) = (&r.usage, &r.delivery);
        let stall = self.shared.config.stall_after.as_secs();
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
        if !r.writable {
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
