//! `wms-node reconcile`: compare the node's view with Taobao's and report differences.
//!
//! Not built yet (a later issue); says so plainly.

use clap::Args;
use std::process::ExitCode;

/// `wms-node reconcile` options.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Run only this check (1–8, see DOMAIN.md §11); all of them by default.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
    pub check: Option<u8>,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs reconciliation.
pub fn run(_args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    super::not_built(
        "reconcile",
        "compare local orders, shipments, waybills and stock with Taobao, highest priority \
         first (shipped here but not on Taobao; refunded there but still active here; paid \
         orders missing here; deadlines at risk; stock drift; stale waybills; dead letters \
         and bans; store health), print each finding and raise its alert.",
        "not filed yet (reconciliation, DOMAIN.md §11)",
    )
}
