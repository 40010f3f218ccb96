//! Every numeric key has bounds, documented where the key is, and `check-config` refuses
//! what `run` cannot take, naming the key, the value and the range.
//!
//! The test walks the keys of the default configuration itself (so a key added later is
//! walked too), finds each numeric one (a number, a list of numbers, a duration or a byte
//! size), and for each: its bound exists, its doc comment and its comment in
//! `config/node.example.toml` state the range, its ends are accepted, and values just
//! outside and hostile ones (`1e-300`, `i64::MAX`, `-1`, a million years) are refused.
//! A property test then throws arbitrary values at every numeric key and checks that a
//! config the loader accepts builds every part's options within their bounds.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use wms_node::config::bounds::{BOUNDS, Bound, Num};
use wms_node::config::{ByteSize, Config, ConfigError, Problem};

const MINIMAL: &str =
    "[node]\nid = \"gw1\"\n[taobao]\napp_key = \"12345678\"\napp_secret = \"s\"\n";

fn load(section: &str, key: &str, value: &str) -> Result<Config, ConfigError> {
    // The minimal file's own sections are extended in place: TOML allows a table once.
    let text = if section == "node" || section == "taobao" {
        MINIMAL.replacen(
            &format!("[{section}]\n"),
            &format!("[{section}]\n{key} = {value}\n"),
            1,
        )
    } else {
        format!("{MINIMAL}[{section}]\n{key} = {value}\n")
    };
    Config::from_toml_with_env(&text, Path::new("/etc/wms-node/node.toml"), Vec::new())
}

fn problems_of(r: Result<Config, ConfigError>, key: &str) -> Vec<Problem> {
    match r {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().into_iter().filter(|p| p.key == key).collect(),
    }
}

/// The numeric keys of the default configuration, found by their values.
fn numeric_keys() -> Vec<String> {
    let table: toml::Table = toml::from_str(&Config::default().to_redacted_toml()).unwrap();
    let mut keys = Vec::new();
    for (section, v) in &table {
        for (key, value) in v.as_table().unwrap() {
            let numeric = match value {
                toml::Value::Integer(_) | toml::Value::Float(_) => true,
                toml::Value::Array(a) if a.is_empty() => {
                    // An empty list: numeric if a list of one number is of its type.
                    let problems =
                        problems_of(load(section, key, "[1]"), &format!("{section}.{key}"));
                    !problems.iter().any(|p| p.message.contains("invalid type"))
                }
                toml::Value::Array(a) => a.iter().all(|x| x.is_integer() || x.is_float()),
                toml::Value::String(s) => {
                    humantime::parse_duration(s).is_ok() || s.parse::<ByteSize>().is_ok()
                }
                _ => false,
            };
            if numeric {
                keys.push(format!("{section}.{key}"));
            }
        }
    }
    keys.sort();
    keys
}

/// `v` as the config file writes it.
fn toml_text(v: Num) -> String {
    match v {
        Num::Int(n) => n.to_string(),
        Num::Float(x) => format!("{x:?}"),
        Num::Time(_) => format!("\"{v}\""),
        Num::Bytes(b) => b.to_string(),
    }
}

/// Values just outside the bound and hostile ones, in file syntax.
fn outside(b: &Bound) -> Vec<String> {
    let mut v = Vec::new();
    match (b.min, b.max) {
        (Num::Int(min), Num::Int(max)) => {
            if min > 0 && !(b.zero_means_off && min == 1) {
                v.push((min - 1).to_string());
            }
            v.push((max + 1).to_string());
            v.extend(["-1".into(), i64::MAX.to_string(), "1000000000000".into()]);
        }
        (Num::Float(min), Num::Float(max)) => {
            if min > 0.0 {
                v.push(format!("{:?}", min / 2.0));
            }
            v.push(format!("{:?}", max * 2.0));
            v.extend(["1e-300", "1e300", "-1.0", "nan", "inf", "-inf"].map(String::from));
        }
        (Num::Time(min), Num::Time(max)) => {
            if !min.is_zero() {
                v.push(toml_text(Num::Time(min - Duration::from_millis(1))));
            }
            v.push(toml_text(Num::Time(max + Duration::from_secs(1))));
            v.extend(
                [
                    "\"1000000000000000000000s\"",
                    "\"584942417356years\"",
                    "-1",
                    "\"-5s\"",
                ]
                .map(String::from),
            );
        }
        (Num::Bytes(min), Num::Bytes(max)) => {
            if min > 1 {
                v.push((min - 1).to_string());
            }
            v.push((max + 1).to_string());
            v.extend(["\"100000000TiB\"", "-1", "\"1e300KiB\""].map(String::from));
        }
        _ => unreachable!("a bound of two kinds: {}", b.key),
    }
    v
}

fn split(key: &str) -> (&str, &str) {
    key.split_once('.').unwrap()
}

/// Lists take their elements' bounds.
fn as_value(key: &str, text: &str) -> String {
    if key == "store.cap_alert_thresholds" || key == "intake.review_flags" {
        format!("[{text}]")
    } else {
        text.to_owned()
    }
}

#[test]
fn every_numeric_key_has_a_bound_and_every_bound_a_key() {
    let mut bounded: Vec<String> = BOUNDS.iter().map(|b| b.key.to_owned()).collect();
    bounded.sort();
    assert_eq!(numeric_keys(), bounded);
}

#[test]
fn the_ends_of_every_range_are_accepted() {
    for b in BOUNDS {
        let (section, key) = split(b.key);
        for end in [b.min, b.max] {
            // (A check between two keys, "request_timeout must not be shorter than
            // connect_timeout", "deadline_warning must be longer than deadline_critical", may
            // refuse one end alone; that is not this key's range.)
            let p: Vec<Problem> =
                problems_of(load(section, key, &as_value(b.key, &toml_text(end))), b.key)
                    .into_iter()
                    .filter(|p| {
                        !p.message.contains("must not be shorter than")
                            && !p.message.contains("must be longer than")
                    })
                    .collect();
            assert!(p.is_empty(), "{} = {end} was refused: {p:?}", b.key);
        }
        if b.zero_means_off {
            let p = problems_of(load(section, key, "0"), b.key);
            assert!(p.is_empty(), "{} = 0 was refused: {p:?}", b.key);
        }
    }
}

#[test]
fn values_outside_every_range_are_refused_naming_key_value_and_range() {
    for b in BOUNDS {
        let (section, key) = split(b.key);
        for text in outside(b) {
            let p = problems_of(load(section, key, &as_value(b.key, &text)), b.key);
            assert_eq!(p.len(), 1, "{} = {text}: {p:?}", b.key);
            let line = p[0].to_string();
            assert!(line.contains(b.key), "{line}");
            assert!(line.contains(&b.range()), "{} = {text}: {line}", b.key);
            let shown = text.trim_matches('"');
            let shown_as_num = text
                .parse::<f64>()
                .ok()
                .map(|x| Num::Float(x).to_string())
                .unwrap_or_default();
            assert!(
                line.contains(shown) || (!shown_as_num.is_empty() && line.contains(&shown_as_num)),
                "{} = {text}: the value is not named: {line}",
                b.key
            );
        }
    }
}

/// The `///` lines above `pub <field>:` inside `pub struct <Section>Config`.
fn doc_comment(src: &str, section: &str, field: &str) -> String {
    let name = format!(
        "pub struct {}{}Config",
        &section[..1].to_uppercase(),
        &section[1..]
    );
    let start = src.find(&name).unwrap_or_else(|| panic!("{name}"));
    let body = &src[start..];
    let at = body
        .find(&format!("pub {field}:"))
        .unwrap_or_else(|| panic!("{section}.{field} not in {name}"));
    let mut doc: Vec<&str> = body[..at]
        .lines()
        .rev()
        .skip(1)
        .map(str::trim)
        .take_while(|l| l.starts_with("///") || l.starts_with("#["))
        .filter(|l| l.starts_with("///"))
        .collect();
    doc.reverse();
    doc.iter()
        .map(|l| l.trim_start_matches("///").trim())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `#` lines right above `key =` in `[section]` of the example.
fn example_comment(example: &str, section: &str, key: &str) -> String {
    let start = example.find(&format!("\n[{section}]\n")).unwrap();
    let body = &example[start..];
    let at = body
        .find(&format!("\n{key} = "))
        .unwrap_or_else(|| panic!("{section}.{key}"));
    let mut lines: Vec<&str> = body[..at]
        .lines()
        .rev()
        .take_while(|l| l.starts_with('#'))
        .collect();
    lines.reverse();
    lines
        .iter()
        .map(|l| l.trim_start_matches('#').trim())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_range_is_documented_on_the_key_and_in_the_example() {
    let src = concat!(
        include_str!("../src/config/mod.rs"),
        include_str!("../src/config/goods.rs")
    );
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/node.example.toml"),
    )
    .unwrap();
    for b in BOUNDS {
        let (section, key) = split(b.key);
        let want = b.range().to_lowercase();
        let doc = doc_comment(src, section, key).to_lowercase();
        assert!(
            doc.contains(&want),
            "{}: the doc comment does not say {want:?}: {doc}",
            b.key
        );
        let ex = example_comment(&example, section, key).to_lowercase();
        assert!(
            ex.contains(&want),
            "{}: node.example.toml does not say {want:?}: {ex}",
            b.key
        );
    }
}

#[test]
fn check_config_refuses_the_reported_values_with_key_value_and_range_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        format!(
            "{MINIMAL}[store]\ngroup_commit_max_batch = 1000000000000\n\
             [outbox]\nrate_per_second = 1e-300\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wms-node"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("store.group_commit_max_batch: 1000000000000 is out of range: it must be from 1 to 65536"),
        "{err}"
    );
    assert!(
        err.contains(
            "outbox.rate_per_second: 1e-300 is out of range: it must be from 0.01 to 1000"
        ),
        "{err}"
    );
    // With line and column.
    assert!(err.contains("node.toml:7:"), "{err}");
}

fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| format!("{x:?}")),
        prop::sample::select(vec!["nan", "inf", "-inf", "0", "0.0", "1", "-0.0"])
            .prop_map(String::from),
        (
            0u64..1_000_000_000_000,
            prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "y"])
        )
            .prop_map(|(n, u)| format!("\"{n}{u}\"")),
        (
            0u64..1_000_000_000,
            prop::sample::select(vec!["B", "KiB", "MiB", "GiB", "TiB", "MB"])
        )
            .prop_map(|(n, u)| format!("\"{n}{u}\"")),
        "\"[0-9a-zA-Z. ]{0,12}\"",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever a numeric key is given, loading never panics, and a config it accepts builds
    /// every part's options within the bounds (so `run` gets nothing it cannot take).
    #[test]
    fn accepted_values_are_within_bounds_and_build_every_part(
        picks in prop::collection::vec((0..BOUNDS.len(), hostile_text()), 1..6),
    ) {
        let mut sections: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (i, text) in &picks {
            let (section, key) = split(BOUNDS[*i].key);
            sections
                .entry(section)
                .or_default()
                .push(format!("{key} = {}", as_value(BOUNDS[*i].key, text)));
        }
        let mut text = MINIMAL.to_owned();
        for (section, lines) in &sections {
            let mut seen = std::collections::HashSet::new();
            let body: Vec<&String> = lines
                .iter()
                .filter(|l| seen.insert(l.split(" = ").next().unwrap_or("").to_owned()))
                .collect();
            let block = body.iter().map(|l| format!("{l}\n")).collect::<String>();
            if *section == "taobao" {
                text = text.replacen("[taobao]\n", &format!("[taobao]\n{block}"), 1);
            } else {
                text.push_str(&format!("[{section}]\n{block}"));
            }
        }
        let Ok(c) = Config::from_toml_with_env(&text, Path::new("/x/node.toml"), Vec::new()) else {
            return Ok(());
        };
        let within = |key: &str, v: Num| {
            let b = BOUNDS.iter().find(|b| b.key == key).unwrap();
            assert!(b.accepts(v), "{key} = {v} accepted in:\n{text}");
        };
        within("store.group_commit_max_batch", Num::Int(c.store.group_commit_max_batch as u64));
        within("outbox.rate_per_second", Num::Float(c.outbox.rate_per_second));
        within("outbox.backoff_max", Num::Time(c.outbox.backoff_max));
        within("http.max_connections", Num::Int(c.http.max_connections as u64));
        // Every part's options build (no panic) and the rate is a rate.
        let store = c.store_options();
        prop_assert!(store.group_commit_max_batch >= 1);
        let outbox = c.outbox_options();
        prop_assert!(outbox.rate.is_some());
        let _ = c.taobao_options();
        let _ = c.ota_options();
        let _ = c.http_options();
    }
}
