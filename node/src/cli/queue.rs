//! `wms-node queue`: PLACEHOLDER written by the CLI helper so the binary builds; the
//! outbox helper replaces this file with the real commands (list, show, retry, drop, stats).

use clap::{Args, Subcommand};
use std::process::ExitCode;

/// `wms-node queue` options.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: QueueCommand,
}

/// `wms-node queue` subcommands.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queued operations.
    List,
    /// Show one operation.
    Show {
        /// Its sequence number.
        seq: u64,
    },
    /// Retry a dead-lettered operation.
    Retry {
        /// Its sequence number.
        seq: u64,
    },
    /// Drop an operation.
    Drop {
        /// Its sequence number.
        seq: u64,
    },
    /// Queue and store statistics.
    Stats,
}

/// Runs a queue command.
pub fn run(
    _args: QueueArgs,
    _store: wms_node::store::StoreOptions,
    _admin_url: Option<String>,
) -> anyhow::Result<ExitCode> {
    eprintln!("wms-node queue: not built yet (issue 2, outbox).");
    Ok(ExitCode::FAILURE)
}
