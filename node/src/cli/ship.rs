//! `wms-node ship TID --company CODE --waybill NO [--oids OID,…]`: a parcel leaves (the same
//! function the floor's ship scan calls).
//!
//! The order's holds are checked (a held order is refused with its reason), the carrier code
//! and the waybill number against the carrier list Taobao gave (an unknown code names the
//! nearest valid ones), and in one transaction the lines are marked shipped, the order handed
//! over, the goods taken off the ledger and one `Ship` op per trade queued (a merged parcel
//! ships every trade in it). `--oids` ships some lines as a split parcel. Exit codes: 0
//! queued, 1 refused, 2 bad usage.

use super::goods::Goods;
use super::orders::{Failure, print};
use anyhow::Context;
use clap::Args;
use std::fmt::Write as _;
use std::process::ExitCode;
use wms_node::config::Config;
use wms_node::status::i18n::{Lang, Msg};
use wms_node::wms::ship::{ShipRequest, Shipment};

/// `wms-node ship` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  wms-node ship 2701234567890000001 --company YTO --waybill YT1234567890123
  wms-node ship 2701234567890000001 --company SF --waybill SF1234567890123 \\
      --oids 2701234567890000002,2701234567890000003")]
pub struct ShipArgs {
    /// The trade.
    pub tid: u64,
    /// The carrier code (`taobao.logistics.companies.get`: YTO, ZTO, SF, …).
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub company: String,
    /// The waybill (tracking) number.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub waybill: String,
    /// Only these lines (a split parcel), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub oids: Vec<u64>,
    /// Print JSON instead of text (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// Runs `ship`.
pub fn run(args: ShipArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let (goods, backend) = Goods::connect(config).await?;
        let req = ShipRequest {
            tid: args.tid,
            company_code: args.company.trim().to_owned(),
            out_sid: args.waybill.trim().to_owned(),
            oids: args.oids.clone(),
        };
        let r: Result<Shipment, Failure> = match &goods {
            Goods::Node(c) => c.ship(&req).await.map_err(Failure::from),
            Goods::Local(a) => a.ship(req).await.map_err(Failure::from),
        };
        let local = matches!(goods, Goods::Local(_));
        backend.close().await;
        match r {
            Ok(s) => {
                print(args.json, &s, |s| render(s, local, config.node.language));
                Ok(ExitCode::SUCCESS)
            }
            Err(Failure::Said(m)) => {
                eprintln!("error: {m}");
                Ok(ExitCode::FAILURE)
            }
            Err(Failure::Other(e)) => Err(e),
        }
    })
}

fn render(s: &Shipment, local: bool, lang: Lang) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", lang.f(Msg::ShipShipped, &[&s.package]));
    for op in &s.ops {
        let lines = if op.oids.is_empty() {
            String::new()
        } else {
            let oids: Vec<String> = op.oids.iter().map(u64::to_string).collect();
            lang.f(Msg::ShipLines, &[&oids.join(",")])
        };
        let _ = writeln!(
            out,
            "{}",
            lang.f(
                Msg::ShipOp,
                &[
                    &format!("{:<6}", op.seq),
                    &op.tid,
                    &op.company_code,
                    &op.out_sid,
                    &lines
                ]
            )
        );
    }
    if local {
        let _ = writeln!(out, "{}", lang.t(Msg::NodeNotRunningShip));
    }
    out
}
