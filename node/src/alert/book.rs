//! The alert book: the active alerts, the recently resolved ones, and the changes not yet
//! written to the store. Pure state: no clock (times are passed in), no I/O, no logging;
//! [`super::Alerts`] wraps it in a lock and does those.
//!
//! ```text
//!  raise(key) ── not active ──▶ new episode (id++), count 1 ─────────────▶ event raised
//!       │        active ───────▶ same episode: count+1, last seen, message,
//!       │                        severity ─▶ event updated if severity or message changed,
//!       │                                    else at most once a minute
//!  clear(key) ── active ───────▶ resolved: out of `active`, into `history` ─▶ event resolved
//!  expire(now) ─ one-off codes not raised again within their time ─▶ resolved
//! ```
//!
//! Every change also leaves the episode's latest snapshot in `pending`, which `ops::notify`
//! takes, writes to the store and (if the write fails) puts back. `urgent` says whether a
//! change among them must reach the store (and the webhook) now: a new, resolved or re-graded
//! alert; count and last-seen updates may wait for the next flush.

use super::{Alert, AlertCode, AlertEvent, AlertEventKind, AlertKey, Severity, Subject};
use std::collections::{BTreeMap, VecDeque};

/// Active alerts beyond this many are folded into one alert per code without a subject
/// (a storm of subjects must not grow memory, the store or the webhook without bound).
pub const MAX_ACTIVE: usize = 1000;

/// Resolved alerts kept unless `[alerts] history` says otherwise.
pub const DEFAULT_HISTORY: usize = 200;

/// An `updated` event for a count-only change goes out at most this often per alert.
const UPDATE_EVENT_EVERY_MS: u64 = 60_000;

struct Entry {
    alert: Alert,
    /// When the last event about it went out (Unix ms).
    evented_ms: u64,
}

/// What [`Book::raise`] did.
#[derive(Debug)]
pub struct Raised {
    /// The event to hand to subscribers, if this change deserves one.
    pub event: Option<AlertEvent>,
    /// A new episode.
    pub fresh: bool,
    /// The severity it had, when this raise changed it.
    pub regraded: Option<Severity>,
}

/// The state of one key, for deciding what to tell people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// Active: the alert as it is now.
    Active(Alert),
    /// Not active; the last resolved episode of the key if still in the history.
    Resolved(Option<Alert>),
}

/// See the module doc.
pub struct Book {
    active: BTreeMap<AlertKey, Entry>,
    /// Resolved episodes, oldest first, at most `history_cap`.
    history: VecDeque<Alert>,
    history_cap: usize,
    next_id: u64,
    /// Episodes changed since [`Book::take_pending`], by id: their latest snapshot.
    pending: BTreeMap<u64, Alert>,
    urgent: bool,
    /// Whether the store's alerts were merged in ([`Book::restore`]).
    restored: bool,
    /// Clears made before that (code, subject or all, when): they also resolve the stored
    /// alerts they match, which the clear could not see yet.
    early_clears: Vec<(AlertCode, Option<Subject>, u64)>,
}

impl Book {
    /// An empty book whose first episode id is `first_id`.
    pub fn new(first_id: u64) -> Book {
        Book {
            active: BTreeMap::new(),
            history: VecDeque::new(),
            history_cap: DEFAULT_HISTORY,
            next_id: first_id.max(1),
            pending: BTreeMap::new(),
            urgent: false,
            restored: false,
            early_clears: Vec::new(),
        }
    }

    /// Raises `key` at `now_ms`.
    pub fn raise(
        &mut self,
        mut key: AlertKey,
        severity: Severity,
        mut message: String,
        now_ms: u64,
    ) -> Raised {
        if !self.active.contains_key(&key)
            && self.active.len() >= MAX_ACTIVE
            && let Some(s) = key.subject.take()
        {
            message = format!(
                "{message} [{s}; more than {MAX_ACTIVE} alerts are active, so further \
                 subjects are folded into this one]"
            );
            super::cut(&mut message, super::MAX_MESSAGE);
        }
        if let Some(e) = self.active.get_mut(&key) {
            let a = &mut e.alert;
            let regraded = (a.severity != severity).then_some(a.severity);
            let reworded = a.message != message;
            a.severity = severity;
            a.message = message;
            a.last_seen_ms = a.last_seen_ms.max(now_ms);
            a.count = a.count.saturating_add(1);
            let due = now_ms.saturating_sub(e.evented_ms) >= UPDATE_EVENT_EVERY_MS;
            let event = (regraded.is_some() || reworded || due).then(|| {
                e.evented_ms = now_ms;
                AlertEvent {
                    kind: AlertEventKind::Updated,
                    alert: e.alert.clone(),
                }
            });
            self.urgent |= regraded.is_some();
            self.pending.insert(e.alert.id, e.alert.clone());
            return Raised {
                event,
                fresh: false,
                regraded,
            };
        }
        let alert = Alert {
            id: self.next_id,
            code: key.code,
            severity,
            subject: key.subject.clone(),
            message,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            count: 1,
            resolved_ms: None,
        };
        self.next_id += 1;
        self.urgent = true;
        self.pending.insert(alert.id, alert.clone());
        self.active.insert(
            key,
            Entry {
                alert: alert.clone(),
                evented_ms: now_ms,
            },
        );
        Raised {
            event: Some(AlertEvent {
                kind: AlertEventKind::Raised,
                alert,
            }),
            fresh: true,
            regraded: None,
        }
    }

    /// Resolves the active alerts of `code` (about `subject` only, if given).
    pub fn clear(
        &mut self,
        code: AlertCode,
        subject: Option<&Subject>,
        now_ms: u64,
    ) -> Vec<AlertEvent> {
        if !self.restored {
            // The latest clear per (code, subject) is what counts; bounded by the keys.
            self.early_clears
                .retain(|(c, s, _)| !(*c == code && s.as_ref() == subject));
            if self.early_clears.len() < MAX_ACTIVE {
                self.early_clears.push((code, subject.cloned(), now_ms));
            }
        }
        let keys: Vec<AlertKey> = match subject {
            Some(s) => {
                let key = AlertKey {
                    code,
                    subject: Some(s.clone()),
                };
                if self.active.contains_key(&key) {
                    vec![key]
                } else {
                    Vec::new()
                }
            }
            None => self.keys_of(code),
        };
        keys.into_iter()
            .filter_map(|k| self.resolve(&k, now_ms))
            .collect()
    }

    /// Resolves the one-off alerts not raised again within their time.
    pub fn expire(&mut self, now_ms: u64) -> Vec<AlertEvent> {
        let due: Vec<AlertKey> = self
            .active
            .iter()
            .filter(|(k, e)| {
                k.code.expires_after().is_some_and(|ttl| {
                    let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                    now_ms >= e.alert.last_seen_ms.saturating_add(ttl)
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        due.iter().filter_map(|k| self.resolve(k, now_ms)).collect()
    }

    fn keys_of(&self, code: AlertCode) -> Vec<AlertKey> {
        // Keys sort by code first: the alerts of one code are one range.
        self.active
            .range(
                AlertKey {
                    code,
                    subject: None,
                }..,
            )
            .take_while(|(k, _)| k.code == code)
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn resolve(&mut self, key: &AlertKey, now_ms: u64) -> Option<AlertEvent> {
        let mut a = self.active.remove(key)?.alert;
        a.resolved_ms = Some(now_ms.max(a.last_seen_ms));
        self.urgent = true;
        self.pending.insert(a.id, a.clone());
        self.history.push_back(a.clone());
        self.trim_history();
        Some(AlertEvent {
            kind: AlertEventKind::Resolved,
            alert: a,
        })
    }

    fn trim_history(&mut self) {
        while self.history.len() > self.history_cap {
            self.history.pop_front();
        }
    }

    /// Whether any alert of `code` is active.
    pub fn is_active(&self, code: AlertCode) -> bool {
        !self.keys_of(code).is_empty()
    }

    /// The active alert `code` about `subject`.
    pub fn get(&self, code: AlertCode, subject: Option<&Subject>) -> Option<Alert> {
        let key = AlertKey {
            code,
            subject: subject.cloned(),
        };
        self.active.get(&key).map(|e| e.alert.clone())
    }

    /// The subjects of the active alerts of `code`.
    pub fn subjects(&self, code: AlertCode) -> Vec<Option<Subject>> {
        self.keys_of(code).into_iter().map(|k| k.subject).collect()
    }

    /// The state of `key`.
    pub fn state_of(&self, key: &AlertKey) -> KeyState {
        match self.active.get(key) {
            Some(e) => KeyState::Active(e.alert.clone()),
            None => KeyState::Resolved(
                self.history
                    .iter()
                    .rev()
                    .find(|a| a.code == key.code && a.subject == key.subject)
                    .cloned(),
            ),
        }
    }

    /// The active alerts, most severe first, then oldest first.
    pub fn active(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.active.values().map(|e| e.alert.clone()).collect();
        v.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.first_seen_ms.cmp(&b.first_seen_ms))
                .then(a.id.cmp(&b.id))
        });
        v
    }

    /// The resolved alerts kept, newest first.
    pub fn history(&self) -> Vec<Alert> {
        self.history.iter().rev().cloned().collect()
    }

    /// Active alerts by code and severity.
    pub fn counts(&self) -> BTreeMap<(AlertCode, Severity), usize> {
        let mut m = BTreeMap::new();
        for e in self.active.values() {
            *m.entry((e.alert.code, e.alert.severity)).or_insert(0) += 1;
        }
        m
    }

    /// The changed episodes since the last call (latest snapshot each, by id), and whether
    /// any change among them is urgent.
    pub fn take_pending(&mut self) -> (Vec<Alert>, bool) {
        let urgent = std::mem::take(&mut self.urgent);
        let v = std::mem::take(&mut self.pending).into_values().collect();
        (v, urgent)
    }

    /// Whether a change waiting to be taken is urgent (see the module doc).
    pub fn is_urgent(&self) -> bool {
        self.urgent
    }

    /// Whether changes wait to be taken.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Puts back changes whose write failed, unless the episode changed again meanwhile
    /// (the newer snapshot is the one to write).
    pub fn put_back(&mut self, alerts: Vec<Alert>) {
        for a in alerts {
            self.urgent = true;
            self.pending.entry(a.id).or_insert(a);
        }
    }

    /// The id the next episode gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Merges what the store kept (its active alerts and history, oldest first) into the
    /// book, which may already hold alerts raised before the store was open. An alert
    /// raised meanwhile whose key was active in the store continues the stored episode (its
    /// id, first seen and count), with the newer message and severity. Episode ids continue
    /// after `next_id` (the largest the store has seen, plus one).
    pub fn restore(
        &mut self,
        stored_active: Vec<Alert>,
        stored_history: Vec<Alert>,
        next_id: u64,
        history_cap: usize,
    ) {
        self.history_cap = history_cap;
        self.restored = true;
        let early_clears = std::mem::take(&mut self.early_clears);
        self.next_id = self.next_id.max(next_id);
        let mut history: VecDeque<Alert> = stored_history.into();
        history.extend(std::mem::take(&mut self.history));
        self.history = history;
        self.trim_history();
        for stored in stored_active {
            let key = stored.key();
            let cleared = early_clears.iter().rev().find(|(code, subject, _)| {
                *code == key.code
                    && subject
                        .as_ref()
                        .is_none_or(|s| key.subject.as_ref() == Some(s))
            });
            if let (Some(&(_, _, at)), false) = (cleared, self.active.contains_key(&key)) {
                // Its owner found the condition gone before the store was read.
                let mut a = stored;
                a.resolved_ms = Some(at.max(a.last_seen_ms));
                self.urgent = true;
                self.pending.insert(a.id, a.clone());
                self.history.push_back(a);
                self.trim_history();
                continue;
            }
            match self.active.get_mut(&key) {
                Some(e) => {
                    let newer = &e.alert;
                    self.pending.remove(&newer.id);
                    let merged = Alert {
                        id: stored.id,
                        severity: newer.severity,
                        message: newer.message.clone(),
                        last_seen_ms: newer.last_seen_ms.max(stored.last_seen_ms),
                        count: stored.count.saturating_add(newer.count),
                        ..stored
                    };
                    self.pending.insert(merged.id, merged.clone());
                    self.urgent = true;
                    e.alert = merged;
                }
                None => {
                    self.active.insert(
                        key,
                        Entry {
                            alert: stored,
                            evented_ms: 0,
                        },
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: AlertCode, subject: Option<&str>) -> AlertKey {
        AlertKey {
            code,
            subject: subject.map(Subject::sku),
        }
    }

    #[test]
    fn a_new_key_opens_an_episode_and_repeats_only_count() {
        let mut b = Book::new(10);
        let r = b.raise(
            key(AlertCode::Clock, None),
            Severity::Warning,
            "m".into(),
            1_000,
        );
        assert!(r.fresh);
        let ev = r.event.unwrap();
        assert_eq!(ev.kind, AlertEventKind::Raised);
        assert_eq!(ev.alert.id, 10);
        // The same message within a minute: no event, but the count and last seen move.
        let r = b.raise(
            key(AlertCode::Clock, None),
            Severity::Warning,
            "m".into(),
            2_000,
        );
        assert!(!r.fresh && r.event.is_none() && r.regraded.is_none());
        let a = b.get(AlertCode::Clock, None).unwrap();
        assert_eq!(
            (a.id, a.count, a.first_seen_ms, a.last_seen_ms),
            (10, 2, 1_000, 2_000)
        );
        // A minute after the last event, an update goes out even for the count alone.
        let r = b.raise(
            key(AlertCode::Clock, None),
            Severity::Warning,
            "m".into(),
            61_000,
        );
        assert_eq!(r.event.unwrap().kind, AlertEventKind::Updated);
        // A new message or severity is an update at once; a severity change is a re-grade.
        let r = b.raise(
            key(AlertCode::Clock, None),
            Severity::Critical,
            "m".into(),
            61_500,
        );
        assert_eq!(r.regraded, Some(Severity::Warning));
        assert_eq!(r.event.unwrap().alert.severity, Severity::Critical);
        let r = b.raise(
            key(AlertCode::Clock, None),
            Severity::Critical,
            "n".into(),
            61_600,
        );
        assert_eq!(r.event.unwrap().alert.message, "n");
    }

    #[test]
    fn clearing_resolves_into_the_history_and_a_new_raise_is_a_new_episode() {
        let mut b = Book::new(1);
        b.raise(
            key(AlertCode::StoreCap, None),
            Severity::Warning,
            "80%".into(),
            100,
        );
        let ev = b.clear(AlertCode::StoreCap, None, 500);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, AlertEventKind::Resolved);
        assert_eq!(ev[0].alert.resolved_ms, Some(500));
        assert!(
            b.clear(AlertCode::StoreCap, None, 600).is_empty(),
            "once only"
        );
        let r = b.raise(
            key(AlertCode::StoreCap, None),
            Severity::Warning,
            "81%".into(),
            700,
        );
        assert!(r.fresh);
        assert_eq!(r.event.unwrap().alert.id, 2);
        assert_eq!(b.history().len(), 1);
        assert!(matches!(
            b.state_of(&key(AlertCode::StoreCap, None)),
            KeyState::Active(a) if a.id == 2
        ));
        b.clear(AlertCode::StoreCap, None, 800);
        assert!(matches!(
            b.state_of(&key(AlertCode::StoreCap, None)),
            KeyState::Resolved(Some(a)) if a.id == 2
        ));
    }

    #[test]
    fn subjects_are_separate_and_clear_by_code_takes_them_all() {
        let mut b = Book::new(1);
        for s in ["a", "b", "c"] {
            b.raise(
                key(AlertCode::DeadLetter, Some(s)),
                Severity::Warning,
                s.into(),
                1,
            );
        }
        b.raise(
            key(AlertCode::Clock, None),
            Severity::Warning,
            "x".into(),
            1,
        );
        assert_eq!(b.subjects(AlertCode::DeadLetter).len(), 3);
        let ev = b.clear(AlertCode::DeadLetter, Some(&Subject::sku("b")), 2);
        assert_eq!(ev.len(), 1);
        let ev = b.clear(AlertCode::DeadLetter, None, 3);
        assert_eq!(ev.len(), 2);
        assert!(b.is_active(AlertCode::Clock));
        assert!(!b.is_active(AlertCode::DeadLetter));
    }

    #[test]
    fn one_off_alerts_expire_a_day_after_they_were_last_seen_and_conditions_never() {
        let mut b = Book::new(1);
        let day = 24 * 3600 * 1000;
        b.raise(
            key(AlertCode::OutboxDropped, None),
            Severity::Warning,
            "x".into(),
            0,
        );
        b.raise(
            key(AlertCode::OutboxDropped, None),
            Severity::Warning,
            "x".into(),
            1000,
        );
        b.raise(
            key(AlertCode::Reauthorize, None),
            Severity::Critical,
            "y".into(),
            0,
        );
        assert!(b.expire(day).is_empty(), "seen again at 1 s");
        let ev = b.expire(day + 1000);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].alert.code, AlertCode::OutboxDropped);
        assert!(b.expire(100 * day).is_empty());
        assert!(b.is_active(AlertCode::Reauthorize));
    }

    #[test]
    fn the_history_is_bounded_and_newest_first() {
        let mut b = Book::new(1);
        b.restore(Vec::new(), Vec::new(), 1, 3);
        for i in 0..5 {
            b.raise(
                key(AlertCode::Clock, None),
                Severity::Warning,
                "x".into(),
                i,
            );
            b.clear(AlertCode::Clock, None, i);
        }
        let h = b.history();
        assert_eq!(h.iter().map(|a| a.id).collect::<Vec<_>>(), [5, 4, 3]);
    }

    #[test]
    fn a_storm_of_subjects_is_folded_into_one_alert_per_code() {
        let mut b = Book::new(1);
        for i in 0..MAX_ACTIVE + 50 {
            b.raise(
                key(AlertCode::DeadLetter, Some(&i.to_string())),
                Severity::Warning,
                "x".into(),
                1,
            );
        }
        assert_eq!(b.active().len(), MAX_ACTIVE + 1);
        let folded = b.get(AlertCode::DeadLetter, None).unwrap();
        assert_eq!(folded.count, 50);
        assert!(folded.message.contains("folded"), "{}", folded.message);
    }

    #[test]
    fn pending_changes_are_taken_once_and_put_back_unless_newer() {
        let mut b = Book::new(1);
        b.raise(
            key(AlertCode::Clock, None),
            Severity::Warning,
            "x".into(),
            1,
        );
        let (p, urgent) = b.take_pending();
        assert!(urgent);
        assert_eq!(p.len(), 1);
        assert_eq!(b.take_pending().0.len(), 0);
        // A count-only change is pending but not urgent.
        b.raise(
            key(AlertCode::Clock, None),
            Severity::Warning,
            "x".into(),
            2,
        );
        let (p, urgent) = b.take_pending();
        assert!(!urgent);
        assert_eq!(p[0].count, 2);
        // Its write failed, and meanwhile it was raised again: the newer snapshot stays.
        b.raise(
            key(AlertCode::Clock, None),
            Severity::Warning,
            "x".into(),
            3,
        );
        b.put_back(p);
        let (p, urgent) = b.take_pending();
        assert!(urgent, "a put-back is written at once");
        assert_eq!(p[0].count, 3);
    }

    #[test]
    fn a_clear_before_the_restore_resolves_the_stored_alert_it_matches() {
        let mut b = Book::new(100);
        b.clear(AlertCode::Reauthorize, None, 50);
        b.clear(AlertCode::DeadLetter, Some(&Subject::sku("a")), 50);
        let stored = |id, code, subject: Option<&str>| Alert {
            id,
            code,
            severity: Severity::Critical,
            subject: subject.map(Subject::sku),
            message: "old".into(),
            first_seen_ms: 10,
            last_seen_ms: 20,
            count: 1,
            resolved_ms: None,
        };
        b.restore(
            vec![
                stored(1, AlertCode::Reauthorize, None),
                stored(2, AlertCode::DeadLetter, Some("a")),
                stored(3, AlertCode::DeadLetter, Some("b")),
            ],
            Vec::new(),
            4,
            10,
        );
        assert!(!b.is_active(AlertCode::Reauthorize));
        assert_eq!(
            b.subjects(AlertCode::DeadLetter),
            vec![Some(Subject::sku("b"))]
        );
        let (pending, urgent) = b.take_pending();
        assert!(urgent);
        assert_eq!(
            pending.iter().filter(|a| a.resolved_ms == Some(50)).count(),
            2
        );
        // After the restore, clears are not remembered any more.
        b.clear(AlertCode::Clock, None, 60);
        assert!(b.early_clears.is_empty());
    }

    #[test]
    fn restoring_merges_an_alert_raised_before_the_store_was_open_into_its_stored_episode() {
        let mut b = Book::new(5_000);
        b.raise(
            key(AlertCode::StoreDiskFull, None),
            Severity::Critical,
            "full".into(),
            900,
        );
        b.raise(
            key(AlertCode::Clock, None),
            Severity::Warning,
            "clock".into(),
            900,
        );
        let stored = Alert {
            id: 40,
            code: AlertCode::StoreDiskFull,
            severity: Severity::Warning,
            subject: None,
            message: "old".into(),
            first_seen_ms: 100,
            last_seen_ms: 200,
            count: 7,
            resolved_ms: None,
        };
        let old = Alert {
            id: 39,
            resolved_ms: Some(50),
            ..stored.clone()
        };
        b.restore(vec![stored], vec![old], 41, 10);
        let a = b.get(AlertCode::StoreDiskFull, None).unwrap();
        assert_eq!(
            (a.id, a.first_seen_ms, a.last_seen_ms, a.count),
            (40, 100, 900, 8)
        );
        assert_eq!(
            (a.severity, a.message.as_str()),
            (Severity::Critical, "full")
        );
        let (pending, _) = b.take_pending();
        let ids: Vec<u64> = pending.iter().map(|a| a.id).collect();
        assert!(ids.contains(&40) && !ids.contains(&5_000), "{ids:?}");
        assert_eq!(b.history().len(), 1);
        // Ids keep increasing past both the book's and the store's.
        assert!(b.next_id() >= 5_002);
        let r = b.raise(
            key(AlertCode::TaobaoAppBan, None),
            Severity::Warning,
            "b".into(),
            1,
        );
        assert!(r.event.unwrap().alert.id >= 5_002);
    }
}
