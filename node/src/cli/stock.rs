//! `wms-node stock`: show local stock figures and queue full pushes to Taobao.
//!
//! Not built yet (stock sync is a later issue); the subcommands exist so scripts and docs
//! can name them, and say so plainly.

use clap::{Args, Subcommand};
use std::process::ExitCode;

/// `wms-node stock` options.
#[derive(Debug, Args)]
pub struct StockArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: StockCommand,
}

/// `wms-node stock` subcommands.
#[derive(Debug, Subcommand)]
pub enum StockCommand {
    /// Show on hand, reserved and available per SKU, and the last value pushed to Taobao.
    List {
        /// Only this warehouse SKU.
        #[arg(long)]
        sku: Option<String>,
    },
    /// Queue a full stock update to Taobao for the given SKUs (all mapped SKUs if none).
    Push {
        /// Warehouse SKUs.
        skus: Vec<String>,
    },
}

/// Runs a stock command.
pub fn run(args: StockArgs) -> anyhow::Result<ExitCode> {
    let will = match args.command {
        StockCommand::List { .. } => {
            "list on hand, reserved (paid, not shipped), safety stock and available per SKU, \
             with the value last pushed to Taobao and when."
        }
        StockCommand::Push { .. } => {
            "queue a full update (type=1) of max(0, available) for each mapped (num_iid, \
             sku_id) in the outbox, coalesced with any update already waiting; refused while \
             order intake lags behind Taobao."
        }
    };
    super::not_built(
        "stock",
        will,
        "not filed yet (stock sync, DESIGN.md \"Stock\", DOMAIN.md §5)",
    )
}
