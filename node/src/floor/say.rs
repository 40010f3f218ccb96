//! What a device is told about its task: the `task` command and the step and task texts
//! the flows, the holds and the put-backs all say ([`super::flows`], [`super::holds`],
//! [`super::putback`]). Pure functions of a task record; nothing here reads the store.

use crate::wms::tasks::{TaskKind, TaskLine, TaskRecord};
use firmware_bridge::proto::{Downlink, Mode, Step, Task, VERSION, json};

/// The `next` step of a task line: where, what, how many.
pub(super) fn step(line: &TaskLine) -> Step<String> {
    Step {
        location: line.location.clone(),
        code: Some(line.code.clone()),
        qty: Some(line.left()),
        tote: None,
    }
}

/// Where to go next, for people: `A-01-03: 2 x SKU-RED`.
pub(super) fn say_step(line: &TaskLine) -> String {
    match &line.location {
        Some(loc) => format!("{loc}: {} x {}", line.left(), line.code),
        None => format!("{} x {} (no bin on record)", line.left(), line.code),
    }
}

/// The `task` command for `task`.
pub fn task_message(task: &TaskRecord) -> Downlink<String> {
    let what = match task.kind {
        TaskKind::Pick => format!("pick order {}", task.tid),
        TaskKind::PutBack => format!("put back what was picked for order {}", task.tid),
        TaskKind::Pack => format!("pack order {}: scan each item", task.tid),
    };
    let text = match task.next_line() {
        Some(l) => format!("{what}: {}", say_step(l)),
        None => format!("{what}: nothing left"),
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

/// `pick order 123: A-01: 2 x RED (5 units)`.
pub(super) fn say_task(task: &TaskRecord) -> String {
    let what = match task.kind {
        TaskKind::Pick => "pick order",
        TaskKind::PutBack => "put back order",
        TaskKind::Pack => "pack order",
    };
    match task.next_line() {
        Some(l) => format!(
            "{what} {}: {} ({} units left)",
            task.tid,
            say_step(l),
            task.left()
        ),
        None => format!("{what} {}: nothing left", task.tid),
    }
}
