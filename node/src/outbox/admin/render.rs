//! Plain-text rendering of the admin views for `wms-node queue …` (aligned columns, no
//! colours, so it reads well over SSH and in a log).

use super::{ActionResult, ListPage, OpState, OpView, Stats};
use crate::status::i18n::{Lang, Msg, pad, width};
use std::fmt::Write;

/// A table with left-aligned columns separated by two spaces.
struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn render(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(width(cell));
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<&str>, out: &mut String| {
            let mut l = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(c);
                } else {
                    l.push_str(&pad(c, widths[i] + 2));
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(self.header.clone(), &mut out);
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect(), &mut out);
        }
        out
    }
}

/// A duration in seconds, short: `45s`, `12m`, `3h05m`, `2d04h`.
fn ago(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn when(ms: u64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_millis_opt(i64::try_from(ms).unwrap_or(i64::MAX)) {
        chrono::LocalResult::Single(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        _ => format!("{ms} ms"),
    }
}

fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f < K {
        format!("{n} B")
    } else if f < K * K {
        format!("{:.1} KiB", f / K)
    } else if f < K * K * K {
        format!("{:.1} MiB", f / (K * K))
    } else {
        format!("{:.2} GiB", f / (K * K * K))
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// `queue list`.
pub fn render_list(page: &ListPage, lang: Lang) -> String {
    if page.ops.is_empty() {
        return format!("{}\n", lang.t(Msg::QNoOps));
    }
    let now = crate::store::now_ms();
    let table = Table {
        header: [
            Msg::QSeq,
            Msg::QState,
            Msg::QKind,
            Msg::QAge,
            Msg::QTries,
            Msg::QNext,
            Msg::QSummary,
        ]
        .iter()
        .map(|m| lang.t(*m))
        .collect(),
        rows: page
            .ops
            .iter()
            .map(|o| {
                let next = o
                    .next_attempt_at_ms
                    .map(|t| lang.f(Msg::QIn, &[&ago(t.saturating_sub(now) / 1000)]))
                    .unwrap_or_else(|| "-".into());
                let mut summary = clip(&o.summary, 60);
                let err = o.dead_reason.as_ref().or(o.last_error.as_ref());
                if let Some(e) = err {
                    let _ = write!(summary, "  ({})", clip(e, 50));
                }
                vec![
                    format!("{}{}", o.seq, if o.critical { "*" } else { "" }),
                    o.state.as_str().to_owned(),
                    o.kind.clone(),
                    ago(o.age_secs),
                    o.attempts.to_string(),
                    next,
                    summary,
                ]
            })
            .collect(),
    };
    let mut out = table.render();
    let _ = writeln!(out, "{}", lang.t(Msg::QCriticalNote));
    if let Some(next) = page.next_after {
        let _ = writeln!(out, "{}", lang.f(Msg::QMore, &[&next]));
    }
    out
}

/// `queue show`.
pub fn render_op(o: &OpView) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("seq", o.seq.to_string()),
        ("state", o.state.as_str().to_owned()),
        ("kind", o.kind.clone()),
        ("summary", o.summary.clone()),
        ("fifo key", o.fifo_key.clone()),
        (
            "coalesce key",
            o.coalesce_key.clone().unwrap_or_else(|| "-".into()),
        ),
        ("priority", format!("{:?}", o.priority).to_lowercase()),
        ("critical", if o.critical { "yes" } else { "no" }.into()),
        ("idempotency key", o.idempotency_key.clone()),
        (
            "enqueued",
            format!("{} ({} ago)", when(o.enqueued_at_ms), ago(o.age_secs)),
        ),
        ("attempts", o.attempts.to_string()),
    ];
    if let Some(t) = o.last_attempt_at_ms {
        rows.push(("last attempt", when(t)));
    }
    if let Some(e) = &o.last_error {
        rows.push(("last error", e.clone()));
    }
    if let Some(t) = o.next_attempt_at_ms {
        rows.push(("next attempt", when(t)));
    } else if o.state == OpState::Queued {
        rows.push((
            "next attempt",
            "as soon as its key and the rate limit allow".into(),
        ));
    }
    if let Some(r) = o.replaced {
        rows.push(("replaced", format!("op {r} (coalesced)")));
    }
    if let Some(r) = &o.dead_reason {
        rows.push(("dead because", r.clone()));
    }
    if let Some(t) = o.dead_at_ms {
        rows.push(("dead since", when(t)));
    }
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{k:<w$}  {v}");
    }
    out
}

/// `queue stats`.
pub fn render_stats(s: &Stats, lang: Lang) -> String {
    let mut out = String::new();
    let cap = if s.cap_bytes == 0 {
        lang.t(Msg::None_).to_owned()
    } else {
        lang.f(
            Msg::QCapOf,
            &[
                &bytes(s.bytes),
                &bytes(s.cap_bytes),
                &format!("{:.1}", s.cap_used_pct.unwrap_or(0.0)),
                &s.cap_policy,
            ],
        )
    };
    let oldest = match s.oldest_age_secs {
        Some(a) => lang.f(
            Msg::QAgoAt,
            &[&ago(a), &when(s.oldest_enqueued_at_ms.unwrap_or(0))],
        ),
        None => "-".into(),
    };
    let rows = [
        (Msg::QRowPending, s.pending.to_string()),
        (Msg::QRowInFlight, s.in_flight.to_string()),
        (Msg::QRowBackingOff, s.backing_off.to_string()),
        (Msg::QRowDeadLetters, s.dead_letters.to_string()),
        (Msg::QRowOldest, oldest),
        (Msg::QRowBytes, cap),
        (Msg::QRowQuarantined, s.quarantined.to_string()),
        (Msg::QRowStoreFile, bytes(s.file_bytes)),
        (
            Msg::QRowStore,
            lang.f(Msg::QStoreId, &[&s.store_id, &s.schema_version]),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "{}{v}", pad(lang.t(k), 16));
    }
    if !s.by_kind.is_empty() {
        out.push('\n');
        let t = Table {
            header: [Msg::QKind, Msg::QPending, Msg::QBackingOff, Msg::QDead]
                .iter()
                .map(|m| lang.t(*m))
                .collect(),
            rows: s
                .by_kind
                .iter()
                .map(|(k, v)| {
                    vec![
                        k.clone(),
                        v.pending.to_string(),
                        v.backing_off.to_string(),
                        v.dead.to_string(),
                    ]
                })
                .collect(),
        };
        out.push_str(&t.render());
    }
    if s.quarantined > 0 {
        out.push_str(lang.t(Msg::QQuarantineNote));
    }
    out
}

/// `queue retry` / `queue drop`.
pub fn render_action(a: &ActionResult) -> String {
    match a.action.as_str() {
        "requeued" => format!("op {}: back in the queue from the dead letters\n", a.seq),
        "retry_now" => format!(
            "op {}: backoff cleared; it goes next when its key allows\n",
            a.seq
        ),
        "dropped" => format!("op {}: dropped\n", a.seq),
        other => format!("op {}: {other}\n", a.seq),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Priority;

    fn view(seq: u64, summary: &str) -> OpView {
        OpView {
            seq,
            kind: "ship".into(),
            summary: summary.into(),
            state: OpState::Queued,
            fifo_key: "trade:1".into(),
            coalesce_key: None,
            priority: Priority::Urgent,
            critical: true,
            idempotency_key: "abc-1".into(),
            enqueued_at_ms: 0,
            age_secs: 3725,
            attempts: 2,
            last_error: Some("isp.remote-service-error".into()),
            last_attempt_at_ms: None,
            next_attempt_at_ms: None,
            replaced: None,
            dead_reason: None,
            dead_at_ms: None,
        }
    }

    #[test]
    fn list_columns_line_up_whatever_the_cell_widths() {
        let page = ListPage {
            ops: vec![view(7, "tid 1 oids 1,2"), view(12345, "tid 99")],
            next_after: Some(12345),
        };
        let text = render_list(&page, Lang::En);
        let lines: Vec<&str> = text.lines().collect();
        let col = |l: &str| l.find("queued").or_else(|| l.find("STATE"));
        assert_eq!(col(lines[0]), col(lines[1]));
        assert_eq!(col(lines[1]), col(lines[2]));
        assert!(lines[1].starts_with("7*"));
        assert!(text.contains("1h02m"));
        assert!(text.contains("more: --after 12345"));

        // In Chinese the headers take two columns a character, and the columns still line
        // up on the terminal.
        let zh = render_list(&page, Lang::Zh);
        let lines: Vec<&str> = zh.lines().collect();
        assert!(lines[0].starts_with("序号"), "{zh}");
        let col = |l: &str| {
            let at = l.find("queued").or_else(|| l.find("状态")).unwrap();
            width(&l[..at])
        };
        assert_eq!(col(lines[0]), col(lines[1]), "{zh}");
        assert_eq!(col(lines[1]), col(lines[2]), "{zh}");
        assert!(zh.contains("更多：--after 12345"), "{zh}");
    }

    #[test]
    fn ages_are_short_and_readable() {
        assert_eq!(ago(5), "5s");
        assert_eq!(ago(600), "10m");
        assert_eq!(ago(3 * 3600 + 5 * 60), "3h05m");
        assert_eq!(ago(2 * 86_400 + 4 * 3600), "2d04h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(clip("abcdef", 4), "abc…");
    }

    #[test]
    fn show_lists_each_field_on_its_own_line() {
        let text = render_op(&view(7, "tid 1"));
        assert!(text.contains("idempotency key  abc-1"));
        assert!(text.contains("last error       isp.remote-service-error"));
    }
}
