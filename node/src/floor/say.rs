//! What a device is told about its task, in the floor's language (`[floor] language`): the
//! `task` command and the step, task and hold-reason texts that the flows, the holds and the
//! put-backs all say ([`super::flows`], [`super::holds`], [`super::putback`]). Pure functions
//! of the records; nothing here reads the store.
//!
//! Every text goes through the catalogue (`status::i18n`, keys `Fl…`); the protocol's
//! machine fields (`next`, `task_id`, `mode`, `remaining`, hold `reason` and `action`) are
//! the same in every language.

use crate::status::i18n::{Lang, Msg};
use crate::wms::OrderRecord;
use crate::wms::tasks::{TaskKind, TaskLine, TaskRecord};
use firmware_bridge::proto::{Downlink, Mode, Step, Task, VERSION, json};

/// The most of a scanned code a text repeats: a code may be up to 4,296 bytes (a QR code),
/// a text only [`firmware_bridge::proto::MAX_TEXT_LEN`], and what to do next must fit after
/// it.
pub const ECHO_LEN: usize = 48;

/// A scanned code as a text repeats it: cut to [`ECHO_LEN`] bytes (on a character boundary,
/// ending in `…` when cut).
pub fn echo(code: &str) -> String {
    json::cut_text(code.trim().to_owned(), ECHO_LEN)
}

/// The `next` step of a task line: where, what, how many.
pub(super) fn step(line: &TaskLine) -> Step<String> {
    Step {
        location: line.location.clone(),
        code: Some(line.code.clone()),
        qty: Some(line.left()),
        tote: None,
    }
}

/// Where to go next, for people: `A-01-03: 2 x SKU-RED` (`A-01-03：SKU-RED × 2`).
pub(super) fn say_step(line: &TaskLine, lang: Lang) -> String {
    match &line.location {
        Some(loc) => lang.f(Msg::FlStep, &[loc, &line.left(), &line.code]),
        None => lang.f(Msg::FlStepNoBin, &[&line.left(), &line.code]),
    }
}

/// The `task` command for `task`, its text in `lang`.
pub fn task_message(task: &TaskRecord, lang: Lang) -> Downlink<String> {
    let what = match task.kind {
        TaskKind::Pick => lang.f(Msg::FlPickOrder, &[&task.tid]),
        TaskKind::PutBack => lang.f(Msg::FlTaskPutBack, &[&task.tid]),
        TaskKind::Pack => lang.f(Msg::FlTaskPack, &[&task.tid]),
    };
    let text = match task.next_line() {
        Some(l) => lang.f(Msg::FlThen, &[&what, &say_step(l, lang)]),
        None => lang.f(Msg::FlNothingLeft, &[&what]),
    };
    Downlink::Task(Task {
        v: VERSION,
        task_id: task.task_id.clone(),
        task_version: task.version,
        mode: if task.kind == TaskKind::Pack {
            Mode::Pack
        } else {
            Mode::Pick
        },
        tid: Some(task.tid.to_string()),
        text: json::fit_text(text),
        next: task.next_line().map(step),
        remaining: Some(task.left()),
    })
}

/// `pick order 123: A-01: 2 x RED (5 units left)`.
pub(super) fn say_task(task: &TaskRecord, lang: Lang) -> String {
    let what = match task.kind {
        TaskKind::Pick => lang.f(Msg::FlPickOrder, &[&task.tid]),
        TaskKind::PutBack => lang.f(Msg::FlPutBackOrder, &[&task.tid]),
        TaskKind::Pack => lang.f(Msg::FlPackOrder, &[&task.tid]),
    };
    match task.next_line() {
        Some(l) => lang.f(Msg::FlUnitsLeft, &[&what, &say_step(l, lang), &task.left()]),
        None => lang.f(Msg::FlNothingLeft, &[&what]),
    }
}

/// A mode as people say it: the mode's own name in English, its word in Chinese.
pub(super) fn mode_word(mode: Mode, lang: Lang) -> &'static str {
    lang.t(match mode {
        Mode::Pick => Msg::FlModePick,
        Mode::Pack => Msg::FlModePack,
        Mode::Ship => Msg::FlModeShip,
        Mode::Receive => Msg::FlModeReceive,
        Mode::Count => Msg::FlModeCount,
    })
}

/// Why `order` is held, in short: `refund, operator` (`退款、人工挂起`).
pub(super) fn reasons(order: &OrderRecord, lang: Lang) -> String {
    order
        .hold_reasons()
        .iter()
        .map(|r| lang.order_word(r.as_str()))
        .collect::<Vec<_>>()
        .join(lang.t(Msg::ListSep))
}

/// Why `order` is held, with each hold's detail: `refund: line 1: WAIT_SELLER_AGREE;
/// operator: buyer called` (the details are as recorded).
pub(super) fn reasons_in_full(order: &OrderRecord, lang: Lang) -> String {
    order
        .holds
        .iter()
        .map(|h| {
            let word = lang.order_word(h.reason.as_str());
            if h.detail.is_empty() {
                word
            } else {
                lang.f(Msg::FlReasonDetail, &[&word, &h.detail])
            }
        })
        .collect::<Vec<_>>()
        .join(lang.t(Msg::PartsSep))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wms::tasks::TaskState;
    use firmware_bridge::proto::MAX_TEXT_LEN;

    fn task(code: &str, location: &str) -> TaskRecord {
        TaskRecord {
            task_id: "pick-3100000000000001".into(),
            kind: TaskKind::Pick,
            tid: 3_100_000_000_000_001,
            device: "scanner/s1".into(),
            version: 1,
            order_version: 1,
            lines: vec![TaskLine {
                code: code.into(),
                barcode: "6900000000011".into(),
                location: Some(location.into()),
                qty: 2,
                done: 0,
            }],
            state: TaskState::Open,
            created_ms: 0,
        }
    }

    #[test]
    fn a_step_and_a_task_read_in_each_language() {
        let t = task("RED-M", "B-02-01");
        assert_eq!(say_step(&t.lines[0], Lang::En), "B-02-01: 2 x RED-M");
        assert_eq!(say_step(&t.lines[0], Lang::Zh), "B-02-01：RED-M × 2");
        assert_eq!(
            say_task(&t, Lang::Zh),
            "拣货订单 3100000000000001：B-02-01：RED-M × 2（还剩 2 件）"
        );
        let Downlink::Task(en) = task_message(&t, Lang::En) else {
            panic!("not a task")
        };
        let Downlink::Task(zh) = task_message(&t, Lang::Zh) else {
            panic!("not a task")
        };
        assert_eq!(en.text, "pick order 3100000000000001: B-02-01: 2 x RED-M");
        assert_eq!(zh.text, "拣货订单 3100000000000001：B-02-01：RED-M × 2");
        // Only the text is the language's.
        assert_eq!(
            Task {
                text: String::new(),
                ..en
            },
            Task {
                text: String::new(),
                ..zh
            }
        );
    }

    /// The longest SKU code and bin the master takes (64 characters, Chinese ones three bytes
    /// each) and a scanned code of 4,000 bytes: the wrong-item text fits in both languages
    /// and says what to scan next in full; only the echo of the scan is cut. Chinese says the
    /// next step first, so a cut never takes it.
    #[test]
    fn texts_with_the_longest_codes_fit_and_keep_the_next_step() {
        let code = "红".repeat(crate::wms::sku::MAX_CODE);
        let location = "库".repeat(crate::wms::sku::MAX_CODE);
        let t = task(&code, &location);
        let scanned = echo(&"9".repeat(4000));
        assert_eq!(
            scanned,
            format!("{}…", "9".repeat(ECHO_LEN - '…'.len_utf8()))
        );
        for lang in [Lang::En, Lang::Zh] {
            let next = say_step(&t.lines[0], lang);
            let text = json::fit_text(lang.f(Msg::FlWrongItem, &[&scanned, &t.tid, &next]));
            assert!(text.len() <= MAX_TEXT_LEN, "{} bytes", text.len());
            assert!(text.contains(&next) && text.contains(&scanned), "{text}");
            let Downlink::Task(task) = task_message(&t, lang) else {
                panic!("not a task")
            };
            assert!(task.text.len() <= MAX_TEXT_LEN && task.text.contains(&next));
        }
        let zh = Lang::Zh.f(Msg::FlWrongItem, &[&scanned, &t.tid, &"A-01：RED × 1"]);
        assert!(zh.starts_with("错货！下一件：A-01：RED × 1（"), "{zh}");
        // Whatever is too long is cut on a character boundary and says so.
        let long = json::fit_text("停".repeat(300));
        assert!(long.len() <= MAX_TEXT_LEN && long.ends_with('…'));
        assert!(long.trim_end_matches('…').chars().all(|c| c == '停'));
    }

    #[test]
    fn an_echo_is_cut_on_a_character_boundary() {
        assert_eq!(echo(" RED-M "), "RED-M");
        let cut = echo(&"码".repeat(40));
        assert!(cut.len() <= ECHO_LEN && cut.ends_with('…'), "{cut}");
        assert!(cut.trim_end_matches('…').chars().all(|c| c == '码'));
    }
}
