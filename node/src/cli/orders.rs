//! `wms-node orders list|show|hold|release` and the backend shared with `wms-node sku`.
//!
//! While the node runs, these go through its admin API (`[http] listen`); when nothing
//! answers there, they open the store file themselves (holding its lock, so a write never
//! races the node). Output is a table, or with `--json` exactly the admin API's views: ids as
//! strings, times as RFC 3339 with offset, `state` the local state (never "held": holds are
//! their own list). Exit codes: 0 done, 1 failure (no such order, refused), 2 bad usage.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::fmt::Write as _;
use std::process::ExitCode;
use wms_node::config::Config;
use wms_node::ops::alert::Alerts;
use wms_node::ops::orders::{AdminError, OrdersAdmin, OrdersClient, SkuSyncer};
use wms_node::outbox::admin::{AdminClient, ClientError};
use wms_node::status::i18n::{Lang, Msg, pad, pad_left};
use wms_node::store::{OpenError, Store};
use wms_node::wms::view::{OrderFilter, OrderView};
use wms_node::wms::{Bus, ShopId};

/// `wms-node orders` options.
#[derive(Debug, Args)]
#[command(after_help = "\
While the node runs, these commands go through its HTTP API ([http] listen); otherwise they \
open the database directly.

Examples:
  wms-node orders list --held
  wms-node orders list --state released --json
  wms-node orders show 2701234567890000001
  wms-node orders hold 2701234567890000001 --reason \"buyer asked to wait\"
  wms-node orders release 2701234567890000001")]
pub struct OrdersArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: OrdersCommand,
    /// Print JSON instead of a table (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// `wms-node orders` subcommands.
#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// List orders, newest first.
    List {
        /// Only orders in this local state: new, released, picking, picked, verified,
        /// packed, weighed, labelled, handed_over, consigned, put_back, cancelled, exception.
        #[arg(long)]
        state: Option<String>,
        /// Only held orders (a hold is not a state: see the HOLDS column).
        #[arg(long)]
        held: bool,
        /// At most this many (1–10000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only orders with a tid below this (the next page: the last tid shown).
        #[arg(long)]
        before: Option<u64>,
    },
    /// Show one order: state, holds, deadline, lines.
    Show {
        /// The trade id.
        tid: u64,
    },
    /// Put an order on hold (it stops on the floor until released).
    Hold {
        /// The trade id.
        tid: u64,
        /// Why (shown to everyone who looks at the order; required).
        #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
        reason: String,
    },
    /// Lift an operator's hold, or decide a hold that waits for a person (partial refund,
    /// review). Holds from Taobao or the SKU map clear by themselves when their cause does.
    Release {
        /// The trade id.
        tid: u64,
    },
}

/// Where the commands go.
pub enum Backend {
    /// The running node's HTTP API.
    Node(OrdersClient),
    /// The store, opened (and locked) by this process.
    Local(OrdersAdmin),
}

/// Connects to the running node, or opens the store when nothing answers.
pub async fn connect(config: &Config) -> anyhow::Result<Backend> {
    let url = config.admin_url();
    let client = OrdersClient(AdminClient::new(&url)?);
    let probe = OrderFilter {
        limit: Some(1),
        ..OrderFilter::default()
    };
    match client.list(&probe).await {
        Ok(_) => return Ok(Backend::Node(client)),
        Err(ClientError::Unreachable { .. }) => {}
        Err(e) => bail!("the node at {url} answered, but not as expected: {e}"),
    }
    let opts = config.store_options();
    let path = opts.path.clone();
    if !opts.exists() {
        bail!(
            "no database at {} (has the node run with this node.data_dir?)",
            path.display()
        );
    }
    let alerts = Alerts::new();
    let store = match Store::open(opts, alerts.clone()) {
        Ok(s) => s,
        Err(OpenError::InUse { .. }) => bail!(
            "{} is in use by a running node, but its admin API at {url} did not answer; check \
             [http] listen in the config",
            path.display()
        ),
        Err(e) => return Err(e).context("cannot open the database"),
    };
    Ok(Backend::Local(OrdersAdmin::new(
        store,
        ShopId::main(),
        config.rules(),
        Bus::new(),
        alerts,
    )))
}

impl Backend {
    /// Closes the store if this process opened it.
    pub async fn close(self) {
        if let Backend::Local(a) = self {
            let _ = a.store().clone().close().await;
        }
    }

    /// For a stopped node: `sku sync` through a Taobao client over the store's tokens.
    pub async fn taobao(
        admin: &OrdersAdmin,
        config: &Config,
    ) -> anyhow::Result<std::sync::Arc<dyn SkuSyncer>> {
        let taobao = wms_node::taobao::setup::connect(
            &config.taobao_options(),
            admin.store().clone(),
            Alerts::new(),
        )
        .await
        .context("cannot set up the Taobao client")?;
        Ok(std::sync::Arc::new(wms_node::sync::skus::SkuSync {
            client: taobao.client,
            store: admin.store().clone(),
            shop: ShopId::main(),
            rules: config.rules(),
            bus: Bus::new(),
            clock: wms_node::taobao::time::Clock::system(),
        }))
    }
}

/// An operator-facing failure: "no such order" and "refused" exit 1 with the message.
pub enum Failure {
    /// Tell the operator and exit 1.
    Said(String),
    /// Anything else.
    Other(anyhow::Error),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match &e {
            ClientError::Api { status, message } if (400..500).contains(status) => {
                Failure::Said(message.clone())
            }
            _ => Failure::Other(e.into()),
        }
    }
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Failed(m) => Failure::Other(anyhow::anyhow!(m)),
            AdminError::Rows(rows) => Failure::Said(
                rows.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            e => Failure::Said(e.to_string()),
        }
    }
}

/// Prints `value` as JSON, or the table.
pub fn print<T: Serialize>(json: bool, value: &T, table: impl FnOnce(&T) -> String) {
    if json {
        match serde_json::to_string_pretty(value) {
            Ok(s) => outln!("{s}"),
            Err(e) => eprintln!("error: cannot print JSON: {e}"),
        }
    } else {
        out!("{}", table(value));
    }
}

/// Runs an orders command.
pub fn run(args: OrdersArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let backend = connect(config).await?;
        let r = execute(&backend, args.command, args.json, config.node.language).await;
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

async fn execute(b: &Backend, cmd: OrdersCommand, json: bool, lang: Lang) -> Result<(), Failure> {
    match cmd {
        OrdersCommand::List {
            state,
            held,
            limit,
            before,
        } => {
            if !(1..=10_000).contains(&limit) {
                return Err(Failure::Said("--limit must be between 1 and 10000".into()));
            }
            let f = OrderFilter {
                state,
                held,
                before,
                limit: Some(limit),
            };
            let list = match b {
                Backend::Node(c) => c.list(&f).await?,
                Backend::Local(a) => a.list(&f)?,
            };
            print(json, &list, |l| render_list(l, limit, lang));
        }
        OrdersCommand::Show { tid } => {
            let o = match b {
                Backend::Node(c) => c.show(tid).await?,
                Backend::Local(a) => a.show(tid)?,
            };
            print(json, &o, |o| render_order(o, lang));
        }
        OrdersCommand::Hold { tid, reason } => {
            let o = match b {
                Backend::Node(c) => c.hold(tid, &reason).await?,
                Backend::Local(a) => a.hold(tid, &reason).await?,
            };
            print(json, &o, |o| {
                format!(
                    "{}\n{}",
                    lang.f(Msg::OrdOnHold, &[&o.tid, &reason]),
                    render_order(o, lang)
                )
            });
        }
        OrdersCommand::Release { tid } => {
            let r = match b {
                Backend::Node(c) => c.release(tid).await?,
                Backend::Local(a) => a.release(tid).await?,
            };
            print(json, &r.order, |o| {
                let others = if o.holds.is_empty() {
                    ""
                } else {
                    lang.t(Msg::OrdOtherHolds)
                };
                format!(
                    "{}\n{}",
                    lang.f(Msg::OrdReleased, &[&r.released.join(", "), &o.tid, &others]),
                    render_order(o, lang)
                )
            });
        }
    }
    Ok(())
}

/// `2026-12-01T17:00:00+08:00` → `12-01 17:00`.
fn short_time(t: &str) -> String {
    match (t.get(5..10), t.get(11..16)) {
        (Some(d), Some(h)) => format!("{d} {h}"),
        _ => t.to_owned(),
    }
}

/// A state or hold code in the command's language (the code itself where the catalogue has
/// no word for it).
fn word(code: &str, lang: Lang) -> String {
    lang.order_word(code)
}

fn holds_text(o: &OrderView, lang: Lang) -> String {
    if o.holds.is_empty() {
        "-".to_owned()
    } else {
        o.holds
            .iter()
            .map(|h| word(&h.code, lang))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn render_list(list: &[OrderView], limit: usize, lang: Lang) -> String {
    if list.is_empty() {
        return format!("{}\n", lang.t(Msg::OrdNone));
    }
    let t = |m| lang.t(m);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} {} {} {} {}  {}",
        pad(t(Msg::OrdTid), 20),
        pad(t(Msg::OrdState), 12),
        pad(t(Msg::OrdTaobaoStatus), 26),
        pad(t(Msg::OrdHolds), 22),
        pad(t(Msg::OrdShipBy), 12),
        pad_left(t(Msg::OrdQty), 5),
        t(Msg::OrdLines),
    );
    for o in list {
        let qty: u64 = o.lines.iter().map(|l| u64::from(l.qty)).sum();
        let skus: Vec<String> = o
            .lines
            .iter()
            .map(|l| match &l.sku {
                Some(s) => format!("{}×{s}", l.qty),
                None => format!("{}×{}", l.qty, t(Msg::OrdUnmapped)),
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<20} {} {:<26} {} {:<12} {:>5}  {}",
            o.tid,
            pad(&word(&o.state, lang), 12),
            o.taobao_status,
            pad(&holds_text(o, lang), 22),
            o.ship_by.as_deref().map(short_time).unwrap_or_default(),
            qty,
            skus.join(" ")
        );
    }
    if list.len() >= limit
        && let Some(last) = list.last()
    {
        let _ = writeln!(out, "{}", lang.f(Msg::OrdMore, &[&last.tid]));
    }
    out
}

fn render_order(o: &OrderView, lang: Lang) -> String {
    let t = |m| lang.t(m);
    let mut out = String::new();
    let row = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "{} {v}", pad(k, 14));
    };
    row(&mut out, t(Msg::OrdRowTid), &o.tid);
    row(&mut out, t(Msg::OrdRowState), &word(&o.state, lang));
    row(&mut out, t(Msg::OrdRowTaobaoStatus), &o.taobao_status);
    row(
        &mut out,
        t(Msg::OrdRowShipBy),
        o.ship_by.as_deref().unwrap_or("-"),
    );
    row(
        &mut out,
        t(Msg::OrdRowPaid),
        o.pay_time.as_deref().unwrap_or("-"),
    );
    row(&mut out, t(Msg::OrdRowModified), &o.modified);
    row(&mut out, t(Msg::OrdRowArrived), &o.arrived);
    row(&mut out, t(Msg::OrdRowRegion), &o.region.join(" "));
    row(
        &mut out,
        t(Msg::OrdRowReceiver),
        o.receiver.as_deref().unwrap_or("-"),
    );
    if o.holds.is_empty() {
        row(&mut out, t(Msg::OrdRowHolds), t(Msg::None_));
    } else {
        for (i, h) in o.holds.iter().enumerate() {
            let text = if h.code == "operator" {
                lang.f(Msg::OrdOperatorHold, &[&h.since, &h.reason])
            } else {
                lang.f(
                    Msg::OrdHoldSince,
                    &[&word(&h.code, lang), &h.source, &h.since, &h.detail],
                )
            };
            row(
                &mut out,
                if i == 0 { t(Msg::OrdRowHolds) } else { "" },
                &text,
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{} {} {}  {} {} {}",
        pad(t(Msg::OrdOid), 20),
        pad(t(Msg::StockSku), 18),
        pad_left(t(Msg::OrdQty), 4),
        pad(t(Msg::OrdMapping), 10),
        pad(t(Msg::OrdLineStatus), 26),
        t(Msg::OrdRefund),
    );
    for l in &o.lines {
        let _ = writeln!(
            out,
            "{:<20} {:<18} {:>4}  {:<10} {:<26} {}",
            l.oid,
            l.sku.as_deref().unwrap_or("-"),
            l.qty,
            l.mapping,
            l.status.as_deref().unwrap_or("-"),
            l.refund_status.as_deref().unwrap_or("-")
        );
        for c in &l.components {
            let _ = writeln!(out, "{:<20}   {:<16} {:>4}", "", c.sku, c.qty);
        }
    }
    out
}
