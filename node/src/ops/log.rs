//! Logging setup: `tracing` to stderr, human lines or JSON objects.
//!
//! The filter comes from `RUST_LOG` when it is set, else from `log.level`. Text lines are
//! coloured only when stderr is a terminal, so journald and log files stay clean. Log
//! fields carry ids (tid, oid, seq, device), never secrets or buyer data.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`log.format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines; coloured when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `RUST_LOG` or `log.level` is not a valid filter.
    #[error("bad log filter `{filter}`: {reason}")]
    Filter {
        /// The filter text.
        filter: String,
        /// The parser's complaint.
        reason: String,
    },
}

impl LogError {
    /// Never: a bad filter has to be fixed by a person.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Installs the global subscriber. Calling it again (tests) keeps the first one.
pub fn init(level: &str, format: LogFormat) -> Result<(), LogError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => parse(&env)?,
        _ => parse(level)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is already set, which is fine to keep.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    Ok(())
}

fn parse(filter: &str) -> Result<EnvFilter, LogError> {
    // The embedded broker (rmqtt) logs every client's disconnect at info; the floor logs what
    // matters itself. Its warnings stay, and a filter that names rmqtt decides for itself.
    let filter = if filter.contains("rmqtt") {
        filter.to_owned()
    } else {
        format!("{filter},rmqtt=warn,rmqtt_net=warn")
    };
    let filter = filter.as_str();
    EnvFilter::builder()
        .parse(filter)
        .map_err(|e| LogError::Filter {
            filter: filter.to_owned(),
            reason: e.to_string(),
        })
}
