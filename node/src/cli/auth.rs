//! `wms-node auth`: PLACEHOLDER written by the CLI helper so the binary builds; the Taobao
//! helper replaces this file with the real OAuth commands (url, exchange, login, status).

use clap::{Args, Subcommand};
use std::process::ExitCode;

/// `wms-node auth` options.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuthCommand,
}

/// `wms-node auth` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Print the URL at which the shop owner authorizes the node.
    Url,
    /// Trade an authorization code for an access token.
    Exchange {
        /// The `code` from the redirect.
        code: String,
    },
    /// Authorize interactively: open the URL, catch the redirect locally, store the token.
    Login,
    /// Show the shop, expiry and whether the token can be refreshed (never the token).
    Status,
}

/// Runs an auth command.
pub fn run(_args: AuthArgs, _config: &wms_node::config::Config) -> anyhow::Result<ExitCode> {
    eprintln!("wms-node auth: not built yet (issue 3, Taobao OAuth).");
    Ok(ExitCode::FAILURE)
}
