//! The node's alerts on the gateway's own `alert` topic (`wms/{site}/gateway/{id}/alert`):
//! from the node to anyone who listens (a fleet dashboard, a floor display, a relay to a pager).
//!
//! ```text
//! {"type":"alert","v":1,"event":"raised","id":"1733560990123000","code":"dead_letter",
//!  "number":201,"severity":"critical","subject":{"kind":"op_kind","id":"ship"},
//!  "message":"1 ship op refused for good (latest: op 17, tid 3141: isv.invalid-parameter) …",
//!  "first_seen":"2026-12-07T06:43:10Z","last_seen":"2026-12-07T06:43:10Z","count":1,
//!  "node":"gw1","site":"wh1"}
//! {"type":"alert","v":1,"event":"resolved","id":"1733560990123000","code":"dead_letter", …,
//!  "count":3,"resolved_at":"2026-12-07T07:02:55Z","node":"gw1","site":"wh1"}
//! ```
//!
//! One message per change of one alert: `raised` when it becomes active, `updated` when its
//! severity or message changes (or, while it keeps being raised, at most once a minute with the
//! new `count` and `last_seen`), `resolved` when its condition clears. `id` names the episode:
//! the same from `raised` to `resolved`, new when the alert is raised again later. Alerts are
//! de-duplicated by `(code, subject)`: at most one is active per pair.
//!
//! `code` is the stable name of the condition and `number` its stable number (docs/OPERATIONS.md
//! lists them with what to do); a reader must accept codes it does not know. `message` is for
//! people and carries ids only, never secrets or buyer data. Times are RFC 3339, UTC. The same
//! JSON is what a plain-JSON alert webhook receives (with `event` and `id`, so a receiver can
//! de-duplicate: delivery is at least once).

use alloc::string::String;
use core::fmt;

use serde::{Deserialize, Serialize};

use super::{Channel, Invalid, Message, Validate, check_id, version_default};

/// Longest `message` a valid alert may carry, in bytes.
pub const MAX_ALERT_TEXT: usize = 1024;
/// Longest `code` or subject `kind`, in bytes.
pub const MAX_ALERT_NAME: usize = 64;
/// Longest subject `id` (a SKU, a trade id, a disk path), in bytes.
pub const MAX_SUBJECT_ID: usize = 256;

wire_enum! {
    /// What happened to the alert.
    pub enum AlertEventKind {
        /// It became active (or active again after it was resolved: a new `id`).
        Raised = "raised",
        /// It is still active and its severity, message, count or last-seen time changed.
        Updated = "updated",
        /// Its condition cleared (or, for a one-off event, it was not seen again for a day).
        Resolved = "resolved",
    }
}

wire_enum! {
    /// How urgent the alert is.
    pub enum AlertSeverity {
        /// Worth knowing.
        Info = "info",
        /// Needs attention today.
        Warning = "warning",
        /// Needs attention now: shipments or stock are at risk.
        Critical = "critical",
    }
}

/// What an alert is about, when it is about one thing: `{"kind":"tid","id":"3141"}`,
/// `{"kind":"sku","id":"A-100"}`, `{"kind":"path","id":"/var/lib/wms-node"}`,
/// `{"kind":"op_kind","id":"ship"}`. Ids are strings (Taobao's ids too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSubject {
    /// What sort of thing (`tid`, `sku`, `path`, `op_kind`, `table`, …).
    pub kind: String,
    /// Which one.
    pub id: String,
}

/// gateway `alert` · One of the node's alerts was raised, changed or resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertMessage {
    /// Protocol version.
    #[serde(default = "version_default")]
    pub v: u16,
    /// What happened to the alert.
    pub event: AlertEventKind,
    /// The episode's id: the same from `raised` to `resolved` (a decimal number as a string).
    pub id: String,
    /// The stable name of the condition (`reauthorize`, `dead_letter`, `store_disk_full`, …).
    pub code: String,
    /// The stable number of the condition (101, 201, 302, …).
    pub number: u16,
    /// How urgent.
    pub severity: AlertSeverity,
    /// What it is about, when it is about one thing.
    pub subject: Option<AlertSubject>,
    /// What happened and what to do, for people (ids only).
    pub message: String,
    /// When this episode was first raised (RFC 3339, UTC).
    pub first_seen: String,
    /// When it was last raised (RFC 3339, UTC).
    pub last_seen: String,
    /// How often it was raised in this episode.
    pub count: u64,
    /// When it was resolved (RFC 3339, UTC); only with `event: resolved`.
    pub resolved_at: Option<String>,
    /// The node (`node.id`), as in the topic.
    pub node: String,
    /// The site (`node.site`), as in the topic.
    pub site: String,
}

impl Message for AlertMessage {
    const TYPE: Option<&'static str> = Some("alert");
    const CHANNEL: Channel = Channel::Alert;
    fn version(&self) -> u16 {
        self.v
    }
}

fn check_name(field: &'static str, s: &str) -> Result<(), Invalid> {
    if s.is_empty() {
        return Err(Invalid {
            field,
            problem: "is empty",
        });
    }
    if s.len() > MAX_ALERT_NAME {
        return Err(Invalid {
            field,
            problem: "is longer than 64 bytes",
        });
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(Invalid {
            field,
            problem: "may only contain a-z, 0-9 and '_'",
        });
    }
    Ok(())
}

fn check_len(
    field: &'static str,
    s: &str,
    max: usize,
    problem: &'static str,
) -> Result<(), Invalid> {
    if s.len() > max {
        return Err(Invalid { field, problem });
    }
    Ok(())
}

impl Validate for AlertMessage {
    fn validate(&self) -> Result<(), Invalid> {
        check_id("id", &self.id)?;
        if !self.id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid {
                field: "id",
                problem: "is not a decimal number",
            });
        }
        check_name("code", &self.code)?;
        if let Some(s) = &self.subject {
            check_name("subject.kind", &s.kind)?;
            if s.id.is_empty() {
                return Err(Invalid {
                    field: "subject.id",
                    problem: "is empty",
                });
            }
            check_len(
                "subject.id",
                &s.id,
                MAX_SUBJECT_ID,
                "is longer than 256 bytes",
            )?;
        }
        check_len(
            "message",
            &self.message,
            MAX_ALERT_TEXT,
            "is longer than 1024 bytes",
        )?;
        if self.count == 0 {
            return Err(Invalid {
                field: "count",
                problem: "must be at least 1",
            });
        }
        if (self.event == AlertEventKind::Resolved) != self.resolved_at.is_some() {
            return Err(Invalid {
                field: "resolved_at",
                problem: "must be present exactly when the event is resolved",
            });
        }
        for (field, t) in [
            ("first_seen", Some(&self.first_seen)),
            ("last_seen", Some(&self.last_seen)),
            ("resolved_at", self.resolved_at.as_ref()),
        ] {
            if let Some(t) = t {
                check_len(field, t, 40, "is not an RFC 3339 time")?;
            }
        }
        check_id("node", &self.node)?;
        check_id("site", &self.site)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::json;
    use alloc::string::ToString;

    fn raised() -> AlertMessage {
        AlertMessage {
            v: 1,
            event: AlertEventKind::Raised,
            id: "1733560990123000".into(),
            code: "dead_letter".into(),
            number: 201,
            severity: AlertSeverity::Critical,
            subject: Some(AlertSubject {
                kind: "op_kind".into(),
                id: "ship".into(),
            }),
            message: "1 ship op refused for good".into(),
            first_seen: "2026-12-07T06:43:10Z".into(),
            last_seen: "2026-12-07T06:43:10Z".into(),
            count: 1,
            resolved_at: None,
            node: "gw1".into(),
            site: "wh1".into(),
        }
    }

    #[test]
    fn an_alert_round_trips_with_its_type_tag_and_without_absent_fields() {
        let m = raised();
        let bytes = json::to_vec(&m).unwrap();
        let text = core::str::from_utf8(&bytes).unwrap();
        assert!(text.contains(r#""type":"alert""#), "{text}");
        assert!(text.contains(r#""event":"raised""#), "{text}");
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v["subject"],
            serde_json::json!({"kind": "op_kind", "id": "ship"})
        );
        assert!(!text.contains("resolved_at"), "{text}");
        assert_eq!(json::decode_alert(&bytes).unwrap(), m);

        let mut none = m.clone();
        none.subject = None;
        let bytes = json::to_vec(&none).unwrap();
        assert!(!core::str::from_utf8(&bytes).unwrap().contains("subject"));
        assert_eq!(json::decode_alert(&bytes).unwrap(), none);
    }

    #[test]
    fn bad_alerts_are_refused_naming_the_field() {
        let resolved_without_time = AlertMessage {
            event: AlertEventKind::Resolved,
            ..raised()
        };
        let cases: [(AlertMessage, &str); 6] = [
            (
                AlertMessage {
                    id: "abc".into(),
                    ..raised()
                },
                "id",
            ),
            (
                AlertMessage {
                    code: "Dead Letter".into(),
                    ..raised()
                },
                "code",
            ),
            (
                AlertMessage {
                    message: "x".repeat(MAX_ALERT_TEXT + 1),
                    ..raised()
                },
                "message",
            ),
            (
                AlertMessage {
                    count: 0,
                    ..raised()
                },
                "count",
            ),
            (resolved_without_time, "resolved_at"),
            (
                AlertMessage {
                    subject: Some(AlertSubject {
                        kind: "tid".into(),
                        id: String::new(),
                    }),
                    ..raised()
                },
                "subject.id",
            ),
        ];
        for (m, field) in cases {
            let bytes = json::to_vec(&m).unwrap();
            let e = json::decode_alert(&bytes).unwrap_err();
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
        let newer = br#"{"type":"alert","v":2}"#;
        assert!(json::decode_alert(newer).is_err());
        assert!(json::decode_alert(b"\xff").is_err());
        let wrong = br#"{"type":"print","v":1,"job_id":"j","format":"zpl","data":"x"}"#;
        assert!(json::decode_alert(wrong).is_err());
        // An unknown code and an unknown field are read (codes grow, fields are added).
        let mut v: serde_json::Value =
            serde_json::from_slice(&json::to_vec(&raised()).unwrap()).unwrap();
        v["code"] = "some_future_code".into();
        v["new_field"] = 3.into();
        let m = json::decode_alert(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(m.code, "some_future_code".to_string());
    }
}
