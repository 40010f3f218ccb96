//! `wms-node queue list|show|retry|drop|stats`: inspect and repair the outbox (the queue of
//! operations waiting for Taobao).
//!
//! redb lets one process open the database file. While the node runs, these commands ask it
//! through its admin HTTP API (`admin_url`, from `[http] listen`); when nothing answers
//! there, they open the store directly. Output is an aligned table, or JSON with `--json`
//! (the same views either way). Exit codes: 0 done, 1 failure (e.g. no such op), 2 bad usage.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::process::ExitCode;
use wms_node::ops::alert::Alerts;
use wms_node::outbox::OutboxError;
use wms_node::outbox::admin::{
    self, ActionResult, Admin, AdminClient, ClientError, ListFilter, ListPage, OpView, StateFilter,
    Stats,
};
use wms_node::status::i18n::Lang;
use wms_node::store::{OpenError, Store, StoreOptions};

/// `wms-node queue` options.
#[derive(Debug, Args)]
#[command(after_help = "\
While the node runs, these commands go through its HTTP API ([http] listen); otherwise they \
open the database directly.

Examples:
  wms-node queue stats
  wms-node queue list --state dead
  wms-node queue show 1234
  wms-node queue retry 1234          a dead letter back into the queue, or try a backing-off op now
  wms-node queue drop 1234 --reason \"order cancelled by phone\"")]
pub struct QueueArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: QueueCommand,
    /// Print JSON instead of a table (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// `wms-node queue` subcommands.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queued operations and dead letters, oldest first.
    List {
        /// Which: all, pending (still queued), backing-off, dead.
        #[arg(long, default_value = "all", value_parser = parse_state)]
        state: StateFilter,
        /// Only this kind (ship, set_stock, …).
        #[arg(long)]
        kind: Option<String>,
        /// Only keys starting with this (trade:<tid>, stock:<num_iid>…).
        #[arg(long)]
        key: Option<String>,
        /// At most this many (1–1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Continue after this sequence number (printed at the end of a full page).
        #[arg(long)]
        after: Option<u64>,
    },
    /// Show one operation: attempts, last error, next attempt.
    Show {
        /// Its sequence number (the SEQ column of `list`).
        seq: u64,
    },
    /// Put a dead letter back into the queue, or try a backing-off operation now.
    Retry {
        /// Sequence numbers.
        #[arg(required = true)]
        seq: Vec<u64>,
    },
    /// Remove an operation for good (queued or dead). The reason is logged.
    Drop {
        /// Its sequence number.
        seq: u64,
        /// Why (required; logged).
        #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
        reason: String,
        /// Also drop a critical operation (a shipment) that is still queued.
        #[arg(long)]
        force: bool,
    },
    /// Counts by kind and state, oldest age, bytes against the cap, dead letters, quarantine.
    Stats,
}

fn parse_state(s: &str) -> Result<StateFilter, String> {
    s.parse()
}

/// Runs a queue command.
pub fn run(
    args: QueueArgs,
    store: StoreOptions,
    admin_url: Option<String>,
    lang: Lang,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(args, store, admin_url, lang))
}

/// Where the commands go.
enum Backend {
    /// The running node's HTTP API.
    Node(AdminClient),
    /// The store, opened by this process.
    Local(Admin),
}

async fn connect(store: StoreOptions, admin_url: Option<String>) -> anyhow::Result<Backend> {
    if let Some(url) = &admin_url {
        let client = AdminClient::new(url)?;
        let probe = ListFilter {
            limit: Some(1),
            ..ListFilter::default()
        };
        match client.list(&probe).await {
            Ok(_) => return Ok(Backend::Node(client)),
            Err(ClientError::Unreachable { .. }) => {}
            Err(e) => bail!("the node at {url} answered, but not as expected: {e}"),
        }
    }
    let path = store.path.clone();
    if !store.exists() {
        bail!(
            "no database at {} (has the node run with this node.data_dir?)",
            path.display()
        );
    }
    match Store::open(store, Alerts::new()) {
        Ok(s) => Ok(Backend::Local(Admin::offline(s))),
        Err(OpenError::InUse { .. }) => bail!(
            "{} is in use by a running node, but its admin API{} did not answer; check \
             [http] listen in the config",
            path.display(),
            admin_url.map(|u| format!(" at {u}")).unwrap_or_default()
        ),
        Err(e) => Err(e).context("cannot open the database"),
    }
}

/// An error from either backend, with "no such op" told apart.
enum Failure {
    NotFound(String),
    Other(anyhow::Error),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        if e.is_not_found() {
            Failure::NotFound(e.to_string())
        } else {
            Failure::Other(e.into())
        }
    }
}

impl From<OutboxError> for Failure {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::NotFound(_) => Failure::NotFound(e.to_string()),
            e => Failure::Other(e.into()),
        }
    }
}

impl Backend {
    async fn list(&self, f: &ListFilter) -> Result<ListPage, Failure> {
        match self {
            Backend::Node(c) => Ok(c.list(f).await?),
            Backend::Local(a) => Ok(a.list(f)?),
        }
    }
    async fn show(&self, seq: u64) -> Result<OpView, Failure> {
        match self {
            Backend::Node(c) => Ok(c.show(seq).await?),
            Backend::Local(a) => Ok(a.show(seq)?),
        }
    }
    async fn retry(&self, seq: u64) -> Result<ActionResult, Failure> {
        match self {
            Backend::Node(c) => Ok(c.retry(seq).await?),
            Backend::Local(a) => Ok(a.retry(seq).await?),
        }
    }
    async fn drop_op(&self, seq: u64, reason: &str, force: bool) -> Result<ActionResult, Failure> {
        match self {
            Backend::Node(c) => Ok(c.drop_op(seq, reason, force).await?),
            Backend::Local(a) => Ok(a.drop_op(seq, reason, force).await?),
        }
    }
    async fn stats(&self) -> Result<Stats, Failure> {
        match self {
            Backend::Node(c) => Ok(c.stats().await?),
            Backend::Local(a) => Ok(a.stats()?),
        }
    }
    async fn close(self) {
        if let Backend::Local(a) = self {
            let _ = a.store().clone().close().await;
        }
    }
}

fn print<T: Serialize>(json: bool, value: &T, table: impl FnOnce(&T) -> String) {
    if json {
        match serde_json::to_string_pretty(value) {
            Ok(s) => outln!("{s}"),
            Err(e) => eprintln!("error: cannot print JSON: {e}"),
        }
    } else {
        out!("{}", table(value));
    }
}

async fn run_async(
    args: QueueArgs,
    store: StoreOptions,
    admin_url: Option<String>,
    lang: Lang,
) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let backend = connect(store, admin_url).await?;
    let result = execute(&backend, args.command, json, lang).await;
    backend.close().await;
    match result {
        Ok(code) => Ok(code),
        Err(Failure::NotFound(msg)) => {
            eprintln!("error: {msg}");
            Ok(ExitCode::FAILURE)
        }
        Err(Failure::Other(e)) => Err(e),
    }
}

async fn execute(
    backend: &Backend,
    command: QueueCommand,
    json: bool,
    lang: Lang,
) -> Result<ExitCode, Failure> {
    match command {
        QueueCommand::List {
            state,
            kind,
            key,
            limit,
            after,
        } => {
            if !(1..=1000).contains(&limit) {
                return Err(Failure::Other(anyhow::anyhow!(
                    "--limit must be between 1 and 1000"
                )));
            }
            let filter = ListFilter {
                state,
                kind,
                key,
                after,
                limit: Some(limit),
            };
            let page = backend.list(&filter).await?;
            print(json, &page, |p| admin::render_list(p, lang));
        }
        QueueCommand::Show { seq } => {
            let op = backend.show(seq).await?;
            print(json, &op, admin::render_op);
        }
        QueueCommand::Retry { seq } => {
            let mut results = Vec::new();
            let mut missing = false;
            for s in seq {
                match backend.retry(s).await {
                    Ok(r) => results.push(r),
                    Err(Failure::NotFound(msg)) => {
                        eprintln!("error: {msg}");
                        missing = true;
                    }
                    Err(e) => return Err(e),
                }
            }
            print(json, &results, |rs| {
                rs.iter().map(admin::render_action).collect::<String>()
            });
            if missing {
                return Ok(ExitCode::FAILURE);
            }
        }
        QueueCommand::Drop { seq, reason, force } => {
            let r = backend.drop_op(seq, &reason, force).await?;
            print(json, &r, admin::render_action);
        }
        QueueCommand::Stats => {
            let s = backend.stats().await?;
            print(json, &s, |s| admin::render_stats(s, lang));
        }
    }
    Ok(ExitCode::SUCCESS)
}
