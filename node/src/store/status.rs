//! The store as operators see it: the status page's "Store" section (file, size, free disk,
//! writable or why not) and the `store` check, from one reading; the size and free-disk
//! gauges.

use super::Store;
use crate::status::health::{CheckName, Status};
use crate::status::i18n::Msg;
use crate::status::{At, Observation, StatusSection, StatusSource, bytes};
use std::path::Path;

/// Space available to unprivileged writers on the file system holding `path`.
pub(crate) fn free_bytes(path: &Path) -> Option<u64> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

impl StatusSource for Store {
    fn observe(&self, at: &At<'_>) -> Observation {
        let health = self.health();
        let size = self.file_bytes();
        let free = self.disk_free_bytes();
        metrics::gauge!("wms_node_store_file_bytes").set(size as f64);
        if let Some(f) = free {
            metrics::gauge!("wms_node_store_disk_free_bytes").set(f as f64);
        }
        let state = match &health.problem {
            None => at.t(Msg::Writable),
            Some(p) => at.f(Msg::NotWritableSince, &[&at.when(health.since_ms), p]),
        };
        let check = match &health.problem {
            None => (Status::Ok, "open; writes are durable".to_owned()),
            Some(p) => (Status::Failing, p.clone()),
        };
        Observation {
            checks: vec![(CheckName::Store, check.0, check.1)],
            section: Some(StatusSection {
                title: at.t(Msg::SecStore),
                rows: vec![
                    (at.t(Msg::RowState), state),
                    (
                        at.t(Msg::RowFile),
                        self.options().path.display().to_string(),
                    ),
                    (at.t(Msg::RowSize), bytes(size)),
                    (
                        at.t(Msg::RowFreeDisk),
                        free.map_or(at.t(Msg::Unknown), bytes),
                    ),
                ],
            }),
        }
    }
}
