//! `wms-node sku import|sync|list`: the SKU master, the listing map and bundles.
//!
//! `import` checks the whole file first (every problem with its line, column and reason) and
//! imports nothing unless all of it is valid; `--dry-run` shows what would change. `sync`
//! maps the shop's listings by their merchant codes, with a progress bar. Held orders whose
//! lines map after a change are released by themselves.

use super::orders::{Backend, Failure, connect, print};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use wms_node::config::Config;
use wms_node::ops::orders::ImportRequest;
use wms_node::status::i18n::{Lang, Msg, pad, pad_left, width};
use wms_node::wms::sku::{self, ImportReport, MasterView, SyncReport};

/// `wms-node sku` options.
#[derive(Debug, Args)]
#[command(after_help = "\
The SKU file has the header sku,barcode,name,on_hand,num_iid,sku_id (and optionally location);
one row per listing that sells a SKU (on_hand, num_iid, sku_id and location may be empty).
A bundle file has the header bundle,component,qty.

Examples:
  wms-node sku import skus.csv --dry-run
  wms-node sku import skus.csv
  wms-node sku import --bundles bundles.csv
  wms-node sku sync
  wms-node sku list --json")]
pub struct SkuArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SkuCommand,
    /// Print JSON instead of a table (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// `wms-node sku` subcommands.
#[derive(Debug, Subcommand)]
pub enum SkuCommand {
    /// Import SKUs (or bundles) from a CSV file: all rows, or none.
    Import {
        /// The CSV file (UTF-8).
        file: PathBuf,
        /// The file lists bundles (bundle,component,qty).
        #[arg(long)]
        bundles: bool,
        /// Only show what would change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Map the shop's listings to SKUs by their merchant codes (items.onsale.get +
    /// item.seller.get).
    Sync,
    /// List the SKU master with stock and listings, and the bundles.
    List,
}

/// Runs a sku command.
pub fn run(args: SkuArgs, config: &Config) -> anyhow::Result<ExitCode> {
    // Read and check the file before anything else: a bad file needs no node.
    let request = match &args.command {
        SkuCommand::Import {
            file,
            bundles,
            dry_run,
        } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let parsed = if *bundles {
                sku::parse_bundles(&bytes).map(|b| ImportRequest {
                    bundles: b,
                    dry_run: *dry_run,
                    ..ImportRequest::default()
                })
            } else {
                sku::parse_skus(&bytes).map(|s| ImportRequest {
                    skus: s,
                    dry_run: *dry_run,
                    ..ImportRequest::default()
                })
            };
            match parsed {
                Ok(r) => Some(r),
                Err(problems) => {
                    for p in &problems {
                        eprintln!("{}: {p}", file.display());
                    }
                    eprintln!(
                        "error: {} problem(s) in {}; nothing was imported",
                        problems.len(),
                        file.display()
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let backend = connect(config).await?;
        let r = execute(&backend, args.command, request, args.json, config).await;
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

async fn execute(
    b: &Backend,
    cmd: SkuCommand,
    request: Option<ImportRequest>,
    json: bool,
    config: &Config,
) -> Result<(), Failure> {
    let lang = config.node.language;
    match cmd {
        SkuCommand::Import { .. } => {
            let req = request.unwrap_or_default();
            let report = match b {
                Backend::Node(c) => c.import(&req).await?,
                Backend::Local(a) => a.import(req).await?,
            };
            print(json, &report, |r| render_import(r, lang));
        }
        SkuCommand::List => {
            let m = match b {
                Backend::Node(c) => c.skus().await?,
                Backend::Local(a) => a.skus()?,
            };
            print(json, &m, |m| render_master(m, lang));
        }
        SkuCommand::Sync => {
            let bar = progress_bar(json, lang);
            let report = match b {
                Backend::Node(c) => {
                    let mut job = c.start_sync().await?;
                    while job.running {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        job = c.sync_job().await?;
                        bar.set_length(job.total as u64);
                        bar.set_position(job.done as u64);
                    }
                    match (job.report, job.error) {
                        (Some(r), _) => r,
                        (None, e) => {
                            return Err(Failure::Said(format!(
                                "the SKU sync failed: {}",
                                e.unwrap_or_else(|| "no report".into())
                            )));
                        }
                    }
                }
                Backend::Local(a) => {
                    let syncer = Backend::taobao(a, config).await.map_err(Failure::Other)?;
                    a.clone()
                        .with_sync(syncer)
                        .run_sync(|done, total| {
                            bar.set_length(total as u64);
                            bar.set_position(done as u64);
                        })
                        .await?
                }
            };
            bar.finish_and_clear();
            print(json, &report, |r| render_sync(r, lang));
        }
    }
    Ok(())
}

fn progress_bar(json: bool, lang: Lang) -> indicatif::ProgressBar {
    if json {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let template = format!(
        "{} {{bar:40}} {{pos}}/{{len}} {} {{eta}}",
        lang.t(Msg::SkuProgress),
        lang.t(Msg::SkuProgressItems)
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

fn list_some(v: &[String], lang: Lang) -> String {
    let mut s = v.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > 8 {
        let _ = write!(s, ", {}", lang.f(Msg::SkuMore, &[&(v.len() - 8)]));
    }
    s
}

fn render_import(r: &ImportReport, lang: Lang) -> String {
    let t = |m| lang.t(m);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        if r.applied {
            t(Msg::SkuImported)
        } else {
            t(Msg::SkuDryRun)
        }
    );
    let row = |out: &mut String, k: Msg, n: usize, detail: String| {
        let _ = writeln!(
            out,
            "  {} {}  {detail}",
            pad(t(k), 10),
            pad_left(&n.to_string(), 6)
        );
    };
    row(
        &mut out,
        Msg::SkuAdded,
        r.added.len(),
        list_some(&r.added, lang),
    );
    row(
        &mut out,
        Msg::SkuChanged,
        r.changed.len(),
        list_some(
            &r.changed
                .iter()
                .map(|(c, what)| format!("{c} ({})", what.join(", ")))
                .collect::<Vec<_>>(),
            lang,
        ),
    );
    row(&mut out, Msg::SkuUnchanged, r.unchanged, String::new());
    row(
        &mut out,
        Msg::SkuListingsRow,
        r.listings,
        if r.listings_moved.is_empty() {
            String::new()
        } else {
            lang.f(
                Msg::SkuMoved,
                &[&list_some(
                    &r.listings_moved
                        .iter()
                        .map(|(l, a, b)| format!("{l} {a} → {b}"))
                        .collect::<Vec<_>>(),
                    lang,
                )],
            )
        },
    );
    row(
        &mut out,
        Msg::SkuOnHandRow,
        r.on_hand_set.len(),
        t(Msg::SkuOnHandSet).to_owned(),
    );
    if !r.on_hand_ignored.is_empty() {
        row(
            &mut out,
            Msg::SkuIgnored,
            r.on_hand_ignored.len(),
            lang.f(
                Msg::SkuIgnoredDetail,
                &[&list_some(
                    &r.on_hand_ignored
                        .iter()
                        .map(|(c, f, s)| lang.f(Msg::SkuIgnoredItem, &[c, f, s]))
                        .collect::<Vec<_>>(),
                    lang,
                )],
            ),
        );
    }
    if r.applied {
        row(
            &mut out,
            Msg::SkuReleased,
            r.orders_released.len(),
            list_some(
                &r.orders_released
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>(),
                lang,
            ),
        );
    }
    out
}

fn render_sync(r: &SyncReport, lang: Lang) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        lang.f(
            Msg::SkuSyncRead,
            &[&r.items, &r.listings, &r.mapped, &r.kept_from_import]
        )
    );
    if !r.unknown_code.is_empty() {
        let codes = list_some(
            &r.unknown_code
                .iter()
                .map(|(l, c)| format!("{l} `{c}`"))
                .collect::<Vec<_>>(),
            lang,
        );
        let _ = writeln!(
            out,
            "{}",
            lang.f(Msg::SkuSyncUnknown, &[&r.unknown_code.len(), &codes])
        );
    }
    if !r.without_code.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            lang.f(
                Msg::SkuSyncNoCode,
                &[&r.without_code.len(), &list_some(&r.without_code, lang)]
            )
        );
    }
    if r.stale_removed > 0 {
        let _ = writeln!(out, "{}", lang.f(Msg::SkuSyncStale, &[&r.stale_removed]));
    }
    let _ = writeln!(
        out,
        "{}",
        lang.f(Msg::SkuSyncReleased, &[&r.orders_released.len()])
    );
    out
}

fn render_master(m: &MasterView, lang: Lang) -> String {
    let t = |m| lang.t(m);
    let mut out = String::new();
    if m.skus.is_empty() && m.bundles.is_empty() {
        return format!("{}\n", t(Msg::SkuNone));
    }
    let rows: Vec<[String; 6]> = m
        .skus
        .iter()
        .map(|s| {
            let listings: Vec<String> = s
                .listings
                .iter()
                .map(|l| format!("{}:{}", l.num_iid, l.sku_id.as_deref().unwrap_or("0")))
                .collect();
            [
                s.sku.clone(),
                s.barcode.clone(),
                s.on_hand
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                s.location.clone().unwrap_or_else(|| "-".into()),
                if listings.is_empty() {
                    "-".to_owned()
                } else {
                    list_some(&listings, lang)
                },
                s.name.clone(),
            ]
        })
        .collect();
    let heads = [
        Msg::SkuSku,
        Msg::SkuBarcode,
        Msg::SkuOnHand,
        Msg::SkuLocation,
        Msg::SkuListings,
    ];
    // The usual widths, wider where a heading or a cell needs it; in terminal columns (a
    // Chinese character takes two).
    let mut w = [20, 16, 8, 10, 24];
    for (i, (w, h)) in w.iter_mut().zip(heads).enumerate() {
        *w = rows
            .iter()
            .map(|r| width(&r[i]))
            .fold((*w).max(width(t(h))), usize::max);
    }
    let _ = writeln!(
        out,
        "{} {} {}  {} {} {}",
        pad(t(Msg::SkuSku), w[0]),
        pad(t(Msg::SkuBarcode), w[1]),
        pad_left(t(Msg::SkuOnHand), w[2]),
        pad(t(Msg::SkuLocation), w[3]),
        pad(t(Msg::SkuListings), w[4]),
        t(Msg::SkuName)
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "{} {} {}  {} {} {}",
            pad(&r[0], w[0]),
            pad(&r[1], w[1]),
            pad_left(&r[2], w[2]),
            pad(&r[3], w[3]),
            pad(&r[4], w[4]),
            r[5]
        );
    }
    if !m.bundles.is_empty() {
        let _ = writeln!(
            out,
            "\n{} {}",
            pad(t(Msg::SkuBundle), w[0]),
            t(Msg::SkuComponents)
        );
        for b in &m.bundles {
            let parts: Vec<String> = b
                .components
                .iter()
                .map(|c| format!("{}×{}", c.qty, c.sku))
                .collect();
            let _ = writeln!(out, "{} {}", pad(&b.bundle, w[0]), parts.join(" + "));
        }
    }
    out
}
