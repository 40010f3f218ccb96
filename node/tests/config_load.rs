//! Loading the configuration: every class of error is reported with its key and origin, all
//! at once; environment overrides and secret files work; the example file is complete and
//! its documented defaults are the compiled-in ones.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wms_node::config::{Config, ConfigError, Origin, Problem};
use wms_node::secret::Secret;

const MINIMAL: &str = r#"
[node]
id = "gw1"

[taobao]
app_key = "12345678"
app_secret = "s3cret-value"
"#;

fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    vars.iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_toml_with_env(text, Path::new("/etc/wms-node/node.toml"), env(vars))
}

fn problems(text: &str, vars: &[(&str, &str)]) -> Vec<Problem> {
    match load(text, vars) {
        Ok(_) => panic!("expected problems"),
        Err(e) => e.problems(),
    }
}

fn only_problem(text: &str, vars: &[(&str, &str)]) -> Problem {
    let mut p = problems(text, vars);
    assert_eq!(p.len(), 1, "{p:#?}");
    p.remove(0)
}

fn file_pos(p: &Problem) -> (usize, usize) {
    match &p.origin {
        Some(Origin::File { line, column, .. }) => (*line, *column),
        other => panic!("expected a file position, got {other:?}"),
    }
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/node.example.toml")
}

#[test]
fn a_minimal_file_loads_with_defaults_everywhere_else() {
    let c = load(MINIMAL, &[]).unwrap();
    assert_eq!(c.node.id, "gw1");
    assert_eq!(c.taobao.app_secret, Some(Secret::new("s3cret-value")));
    assert_eq!(c.outbox, Config::default().outbox);
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:9870");
}

#[test]
fn an_unknown_key_is_named_with_its_position_and_the_nearest_valid_key() {
    let text = format!("{MINIMAL}\n[outbox]\nconcurency = 8\n");
    let p = only_problem(&text, &[]);
    assert_eq!(p.key, "outbox.concurency");
    assert!(p.message.contains("did you mean `concurrency`?"), "{p}");
    assert_eq!(file_pos(&p), (10, 1));
}

#[test]
fn an_unknown_section_gets_the_nearest_section() {
    let text = format!("{MINIMAL}\n[mqqt]\nbroker = \"embedded\"\n");
    let p = only_problem(&text, &[]);
    assert!(p.message.contains("did you mean [mqtt]?"), "{p}");
}

#[test]
fn a_key_outside_any_section_is_told_where_it_belongs() {
    let text = format!("data_dir = \"/srv/wms\"\n{MINIMAL}");
    let p = only_problem(&text, &[]);
    assert!(p.message.contains("belongs in [node]"), "{p}");
    assert_eq!(file_pos(&p), (1, 1));
}

#[test]
fn a_syntax_error_names_file_line_and_column() {
    let text = "[node]\nid = \"gw1\"\nsite = main\n";
    let err = load(text, &[]).unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(file_pos(p), (3, 8));
    let shown = err.to_string();
    assert!(shown.contains("/etc/wms-node/node.toml:3:8"), "{shown}");
    assert!(shown.contains("invalid TOML"), "{shown}");
}

#[test]
fn a_wrong_type_names_the_key_and_the_value_position() {
    let text = format!("{MINIMAL}\n[outbox]\nconcurrency = \"four\"\n");
    let p = only_problem(&text, &[]);
    assert_eq!(p.key, "outbox.concurrency");
    assert!(p.message.contains("invalid type"), "{p}");
    assert_eq!(file_pos(&p), (10, 15));
}

#[test]
fn durations_and_byte_sizes_are_checked_with_their_formats() {
    let text = format!(
        "{MINIMAL}\n[store]\nmax_bytes = \"lots\"\ngroup_commit_max_wait = \"2 fortnights\"\n"
    );
    let p = problems(&text, &[]);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!(p[0].key, "store.max_bytes");
    assert!(p[0].message.contains("64MiB"), "{}", p[0]);
    assert_eq!(p[1].key, "store.group_commit_max_wait");
}

#[test]
fn missing_required_keys_are_all_reported() {
    let p = problems("", &[]);
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["node.id", "taobao.app_key", "taobao.app_secret"]);
    assert!(p[0].message.contains("required"));
    assert!(p[2].message.contains("app_secret_file"), "{}", p[2]);
}

#[test]
fn every_problem_of_every_kind_is_listed_at_once() {
    let text = r#"
[node]
idd = "x"
site = "a/b"

[taobao]
app_key = "12345678"
app_secret = "x"
sign_method = "sha1"
endpoint = "not a url"

[outbox]
burst = "many"
shutdown_grace = "30s"
"#;
    let p = problems(text, &[("WMS_NODE__HTTP__LISTN", "x")]);
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "node.idd",
            "node.site",
            "taobao.sign_method",
            "taobao.endpoint",
            "outbox.burst",
            "outbox.shutdown_grace",
            "http.listn",
            "node.id",
        ],
        "{p:#?}"
    );
    // sign_method lists the valid values.
    assert!(p[2].message.contains("hmac-sha256"), "{}", p[2]);
}

#[test]
fn a_secret_file_is_read_without_its_trailing_newline_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app_secret"), "from-file\n").unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "[node]\nid = \"gw1\"\n[taobao]\napp_key = \"1\"\napp_secret_file = \"app_secret\"\n",
    )
    .unwrap();
    let c = Config::load_with_env(&config, env(&[])).unwrap();
    assert_eq!(c.taobao.app_secret, Some(Secret::new("from-file")));
    assert_eq!(
        c.taobao.app_secret_file,
        Some(dir.path().join("app_secret"))
    );
}

#[test]
fn a_missing_secret_file_is_named() {
    let text = "[node]\nid = \"gw1\"\n[taobao]\napp_key = \"1\"\napp_secret_file = \"/nonexistent/wms/secret\"\n";
    let p = only_problem(text, &[]);
    assert_eq!(p.key, "taobao.app_secret_file");
    assert!(p.message.contains("/nonexistent/wms/secret"), "{p}");
    assert_eq!(file_pos(&p).0, 5);
}

#[test]
fn an_empty_secret_file_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "\n").unwrap();
    let text = format!(
        "{MINIMAL}\n[mqtt]\nusername = \"node\"\npassword_file = \"{}\"\n",
        secret.display()
    );
    let p = only_problem(&text, &[]);
    assert_eq!(p.key, "mqtt.password_file");
    assert!(p.message.contains("empty"), "{p}");
}

#[test]
fn a_secret_and_its_file_both_set_is_a_problem() {
    let text = format!("{MINIMAL}app_secret_file = \"/etc/wms-node/app_secret\"\n");
    let p = only_problem(&text, &[]);
    assert_eq!(p.key, "taobao.app_secret_file");
    assert!(p.message.contains("both set"), "{p}");
}

#[test]
fn environment_overrides_apply_with_types_and_win_over_the_file() {
    let c = load(
        MINIMAL,
        &[
            ("WMS_NODE__NODE__ID", "gw-from-env"),
            ("WMS_NODE__OUTBOX__CONCURRENCY", "8"),
            ("WMS_NODE__TAOBAO__POLL_INTERVAL", "2m"),
            ("WMS_NODE__STORE__MAX_BYTES", "64MiB"),
            ("WMS_NODE__STORE__CAP_ALERT_THRESHOLDS", "[0.5, 0.9]"),
            ("WMS_NODE__HTTP__LISTEN", "127.0.0.1:0"),
            ("WMS_NODE__MQTT__USERNAME", "1234"),
            ("WMS_NODE__LOG__FORMAT", "json"),
            ("UNRELATED", "ignored"),
        ],
    )
    .unwrap();
    assert_eq!(c.node.id, "gw-from-env");
    assert_eq!(c.outbox.concurrency, 8);
    assert_eq!(c.taobao.poll_interval, Duration::from_secs(120));
    assert_eq!(c.store.max_bytes.bytes(), 64 << 20);
    assert_eq!(c.store.cap_alert_thresholds, [0.5, 0.9]);
    assert_eq!(c.http.listen.port(), 0);
    // "1234" reads as a TOML integer; the key wants a string, so the raw text is used.
    assert_eq!(c.mqtt.username.as_deref(), Some("1234"));
    assert_eq!(c.log.format, wms_node::config::LogFormat::Json);
}

#[test]
fn a_secret_can_come_from_the_environment_alone() {
    let text = "[node]\nid = \"gw1\"\n[taobao]\napp_key = \"1\"\n";
    let c = load(text, &[("WMS_NODE__TAOBAO__APP_SECRET", "env-secret")]).unwrap();
    assert_eq!(c.taobao.app_secret, Some(Secret::new("env-secret")));
}

#[test]
fn an_unknown_environment_key_is_named_with_the_variable_to_use() {
    let p = only_problem(MINIMAL, &[("WMS_NODE__TAOBAO__APPKEY", "1")]);
    assert_eq!(
        p.origin,
        Some(Origin::Env {
            var: "WMS_NODE__TAOBAO__APPKEY".into()
        })
    );
    assert!(p.message.contains("WMS_NODE__TAOBAO__APP_KEY"), "{p}");
    let p = only_problem(MINIMAL, &[("WMS_NODE__TAOBA__APP_KEY", "1")]);
    assert!(p.message.contains("WMS_NODE__TAOBAO__"), "{p}");
    let p = only_problem(MINIMAL, &[("WMS_NODE__NODE", "1")]);
    assert!(p.message.contains("WMS_NODE__SECTION__KEY"), "{p}");
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let p = only_problem(MINIMAL, &[("WMS_NODE__OUTBOX__BURST", "lots")]);
    assert_eq!(p.key, "outbox.burst");
    assert_eq!(
        p.origin,
        Some(Origin::Env {
            var: "WMS_NODE__OUTBOX__BURST".into()
        })
    );
}

#[test]
fn secret_values_never_appear_in_problems() {
    // A secret of the wrong type, an unknown key holding a secret, and a secret given twice.
    let text = r#"
[node]
id = "gw1"
[taobao]
app_key = "12345678"
app_secret = 918273645
sesion = "session-918273645"
[mqtt]
password = "mqtt-918273645"
"#;
    let err = load(
        text,
        &[("WMS_NODE__MQTT__PASSWORD_FILE", "/nonexistent/pw")],
    )
    .unwrap_err();
    let shown = format!("{err}\n{err:?}");
    assert!(!shown.contains("918273645"), "{shown}");
    let keys: Vec<String> = err.problems().into_iter().map(|p| p.key).collect();
    assert_eq!(
        keys,
        [
            "taobao.app_secret",
            "taobao.sesion",
            "mqtt.password",
            "mqtt.password_file"
        ],
        "{shown}"
    );
    assert!(shown.contains("it is a secret"), "{shown}");
}

#[test]
fn debug_output_of_a_loaded_config_redacts_secrets() {
    let c = load(MINIMAL, &[("WMS_NODE__TAOBAO__SESSION", "sess-abc")]).unwrap();
    let shown = format!("{c:?}\n{}", c.to_redacted_toml());
    assert!(!shown.contains("s3cret-value"), "{shown}");
    assert!(!shown.contains("sess-abc"), "{shown}");
    assert!(shown.contains("<redacted>"));
}

#[test]
fn the_example_file_is_valid_and_its_values_are_the_compiled_defaults() {
    let c = Config::load_with_env(&example_path(), env(&[])).unwrap();
    let mut expected = Config::default();
    expected.node.id = "wh1-gw1".into();
    expected.taobao.app_key = "12345678".into();
    expected.taobao.app_secret = Some(Secret::new("replace-with-your-app-secret"));
    assert_eq!(c, expected);
}

#[test]
fn the_example_file_documents_every_key() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    // Every key, with every optional key set, as the serializer names them.
    let mut full = Config::default();
    full.taobao.app_secret = Some(Secret::new("x"));
    full.taobao.app_secret_file = Some("x".into());
    full.taobao.session = Some(Secret::new("x"));
    full.taobao.session_file = Some("x".into());
    full.taobao.redirect_uri = Some("x".into());
    full.mqtt.username = Some("x".into());
    full.mqtt.password = Some(Secret::new("x"));
    full.mqtt.password_file = Some("x".into());
    full.alerts.url = Some(Secret::new("x"));
    full.alerts.url_file = Some("x".into());
    full.alerts.secret = Some(Secret::new("x"));
    full.alerts.secret_file = Some("x".into());
    full.floor.language = Some(wms_node::status::i18n::Lang::Zh);
    let table: toml::Table = toml::from_str(&full.to_redacted_toml()).unwrap();

    // (section, key) pairs written in the example, set or commented out.
    let mut section = String::new();
    let mut documented = std::collections::HashSet::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
        } else if let Some((key, _)) = line.trim_start_matches("# ").split_once(" = ") {
            documented.insert((section.clone(), key.trim().to_owned()));
        }
    }
    for (s, keys) in &table {
        for key in keys.as_table().unwrap().keys() {
            assert!(
                documented.contains(&(s.clone(), key.clone())),
                "config/node.example.toml does not document [{s}] {key}"
            );
        }
    }
}

/// The secret the mangled files carry; it must never be shown, whatever else breaks.
const HIDDEN: &str = "Hidden-5ecret-7729";

/// `(section, key)` of every key the example file sets.
fn example_keys(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
        } else if let Some((key, _)) = line.split_once(" = ")
            && !line.starts_with('#')
        {
            keys.push((section.clone(), key.to_owned()));
        }
    }
    keys
}

/// Values of every TOML type, well-formed or not, and the edges of numbers and formats.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| format!("{x:?}")),
        prop::sample::select(vec![
            "nan",
            "-inf",
            "true",
            "false",
            "\"\"",
            "[]",
            "{}",
            "[1, \"a\"]",
            "{ a = 1 }",
            "1979-05-27T07:32:00Z",
            "07:32:00",
            "0x7fffffffffffffff",
            "1e309",
            "\"0.0.0.0:0\"",
            "\"[::1]:99999\"",
            "\"/\"",
            "\"..\"",
            "\"embedded\"",
            "\"1e9 GiB\"",
            "\"-1s\"",
            "\"18446744073709551615s\"",
            "\"99999999999999999999ms\"",
            "[0.8, 0.95, 2.0]",
            "[\"trade\", 7]",
            "\"",
            "'''",
            "= =",
            "\"\\u0000\"",
            "\"\\uD800\"",
        ])
        .prop_map(String::from),
        "\"[ -~]{0,16}\"",
        "\"[\\PC]{0,8}\"",
    ]
}

#[derive(Debug, Clone)]
enum Mangle {
    Delete(usize),
    Duplicate(usize),
    Move(usize, usize),
    SetValue(usize, String),
    Insert(usize, usize, String),
    Junk(usize, String),
}

fn mangle() -> impl Strategy<Value = Mangle> {
    let at = any::<usize>();
    prop_oneof![
        1 => at.prop_map(Mangle::Delete),
        1 => at.prop_map(Mangle::Duplicate),
        1 => (at, at).prop_map(|(a, b)| Mangle::Move(a, b)),
        3 => (at, hostile_value()).prop_map(|(a, v)| Mangle::SetValue(a, v)),
        2 => (at, at, hostile_value()).prop_map(|(a, k, v)| Mangle::Insert(a, k, v)),
        1 => (at, "[\\PC]{0,6}").prop_map(|(a, j)| Mangle::Junk(a, j)),
    ]
}

/// Applies `m` to the lines of a config file; `keys` are the keys to insert.
fn apply(lines: &mut Vec<String>, keys: &[(String, String)], m: &Mangle) {
    let n = lines.len().max(1);
    match m {
        Mangle::Delete(a) if !lines.is_empty() => {
            lines.remove(a % n);
        }
        Mangle::Duplicate(a) if !lines.is_empty() => {
            let l = lines[a % n].clone();
            lines.insert(a % n, l);
        }
        Mangle::Move(a, b) if !lines.is_empty() => {
            let l = lines.remove(a % n);
            lines.insert(b % lines.len().max(1), l);
        }
        Mangle::SetValue(a, v) => {
            // The `a`-th line that sets a key (not the secret's: that one stays as it is).
            let setting: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].contains(" = ") && !lines[i].contains(HIDDEN))
                .collect();
            if let Some(&i) = setting.get(a % setting.len().max(1)) {
                let key = lines[i].split(" = ").next().unwrap_or_default().to_owned();
                lines[i] = format!("{key} = {v}");
            }
        }
        Mangle::Insert(a, k, v) => {
            let (_, key) = &keys[k % keys.len()];
            lines.insert(a % (lines.len() + 1), format!("{key} = {v}"));
        }
        Mangle::Junk(a, j) if !lines.is_empty() => {
            let l = &mut lines[a % n];
            let at = l
                .char_indices()
                .map(|(i, _)| i)
                .nth(a % 7)
                .unwrap_or(l.len());
            l.insert_str(at, j);
        }
        _ => {}
    }
}

/// What holds for any loaded-or-refused configuration: no secret shown; every problem says
/// what and where; an accepted one builds every part's options.
fn check(text: &str, result: Result<Config, ConfigError>) -> Result<(), TestCaseError> {
    match result {
        Ok(c) => {
            let shown = format!("{c:?}\n{}", c.to_redacted_toml());
            prop_assert!(!shown.contains(HIDDEN), "{shown}");
            let _ = c.store_options();
            let _ = c.taobao_options();
            let _ = c.outbox_options();
            let _ = c.intake_options();
            let _ = c.ota_options();
            let _ = c.http_options();
            let _ = c.admin_url();
        }
        Err(e) => {
            let shown = format!("{e}\n{e:?}");
            prop_assert!(
                !shown.contains(HIDDEN),
                "a secret shown:\n{shown}\nfrom:\n{text}"
            );
            let problems = e.problems();
            prop_assert!(!problems.is_empty());
            let lines = text.lines().count() + 1;
            for p in &problems {
                prop_assert!(!p.message.trim().is_empty(), "{p:?}");
                prop_assert!(
                    !p.key.is_empty() || p.origin.is_some(),
                    "names nothing: {p:?}"
                );
                if let Some(Origin::File { line, column, .. }) = &p.origin {
                    prop_assert!(
                        *line >= 1 && *line <= lines && *column >= 1,
                        "{p:?} in:\n{text}"
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The example file, mangled as people and editors mangle files (lines lost, doubled,
    /// moved, values of the wrong type or out of range, keys in the wrong section, stray
    /// bytes), and overridden by any environment: the loader never panics, names every
    /// problem with its key or position, never shows the secret, and what it accepts runs.
    #[test]
    fn a_mangled_file_and_any_environment_are_refused_clearly_or_taken_whole(
        mangles in prop::collection::vec(mangle(), 0..6),
        vars in prop::collection::vec(
            (any::<usize>(), "[A-Za-z_]{0,3}", hostile_value()),
            0..3,
        ),
    ) {
        let example = std::fs::read_to_string(example_path()).unwrap().replace(
            "app_secret = \"replace-with-your-app-secret\"",
            &format!("app_secret = \"{HIDDEN}\""),
        );
        let keys = example_keys(&example);
        let mut lines: Vec<String> = example.lines().map(String::from).collect();
        for m in &mangles {
            apply(&mut lines, &keys, m);
        }
        let text = lines.join("\n");
        let env: Vec<(OsString, OsString)> = vars
            .iter()
            .map(|(k, extra, v)| {
                let (section, key) = &keys[k % keys.len()];
                let var = format!("WMS_NODE__{section}__{key}{extra}").to_ascii_uppercase();
                (var.into(), v.trim_matches('"').into())
            })
            .collect();
        let result = Config::from_toml_with_env(&text, Path::new("/etc/wms-node/node.toml"), env);
        check(&text, result)?;
    }
}
