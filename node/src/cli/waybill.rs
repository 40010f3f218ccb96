//! `wms-node waybill get TID [--package N | --oids …]` and `waybill void TID`: Cainiao
//! e-waybills (DOMAIN.md §7).
//!
//! `get` asks `cainiao.waybill.ii.get` once per package and keeps the number with its print
//! data before anything prints; asking again reprints the same number. When an answer was
//! lost, the next `get` looks the number up by trade code before asking again. `--package N`
//! picks the trade's N-th package (split or merged parcels); `--oids` makes a split package
//! of those lines. `void` cancels a package's number (through the outbox) and gives its lines
//! a new package. The print data is shown by size only: it goes to the printer.

use super::goods::Goods;
use super::orders::{Failure, print};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::process::ExitCode;
use wms_node::config::Config;
use wms_node::ops::goods::{VoidRequest, WaybillRequest};
use wms_node::status::i18n::{Lang, Msg, pad};
use wms_node::sync::waybill::WaybillView;

/// `wms-node waybill` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Needs [waybill] in the config (cp_code, branch_code, template_url, the sender).

Examples:
  wms-node waybill get 2701234567890000001
  wms-node waybill get 2701234567890000001 --oids 2701234567890000002
  wms-node waybill get 2701234567890000001 --package 2
  wms-node waybill void 2701234567890000001 --reason \"label torn\"")]
pub struct WaybillArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: WaybillCommand,
    /// Print JSON instead of text (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// `wms-node waybill` subcommands.
#[derive(Debug, Subcommand)]
pub enum WaybillCommand {
    /// Get (or reuse) the e-waybill of a trade's package, ready to print.
    Get {
        /// The trade.
        tid: u64,
        /// The trade's N-th package.
        #[arg(long, conflicts_with = "oids")]
        package: Option<u32>,
        /// A new package of these lines (a split parcel), comma-separated.
        #[arg(long, value_delimiter = ',')]
        oids: Vec<u64>,
    },
    /// Void a package's waybill (cancelled at Cainiao; the lines get a new package).
    Void {
        /// The trade.
        tid: u64,
        /// The trade's N-th package (default: its labelled one).
        #[arg(long)]
        package: Option<u32>,
        /// Why.
        #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
        reason: String,
    },
}

/// Runs a waybill command.
pub fn run(args: WaybillArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let (goods, backend) = Goods::connect(config).await?;
        let goods = match args.command {
            WaybillCommand::Get { .. } => goods.with_taobao(config).await?,
            WaybillCommand::Void { .. } => goods,
        };
        let r = execute(&goods, args.command, args.json, config.node.language).await;
        backend.close().await;
        match r {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(Failure::Said(m)) => {
                eprintln!("error: {m}");
                Ok(ExitCode::FAILURE)
            }
            Err(Failure::Other(e)) => Err(e),
        }
    })
}

async fn execute(g: &Goods, cmd: WaybillCommand, json: bool, lang: Lang) -> Result<(), Failure> {
    match cmd {
        WaybillCommand::Get { tid, package, oids } => {
            let v = match g {
                Goods::Node(c) => {
                    c.waybill(
                        tid,
                        &WaybillRequest {
                            package,
                            oids: oids.iter().map(u64::to_string).collect(),
                        },
                    )
                    .await?
                }
                Goods::Local(a) => a.waybill(tid, package, oids).await?,
            };
            print(json, &v, |v| render(v, lang));
        }
        WaybillCommand::Void {
            tid,
            package,
            reason,
        } => {
            let p = match g {
                Goods::Node(c) => c.void(tid, &VoidRequest { package, reason }).await?.package,
                Goods::Local(a) => a.void(tid, package, &reason).await?,
            };
            print(json, &serde_json::json!({ "package": p }), |_| {
                format!("{}\n", lang.f(Msg::WbVoided, &[&p, &tid]))
            });
        }
    }
    Ok(())
}

fn render(v: &WaybillView, lang: Lang) -> String {
    let mut out = String::new();
    let row = |out: &mut String, k: Msg, v: &str| {
        let _ = writeln!(out, "{} {v}", pad(lang.t(k), 10));
    };
    row(&mut out, Msg::WbPackage, &v.package);
    row(&mut out, Msg::WbTrades, &v.tids.join(", "));
    row(
        &mut out,
        Msg::WbWaybill,
        &format!(
            "{} ({}{}){}",
            v.waybill_code,
            v.real_cp_code,
            if v.cp_code != v.real_cp_code {
                lang.f(Msg::WbAskedAs, &[&v.cp_code])
            } else {
                String::new()
            },
            if v.reprint {
                lang.t(Msg::WbReprint)
            } else {
                ""
            }
        ),
    );
    row(
        &mut out,
        Msg::WbPrintJob,
        &lang.f(
            Msg::WbPrintData,
            &[
                &v.print_job.job_id,
                &v.print_job.format,
                &v.print_job.data_bytes,
                &v.print_job.template_url,
            ],
        ),
    );
    let _ = writeln!(
        out,
        "{}",
        lang.f(
            Msg::WbShipWith,
            &[
                &v.tids.first().map(String::as_str).unwrap_or(""),
                &v.real_cp_code,
                &v.waybill_code
            ]
        )
    );
    out
}
