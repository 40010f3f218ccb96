//! A stand-in for a new `wms-node` build in the OTA tests (`node/tests/ota.rs`): it speaks
//! the launcher's contract (`[--config C] ota gate --expect-version V --store-copy P` and
//! `[--config C] run`) and misbehaves on purpose. Each test artifact is a two-line shell
//! script that `exec`s this program with a behaviour first:
//!
//! | behaviour          | gate                                                           | run |
//! |--------------------|----------------------------------------------------------------|-----|
//! | `pass:V`           | reports version V, all checks passed, exit 0                   | prints, waits |
//! | `fail`             | reports a failed `store` check, exit 1                         | — |
//! | `exit2`            | exits 2 at once (as a build that rejects its config would)     | — |
//! | `panic`            | panics before any report                                       | — |
//! | `hang`             | never answers                                                  | — |
//! | `migrate-panic`    | copies the store to P as the store's migration does, changes the store file, then panics | — |
//! | `slow-pass:V:S`    | sleeps S seconds, then as `pass:V`                             | prints, waits |
//!
//! Not a product binary: nothing installs it.

// A test program: it fails by unwrapping and sleeps on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let behaviour = args.first().cloned().unwrap_or_default();
    let is_gate = args.windows(2).any(|w| w[0] == "ota" && w[1] == "gate");
    let value_of = |flag: &str| {
        args.windows(2)
            .find(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .unwrap_or_default()
    };
    let mut parts = behaviour.split(':');
    let kind = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or("0.0.0").to_owned();
    if !is_gate {
        // `run`: say who runs, then wait to be stopped like a node would.
        println!("fake build {version} running");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    match kind {
        "pass" => report(&version, true),
        "slow-pass" => {
            let secs: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(3);
            std::thread::sleep(Duration::from_secs(secs));
            report(&version, true)
        }
        "fail" => {
            report(&version, false);
            std::process::exit(1)
        }
        "exit2" => std::process::exit(2),
        "panic" => panic!("the new build panics before its gate"),
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        "migrate-panic" => {
            let copy = std::path::PathBuf::from(value_of("--store-copy"));
            // <data_dir>/ota/trial/wms-node.redb → <data_dir>/wms-node.v3.redb (store::FILE)
            let store = copy
                .parent()
                .and_then(|p| p.parent())
                .and_then(|p| p.parent())
                .map(|d| d.join(wms_node::store::FILE))
                .expect("store path");
            let tmp = copy.with_extension("redb.tmp");
            std::fs::copy(&store, &tmp).expect("copy the store");
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .expect("fsync");
            std::fs::rename(&tmp, &copy).expect("rename");
            // "Migrated" to a format the previous build cannot read.
            std::fs::write(&store, b"a store format from the future").expect("migrate");
            panic!("the new build panics after migrating the store")
        }
        other => {
            eprintln!("unknown behaviour {other:?}");
            std::process::exit(64)
        }
    }
}

fn report(version: &str, passed: bool) {
    let check = if passed {
        r#"{"check":"store","ok":true,"detail":"fake"}"#
    } else {
        r#"{"check":"store","ok":false,"detail":"fake store failure"}"#
    };
    println!(r#"{{"version":"{version}","passed":{passed},"checks":[{check}]}}"#);
}
