//! `wms-node ota`: over-the-air updates of the node's own software.
//!
//! Not built yet (a later issue); says so plainly.

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// `wms-node ota` options.
#[derive(Debug, Args)]
pub struct OtaArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: OtaCommand,
}

/// `wms-node ota` subcommands.
#[derive(Debug, Subcommand)]
pub enum OtaCommand {
    /// Show the running version, both slots, and any update in progress.
    Status,
    /// Download, verify and install the update a signed manifest describes.
    Apply {
        /// The manifest (JSON: version, url, size, sha256, ed25519 signature).
        manifest: PathBuf,
    },
}

/// Runs an OTA command.
pub fn run(args: OtaArgs) -> anyhow::Result<ExitCode> {
    let will = match args.command {
        OtaCommand::Status => "show the running version, the A/B slots and any update in progress.",
        OtaCommand::Apply { .. } => {
            "download the update with resume, verify its hash and ed25519 signature (fail \
             closed), refuse downgrades, install it into the inactive slot, switch, and roll \
             back unless the new version passes its health check in time."
        }
    };
    super::not_built("ota", will, "not filed yet (OTA, DESIGN.md \"OTA\")")
}
