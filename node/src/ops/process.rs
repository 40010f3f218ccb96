//! The process's own figures for `/metrics`: the standard `process_*` families every
//! Prometheus client exports (resident and virtual memory, CPU seconds, open and maximum file
//! descriptors, start time), so the usual dashboards and alerts (a leak, fds near their limit,
//! a restart) work on the node unchanged.
//!
//! They are read from `/proc/self` at each scrape, on Linux only (the gateway's OS); elsewhere
//! the families are absent rather than zero. A few `read`s of small files: no crate is needed
//! for it, and the node does not keep a sampler running.

use std::fmt::Write as _;

/// One reading of `/proc/self`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time.
    pub cpu_seconds: f64,
    /// Resident set size.
    pub resident_bytes: u64,
    /// Virtual memory size.
    pub virtual_bytes: u64,
    /// File descriptors open now (`/proc/self/fd`), if readable.
    pub open_fds: Option<u64>,
    /// The soft limit on open files, if there is one.
    pub max_fds: Option<u64>,
    /// When the process started (Unix seconds).
    pub start_time_seconds: f64,
}

/// The process's figures now; `None` where `/proc` is not available (not Linux, or not
/// mounted).
pub fn read() -> Option<ProcessStats> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime = boot_time(&boot)?;
    let (ticks, page) = clock();
    let mut s = parse_stat(&stat, ticks, page, btime)?;
    s.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    s.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| max_open_files(&l));
    Some(s)
}

#[cfg(target_os = "linux")]
fn clock() -> (u64, u64) {
    (
        rustix::param::clock_ticks_per_second(),
        rustix::param::page_size() as u64,
    )
}

#[cfg(not(target_os = "linux"))]
fn clock() -> (u64, u64) {
    (100, 4096)
}

/// `/proc/stat`'s `btime`: the boot time in Unix seconds.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The fields of `/proc/self/stat` (proc(5)) the families need. The command name (field 2)
/// is in parentheses and may hold spaces and parentheses itself, so fields are counted from
/// the last `)`.
fn parse_stat(
    stat: &str,
    ticks_per_second: u64,
    page_size: u64,
    btime: u64,
) -> Option<ProcessStats> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is index 0.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| -> Option<u64> { f.get(field - 3)?.parse().ok() };
    let ticks = ticks_per_second.max(1) as f64;
    let (utime, stime, start, vsize, rss) = (num(14)?, num(15)?, num(22)?, num(23)?, num(24)?);
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks,
        resident_bytes: rss.saturating_mul(page_size),
        virtual_bytes: vsize,
        open_fds: None,
        max_fds: None,
        start_time_seconds: btime as f64 + start as f64 / ticks,
    })
}

/// The soft limit of `Max open files` in `/proc/self/limits`; `None` when unlimited.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

/// The families in the Prometheus text format, one blank-line-separated block each (as the
/// recorder renders its own), so [`super::metrics::render`] sorts them with the rest.
pub fn families(s: &ProcessStats) -> Vec<String> {
    let mut out = Vec::with_capacity(6);
    let mut family = |name: &str, kind: &str, help: &str, value: String| {
        let mut b = String::new();
        let _ = write!(
            b,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
        out.push(b);
    };
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        s.cpu_seconds.to_string(),
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        s.resident_bytes.to_string(),
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        s.virtual_bytes.to_string(),
    );
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        s.start_time_seconds.to_string(),
    );
    if let Some(n) = s.open_fds {
        family(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            n.to_string(),
        );
    }
    if let Some(n) = s.max_fds {
        family(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            n.to_string(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line from a process whose name holds a space and a parenthesis.
    const STAT: &str = "4242 (wms (node) x) S 1 4242 4242 0 -1 4194560 2310 0 0 0 \
        150 50 0 0 20 0 9 0 120000 912345088 3000 18446744073709551615 1 1 0 0 0 0 0 \
        4096 17922 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let s = parse_stat(STAT, 100, 4096, 1_700_000_000).unwrap();
        assert_eq!(s.cpu_seconds, 2.0);
        assert_eq!(s.resident_bytes, 3000 * 4096);
        assert_eq!(s.virtual_bytes, 912_345_088);
        assert_eq!(s.start_time_seconds, 1_700_000_000.0 + 1200.0);
    }

    #[test]
    fn truncated_or_garbled_stat_reads_as_nothing() {
        for bad in [
            "",
            "4242 (x",
            "4242 (x) S 1 2",
            "4242 (x) S a b c d e f g h i j k l",
        ] {
            assert_eq!(parse_stat(bad, 100, 4096, 0), None, "{bad}");
        }
    }

    #[test]
    fn limits_give_the_soft_limit_and_unlimited_is_none() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63582                63582                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            max_open_files(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_as_alive_and_recent() {
        let s = read().unwrap();
        assert!(s.resident_bytes > 1024 * 1024, "{s:?}");
        assert!(s.virtual_bytes >= s.resident_bytes, "{s:?}");
        assert!(s.open_fds.unwrap() >= 3, "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started in the last day, not in the future (clock ticks and btime agree).
        assert!(
            s.start_time_seconds <= now + 2.0 && s.start_time_seconds > now - 86_400.0,
            "{s:?} now {now}"
        );
        let text = families(&s).concat();
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter\n"),
            "{text}"
        );
    }
}
