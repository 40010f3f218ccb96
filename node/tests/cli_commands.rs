//! The real `wms-node` executable: help, exit codes, `check-config`, `default-config`.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_wms-node");

fn wms_node(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    // A clean environment for the node's own variables, whatever the developer has set.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WMS_NODE") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn output(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run wms-node");
    (
        status.code().expect("exited normally"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/node.example.toml")
}

#[test]
fn help_lists_the_commands_and_how_to_start() {
    let (code, out, _) = output(&mut wms_node(&["--help"]));
    assert_eq!(code, 0);
    for word in [
        "run",
        "demo",
        "check-config",
        "default-config",
        "auth",
        "queue",
        "stock",
        "ship",
        "waybill",
        "reconcile",
        "ota",
        "WMS_NODE__SECTION__KEY",
        "Exit codes",
    ] {
        assert!(out.contains(word), "--help lacks {word}:\n{out}");
    }
}

#[test]
fn version_is_printed_by_flag_and_by_command() {
    let (code, out, _) = output(&mut wms_node(&["--version"]));
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let (code, out, _) = output(&mut wms_node(&["version"]));
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("wms-node {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_usage_exits_2_with_a_message() {
    for args in [
        &[][..],
        &["frobnicate"][..],
        &["run", "--no-such-flag"][..],
        &["--log-format", "xml", "version"][..],
        &["reconcile", "--check", "99"][..],
    ] {
        let (code, _, err) = output(&mut wms_node(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.is_empty(), "{args:?}");
    }
}

#[test]
fn check_config_on_the_example_exits_0_and_never_prints_the_secret() {
    let (code, out, err) = output(wms_node(&["check-config", "--config"]).arg(example()));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[taobao]"), "{out}");
    assert!(out.contains("app_secret = \"<redacted>\""), "{out}");
    assert!(!out.contains("replace-with-your-app-secret"), "{out}");
    assert!(!err.contains("replace-with-your-app-secret"), "{err}");
}

#[test]
fn check_config_redacts_secrets_from_files_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app_secret"), "file-secret-4711\n").unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "[node]\nid = \"gw1\"\n[taobao]\napp_key = \"1\"\napp_secret_file = \"app_secret\"\n\
         [mqtt]\nbroker = \"mqtts://broker.lan\"\nusername = \"node\"\n",
    )
    .unwrap();
    let (code, out, err) = output(
        wms_node(&["check-config", "--config"])
            .arg(&config)
            .env("WMS_NODE__MQTT__PASSWORD", "env-secret-4711")
            .env("WMS_NODE__TAOBAO__SESSION", "session-4711"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("4711") && !err.contains("4711"), "{out}{err}");
    assert_eq!(out.matches(" = \"<redacted>\"").count(), 3, "{out}");
}

#[test]
fn check_config_lists_every_problem_with_positions_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "[node]\nidd = \"gw1\"\n[taobao]\napp_key = \"1\"\napp_secret = \"top-secret-99\"\n\
         app_secret_file = \"/nonexistent/x\"\n[outbox]\nburst = -1\n",
    )
    .unwrap();
    let (code, out, err) = output(
        wms_node(&["check-config", "--config"])
            .arg(&config)
            .env("WMS_NODE__HTTP__LISTN", "127.0.0.1:0"),
    );
    assert_eq!(code, 2);
    assert!(out.is_empty(), "{out}");
    let at = |line: usize| format!("{}:{line}:", config.display());
    assert!(
        err.contains(&at(2)) && err.contains("did you mean `id`?"),
        "{err}"
    );
    assert!(err.contains(&at(6)) && err.contains("both set"), "{err}");
    assert!(
        err.contains(&at(8)) && err.contains("outbox.burst"),
        "{err}"
    );
    assert!(err.contains("WMS_NODE__HTTP__LISTEN"), "{err}");
    assert!(err.contains("node.id: is required"), "{err}");
    assert!(!err.contains("top-secret-99"), "{err}");
}

#[test]
fn a_syntax_error_is_shown_with_line_and_column_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[node]\nid = gw1\n").unwrap();
    let (code, _, err) = output(wms_node(&["check-config", "--config"]).arg(&config));
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{}:2:6: invalid TOML", config.display())),
        "{err}"
    );
}

#[test]
fn a_missing_config_file_exits_2_with_a_hint() {
    let (code, _, err) = output(&mut wms_node(&[
        "check-config",
        "--config",
        "/nonexistent/wms-node.toml",
    ]));
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/wms-node.toml"), "{err}");
    assert!(err.contains("default-config"), "{err}");
}

#[test]
fn the_config_path_can_come_from_wms_node_config() {
    let (code, _, err) = output(wms_node(&["check-config"]).env("WMS_NODE_CONFIG", example()));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn default_config_prints_the_example_which_checks_clean() {
    let (code, out, _) = output(&mut wms_node(&["default-config"]));
    assert_eq!(code, 0);
    assert_eq!(out, std::fs::read_to_string(example()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, out).unwrap();
    let (code, _, err) = output(wms_node(&["check-config", "--config"]).arg(&config));
    assert_eq!(code, 0, "{err}");
}

/// `wms-node check-config | head -1`: a reader that stops early ends the command quietly
/// (exit 0, nothing on stderr), not with a panic about a broken pipe.
#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    use std::process::Stdio;
    let example = example();
    let config = example.to_str().unwrap();
    for args in [
        vec!["check-config", "--config", config],
        vec!["default-config"],
    ] {
        let mut child = wms_node(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before the command has started writing: its first write gets
        // EPIPE, as under `| head` once head has what it wants.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
}
