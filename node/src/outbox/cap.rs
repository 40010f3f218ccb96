//! The byte cap as people see it: the gauges of the queue's size and the `store_cap` alert,
//! raised at the configured fractions of `store.max_bytes` and cleared with a margin (for the
//! queues the cap applies to: [`Queue::capped`](super::Queue::capped)).

use super::queue::Shared;
use crate::alert::{AlertCode, Severity};

/// Publishes the byte gauges and raises or clears the cap alerts.
pub(crate) fn report_usage(shared: &Shared, bytes: u64, count: u64) {
    {
        let mut s = shared.state();
        s.usage.bytes = bytes;
        s.usage.count = count;
    }
    let queue = shared.queue.name;
    metrics::gauge!("wms_node_outbox_bytes", "queue" => queue).set(bytes as f64);
    metrics::gauge!("wms_node_outbox_ops", "queue" => queue).set(count as f64);
    let (cap, policy) = shared.cap();
    metrics::gauge!("wms_node_outbox_cap_bytes", "queue" => queue).set(cap as f64);
    if cap == 0 {
        return;
    }
    let thresholds = &shared.config.cap_alert_thresholds;
    let pct = 100.0 * bytes as f64 / cap as f64;
    match cap_level(bytes, cap, thresholds) {
        CapLevel::Critical => shared.alerts.raise(
            AlertCode::StoreCap,
            Severity::Critical,
            format!(
                "the outbox uses {bytes} of {cap} bytes ({pct:.0}%): new non-critical ops are \
                 about to be refused or to drop older ones ({policy} policy); shipments are \
                 still accepted"
            ),
        ),
        CapLevel::Warning => shared.alerts.raise(
            AlertCode::StoreCap,
            Severity::Warning,
            format!("the outbox uses {bytes} of {cap} bytes ({pct:.0}%): is the link down?"),
        ),
        CapLevel::Normal => shared.alerts.clear(AlertCode::StoreCap),
        CapLevel::Hold => {}
    }
}
/// Where usage stands against the cap's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CapLevel {
    /// Below the warning level by a margin: clear the alert.
    Normal,
    /// Just below the warning level: leave the alert as it is (no flapping).
    Hold,
    Warning,
    Critical,
}

/// `thresholds` ascending: reaching the last is critical, any other a warning; the alert is
/// cleared only 5 points below the first, so usage hovering at a threshold does not flap.
pub(crate) fn cap_level(bytes: u64, cap: u64, thresholds: &[f64]) -> CapLevel {
    let (Some(&first), Some(&last)) = (thresholds.first(), thresholds.last()) else {
        return CapLevel::Normal;
    };
    if cap == 0 {
        return CapLevel::Normal;
    }
    let used = bytes as f64 / cap as f64;
    if used >= last {
        CapLevel::Critical
    } else if used >= first {
        CapLevel::Warning
    } else if used >= first - 0.05 {
        CapLevel::Hold
    } else {
        CapLevel::Normal
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_levels_have_a_margin_below_the_warning() {
        let l = |b| cap_level(b, 1000, &[0.8, 0.95]);
        assert_eq!(l(100), CapLevel::Normal);
        assert_eq!(l(760), CapLevel::Hold);
        assert_eq!(l(800), CapLevel::Warning);
        assert_eq!(l(950), CapLevel::Critical);
        assert_eq!(l(5000), CapLevel::Critical);
        assert_eq!(cap_level(5000, 0, &[0.8, 0.95]), CapLevel::Normal);
        assert_eq!(cap_level(5000, 1000, &[]), CapLevel::Normal);
        assert_eq!(cap_level(990, 1000, &[0.99]), CapLevel::Critical);
    }
}
