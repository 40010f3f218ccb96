//! The health gate a build on trial must pass before the launcher commits it: its self-test.
//!
//! Run by the *trial* build as `wms-node ota gate --expect-version V --store-copy P`, started
//! by the launcher with a deadline. It checks, in order, and stops at the first failure:
//!
//! 1. `config`: the config file is valid for this build (the CLI loads it);
//! 2. `store`: the store opens — migrating it if this build needs to, after a copy of the
//!    old file is kept at `P` — and a write/read round trip succeeds (a durable write to the
//!    `ota_gate` table, read back in a new transaction);
//! 3. `broker`: the local MQTT broker is reachable where one is configured (an external
//!    broker: a TCP connection; the embedded one: its listen address can be bound);
//! 4. `version`: this build's own version equals the manifest's.
//!
//! None of these needs the internet link: a warehouse offline for a day must not roll back
//! a good update. It is not `/healthz` either (which also judges Taobao delivery). The
//! report is one JSON object on stdout; the launcher reads it and also checks the version
//! itself, so a build that claims to pass with another version is still rolled back.
//! The gate takes no floor work and sends no operations: it never starts the daemon.

use crate::alert::Alerts;
use crate::store::{Bytes, Store, StoreOptions};
use redb::TableDefinition;
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs as _};
use std::time::Duration;

/// The table the round trip writes (one row; owned by OTA).
pub const GATE_TABLE: TableDefinition<&str, Bytes> = TableDefinition::new("ota_gate");

/// The local broker to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerCheck {
    /// No broker to check.
    None,
    /// The embedded broker's listen address: it must be free to bind.
    Embedded(SocketAddr),
    /// An external broker on the LAN: a TCP connection must open.
    External {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// `config`, `store`, `broker` or `version`.
    pub check: String,
    /// Passed.
    pub ok: bool,
    /// What was found (no secrets).
    pub detail: String,
}

/// The gate's answer, printed as JSON on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The build's own version.
    pub version: String,
    /// Every check passed.
    pub passed: bool,
    /// The checks, in the order run.
    pub checks: Vec<Check>,
}

impl Report {
    /// A new report for this build.
    pub fn new() -> Report {
        Report {
            version: crate::VERSION.to_owned(),
            passed: true,
            checks: Vec::new(),
        }
    }

    /// Adds a check's result.
    pub fn push(&mut self, check: &str, result: Result<String, String>) {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        self.passed &= ok;
        self.checks.push(Check {
            check: check.to_owned(),
            ok,
            detail,
        });
    }

    /// The first failed check, as `check: detail`.
    pub fn failure(&self) -> Option<String> {
        self.checks
            .iter()
            .find(|c| !c.ok)
            .map(|c| format!("{}: {}", c.check, c.detail))
    }
}

impl Default for Report {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs checks 2–4 (the caller ran `config`) and adds them to `report`.
pub fn run(report: &mut Report, store: StoreOptions, broker: &BrokerCheck, expect_version: &str) {
    report.push("store", store_round_trip(store));
    if !report.passed {
        return;
    }
    report.push("broker", broker_reachable(broker));
    if !report.passed {
        return;
    }
    report.push(
        "version",
        if crate::VERSION == expect_version {
            Ok(format!("{} as the manifest says", crate::VERSION))
        } else {
            Err(format!(
                "this build is {}, the manifest says {expect_version}",
                crate::VERSION
            ))
        },
    );
}

fn store_round_trip(opts: StoreOptions) -> Result<String, String> {
    let path = opts.path.clone();
    let store = Store::open(opts, Alerts::new()).map_err(|e| format!("cannot open: {e}"))?;
    let nonce = hex::encode(rand::random::<[u8; 8]>());
    let value = format!("{}:{nonce}", crate::VERSION);
    let written = value.clone();
    store
        .write_blocking(move |txn| crate::store::put(txn, GATE_TABLE, "round_trip", &written))
        .map_err(|e| format!("write failed: {e}"))?;
    let read: Option<String> = store
        .read(|txn| crate::store::get(txn, GATE_TABLE, "round_trip"))
        .map_err(|e| format!("read failed: {e}"))?;
    drop(store);
    if read.as_deref() == Some(value.as_str()) {
        Ok(format!(
            "{} opened; a durable write read back",
            path.display()
        ))
    } else {
        Err("a durable write did not read back".into())
    }
}

fn broker_reachable(broker: &BrokerCheck) -> Result<String, String> {
    match broker {
        BrokerCheck::None => Ok("no broker configured".into()),
        BrokerCheck::Embedded(addr) => match TcpListener::bind(addr) {
            Ok(_) => Ok(format!("the embedded broker's address {addr} is free")),
            Err(e) => Err(format!("the embedded broker cannot listen on {addr}: {e}")),
        },
        BrokerCheck::External { host, port } => {
            let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
                .collect();
            let mut last = String::from("no address");
            for a in addrs {
                match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
                    Ok(_) => return Ok(format!("{host}:{port} accepts connections")),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(format!("{host}:{port} is not reachable: {last}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_store_and_no_broker_pass_with_the_right_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Report::new();
        run(
            &mut r,
            StoreOptions::new(dir.path().join("s.redb")),
            &BrokerCheck::None,
            crate::VERSION,
        );
        assert!(r.passed, "{r:?}");
        assert_eq!(r.checks.len(), 3);
    }

    #[test]
    fn the_wrong_version_fails_and_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Report::new();
        run(
            &mut r,
            StoreOptions::new(dir.path().join("s.redb")),
            &BrokerCheck::None,
            "99.0.0",
        );
        assert!(!r.passed);
        assert!(r.failure().unwrap().starts_with("version:"), "{r:?}");
    }

    #[test]
    fn an_unreachable_broker_and_a_taken_port_fail() {
        let dir = tempfile::tempdir().unwrap();
        // A port that was just free and is now closed: nothing listens there.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Report::new();
        run(
            &mut r,
            StoreOptions::new(dir.path().join("s.redb")),
            &BrokerCheck::External {
                host: "127.0.0.1".into(),
                port,
            },
            crate::VERSION,
        );
        assert!(r.failure().unwrap().starts_with("broker:"), "{r:?}");

        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut r = Report::new();
        run(
            &mut r,
            StoreOptions::new(dir.path().join("s.redb")),
            &BrokerCheck::Embedded(taken.local_addr().unwrap()),
            crate::VERSION,
        );
        assert!(r.failure().unwrap().starts_with("broker:"), "{r:?}");
    }

    #[test]
    fn a_store_in_use_fails_the_gate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _held = Store::open(StoreOptions::new(&path), Alerts::new()).unwrap();
        let mut r = Report::new();
        run(
            &mut r,
            StoreOptions::new(&path),
            &BrokerCheck::None,
            crate::VERSION,
        );
        assert!(r.failure().unwrap().starts_with("store:"), "{r:?}");
    }
}
