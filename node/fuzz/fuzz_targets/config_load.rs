//! Any text as a config file, with any `WMS_NODE__…` overrides (after a NUL byte, one
//! `SECTION__KEY=VALUE` per line): the loader names problems or gives a config, never panics;
//! a config it accepts builds every part's options, with every bounded value within its
//! bounds (what `check-config` accepts, `run` can take).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::ffi::OsString;
use std::path::Path;
use wms_node::config::Config;
use wms_node::config::bounds::{BOUNDS, Num};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, vars) = text.split_once('\0').unwrap_or((text, ""));
    let env: Vec<(OsString, OsString)> = vars
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("WMS_NODE__{k}").into(), v.into()))
        .collect();
    let config = match Config::from_toml_with_env(file, Path::new("/fuzz/node.toml"), env) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let within = |key: &str, v: Num| {
        let b = BOUNDS.iter().find(|b| b.key == key).expect("a bound");
        assert!(b.accepts(v), "{key} = {v} was accepted");
    };
    let c = &config;
    within(
        "store.group_commit_max_batch",
        Num::Int(c.store.group_commit_max_batch as u64),
    );
    within("store.cache_size", Num::Bytes(c.store.cache_size.bytes()));
    within(
        "outbox.rate_per_second",
        Num::Float(c.outbox.rate_per_second),
    );
    within("outbox.backoff_max", Num::Time(c.outbox.backoff_max));
    within(
        "taobao.request_timeout",
        Num::Time(c.taobao.request_timeout),
    );
    within(
        "http.max_connections",
        Num::Int(c.http.max_connections as u64),
    );
    within("ota.gate_timeout", Num::Time(c.ota.gate_timeout));
    let _ = c.store_options();
    assert!(c.outbox_options().rate.is_some());
    let _ = c.taobao_options();
    let _ = c.ota_options();
    let _ = c.http_options();
    let _ = c.admin_url();
    let _ = c.to_redacted_toml();
});
