//! `wms-node stock show|set|adjust|push|stop|resume|safety`: the stock ledger and what the
//! shop is told (DOMAIN.md §5).
//!
//! `show` prints per SKU on hand, reserved (every paid line not shipped, held or not),
//! safety, available, whether sync is on, and per listing the quantity last confirmed by
//! Taobao and when (`--json`: exactly those fields, ids as strings). The changes are audited
//! with the reason given. Exit codes: 0 done, 1 refused or failed, 2 bad usage.

use super::goods::Goods;
use super::orders::{Failure, print};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::process::ExitCode;
use wms_node::config::Config;
use wms_node::ops::goods::{AdjustRequest, PushRequest, SafetyRequest, SetRequest, StockRow};
use wms_node::status::i18n::{Lang, Msg, pad, pad_left, width};

/// `wms-node stock` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Warehouse changes go to the shop as deltas (type=2) at any time, and a zero at once. Anything
else (a refund, the first figure, `stock push`, `stock resume`) is a correction: the node reads
Taobao's figure, waits until order intake has pulled every sale up to that reading, and sends
the difference to the ledger as a delta, so sales made meanwhile stay subtracted. A correction
reads Taobao only while intake lags less than stock.max_intake_lag.

Examples:
  wms-node stock show
  wms-node stock show TSHIRT-RED-M --json
  wms-node stock set TSHIRT-RED-M 40 --reason \"cycle count\"
  wms-node stock adjust TSHIRT-RED-M -2 --reason \"damaged\"
  wms-node stock push TSHIRT-RED-M
  wms-node stock stop TSHIRT-RED-M         (the shop's figure is managed by hand)
  wms-node stock resume TSHIRT-RED-M")]
pub struct StockArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: StockCommand,
    /// Print JSON instead of a table (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// `wms-node stock` subcommands.
#[derive(Debug, Subcommand)]
pub enum StockCommand {
    /// Show on hand, reserved, safety, available and sync per SKU, with the quantity each
    /// listing last got.
    Show {
        /// Only this SKU.
        sku: Option<String>,
    },
    /// Set on hand to QTY (a count).
    Set {
        /// The SKU.
        sku: String,
        /// Units on hand now.
        qty: i64,
        /// Why (kept in the audit trail).
        #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
        reason: String,
    },
    /// Change on hand by ±N.
    Adjust {
        /// The SKU.
        sku: String,
        /// Units to add, or to remove with a minus sign (`-2`).
        #[arg(allow_negative_numbers = true)]
        delta: i64,
        /// Why (kept in the audit trail).
        #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
        reason: String,
    },
    /// Correct the SKU's listings to the ledger (a difference to a fresh reading of Taobao).
    Push {
        /// The SKU.
        sku: String,
        /// Settle at once, even while order intake lags (the correction may re-add units sold
        /// but not pulled yet).
        #[arg(long)]
        ignore_lag: bool,
    },
    /// Stop pushing the SKU's stock (the shop's figure is managed by hand).
    Stop {
        /// The SKU.
        sku: String,
    },
    /// Resume pushing the SKU's stock (its listings get a correction).
    Resume {
        /// The SKU.
        sku: String,
    },
    /// Set the SKU's safety stock (units never offered to the shop).
    Safety {
        /// The SKU.
        sku: String,
        /// Units.
        units: i64,
    },
}

/// Runs a stock command.
pub fn run(args: StockArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let (goods, backend) = Goods::connect(config).await?;
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

async fn execute(g: &Goods, cmd: StockCommand, json: bool, lang: Lang) -> Result<(), Failure> {
    let row = match cmd {
        StockCommand::Show { sku } => {
            let rows = match g {
                Goods::Node(c) => c.stock(sku.as_deref()).await?,
                Goods::Local(a) => a.stock(sku.as_deref())?,
            };
            let views: Vec<_> = rows.iter().map(|r| r.view.clone()).collect();
            if json {
                print(true, &views, |_| String::new());
            } else {
                out!("{}", render(&rows, lang));
            }
            return Ok(());
        }
        StockCommand::Set { sku, qty, reason } => match g {
            Goods::Node(c) => {
                c.stock_action(&sku, "set", &SetRequest { qty, reason })
                    .await?
            }
            Goods::Local(a) => a.set(&sku, qty, &reason).await?,
        },
        StockCommand::Adjust { sku, delta, reason } => match g {
            Goods::Node(c) => {
                c.stock_action(&sku, "adjust", &AdjustRequest { delta, reason })
                    .await?
            }
            Goods::Local(a) => a.adjust(&sku, delta, &reason).await?,
        },
        StockCommand::Push { sku, ignore_lag } => match g {
            Goods::Node(c) => {
                c.stock_action(&sku, "push", &PushRequest { ignore_lag })
                    .await?
            }
            Goods::Local(a) => a.push(&sku, ignore_lag).await?,
        },
        StockCommand::Stop { sku } => match g {
            Goods::Node(c) => c.stock_action(&sku, "stop", &serde_json::json!({})).await?,
            Goods::Local(a) => a.sync(&sku, false).await?,
        },
        StockCommand::Resume { sku } => match g {
            Goods::Node(c) => {
                c.stock_action(&sku, "resume", &serde_json::json!({}))
                    .await?
            }
            Goods::Local(a) => a.sync(&sku, true).await?,
        },
        StockCommand::Safety { sku, units } => match g {
            Goods::Node(c) => {
                c.stock_action(&sku, "safety", &SafetyRequest { safety: units })
                    .await?
            }
            Goods::Local(a) => a.safety(&sku, units).await?,
        },
    };
    if json {
        print(true, &row.view, |_| String::new());
    } else {
        out!("{}", render(std::slice::from_ref(&row), lang));
        if matches!(g, Goods::Local(_)) {
            outln!("{}", lang.t(Msg::NodeNotRunningStock));
        }
    }
    Ok(())
}

/// `2026-12-01T17:00:00+08:00` → `12-01 17:00`.
fn short(t: &str) -> String {
    match (t.get(5..10), t.get(11..16)) {
        (Some(d), Some(h)) => format!("{d} {h}"),
        _ => t.to_owned(),
    }
}

fn render(rows: &[StockRow], lang: Lang) -> String {
    if rows.is_empty() {
        return format!("{}\n", lang.t(Msg::StockNoSkus));
    }
    let t = |m| lang.t(m);
    let heads = [
        Msg::StockSku,
        Msg::StockOnHand,
        Msg::StockReserved,
        Msg::StockSafety,
        Msg::StockAvailable,
        Msg::StockSync,
    ];
    // The usual widths, wider where a language's heading needs it.
    let mut w = [20, 8, 8, 6, 9, 7];
    for (w, h) in w.iter_mut().zip(heads) {
        *w = (*w).max(width(t(h)));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} {} {} {}  {}  {}",
        pad(t(Msg::StockSku), w[0]),
        pad_left(t(Msg::StockOnHand), w[1]),
        pad_left(t(Msg::StockReserved), w[2]),
        pad_left(t(Msg::StockSafety), w[3]),
        pad_left(t(Msg::StockAvailable), w[4]),
        pad(t(Msg::StockSync), w[5]),
        t(Msg::StockListings),
    );
    for r in rows {
        let v = &r.view;
        let listings: Vec<String> = v
            .listings
            .iter()
            .map(|l| {
                let key = format!("{}:{}", l.num_iid, l.sku_id.as_deref().unwrap_or("0"));
                let pushed = match (&l.qty, &l.at) {
                    (Some(q), Some(at)) => lang.f(Msg::StockPushedAt, &[q, &short(at)]),
                    _ => lang.t(Msg::StockNever).to_owned(),
                };
                let owed = r
                    .owed
                    .iter()
                    .find(|o| o.listing == key && !o.what.is_empty())
                    .map(|o| format!("; {}", o.what))
                    .unwrap_or_default();
                format!("{key} ({pushed}{owed})")
            })
            .collect();
        let _ = writeln!(
            out,
            "{} {} {} {} {}  {}  {}",
            pad(&v.sku, w[0]),
            pad_left(&v.on_hand.to_string(), w[1]),
            pad_left(&v.reserved.to_string(), w[2]),
            pad_left(&v.safety.to_string(), w[3]),
            pad_left(&v.available.to_string(), w[4]),
            pad(&v.sync.to_string(), w[5]),
            if listings.is_empty() {
                "-".to_owned()
            } else {
                listings.join(", ")
            }
        );
    }
    out
}
