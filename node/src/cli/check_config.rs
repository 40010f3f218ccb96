//! `wms-node check-config` and `wms-node default-config`.
//!
//! `check-config` prints the effective configuration (defaults, file and environment
//! merged, secret files read) with every secret shown as `"<redacted>"`, or every problem
//! with its file position or environment variable. `default-config` prints the commented
//! example file that is compiled into the binary, so an installer always has one that
//! matches the version they run.

use super::{EXIT_USAGE, load_config};
use std::path::Path;
use std::process::ExitCode;
use wms_node::status::i18n::Msg;

/// The commented example config, `config/node.example.toml`.
pub const EXAMPLE: &str = include_str!("../../../config/node.example.toml");

/// Checks the config at `path`.
pub fn check(path: &Path) -> ExitCode {
    let Some(config) = load_config(path) else {
        return ExitCode::from(EXIT_USAGE);
    };
    outln!(
        "{}",
        config
            .node
            .language
            .f(Msg::CliEffectiveConfig, &[&path.display()])
    );
    out!("{}", config.to_redacted_toml());
    ExitCode::SUCCESS
}

/// Prints the commented example config.
pub fn print_default() -> ExitCode {
    out!("{EXAMPLE}");
    ExitCode::SUCCESS
}
