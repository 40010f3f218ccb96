//! `wms-node reconcile [--check N] [--json]`: the node's view compared with Taobao's
//! (DOMAIN.md §11), every check highest priority first, with progress while it runs.
//!
//! A table for people, or JSON for scripts:
//! `{started, finished, checks: [{name, status: clean|findings|not_run, reason?, findings:
//! [{kind, tid?, sku?, detail}]}]}`. Exit codes: 0 every check ran clean, 3 findings, 1 a
//! check could not run (it is named), 2 bad usage. Each finding raises its alert on a running
//! node.

use super::goods::{Goods, reconciler};
use super::orders::{Failure, print};
use anyhow::Context;
use clap::Args;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;
use wms_node::config::Config;
use wms_node::status::i18n::{Lang, Msg, pad};
use wms_node::sync::reconcile::{CHECKS, CheckStatus, Progress, Report, Which};

/// `wms-node reconcile` options.
#[derive(Debug, Args)]
#[command(after_help = "\
The checks (DOMAIN.md §11):
  1 shipped_not_on_taobao   2 closed_but_active   3 missing_here   4 deadline_risk
  5 stock_drift             6 unused_waybills     7 ops            8 store
Exit codes: 0 clean, 3 findings, 1 a check could not run, 2 bad usage.")]
pub struct ReconcileArgs {
    /// Run only this check (1–8); all of them by default.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
    pub check: Option<u8>,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs reconciliation.
pub fn run(args: ReconcileArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let (goods, backend) = Goods::connect(config).await?;
        let bar = progress_bar(args.json, config.node.language);
        let which = args.check.map_or(Which::All, Which::One);
        let r: Result<Report, Failure> = match &goods {
            Goods::Node(c) => {
                async {
                    let mut st = c.reconcile_start(args.check).await?;
                    let mut waited = 0u32;
                    while st.running || st.last.is_none() {
                        show(&bar, &st.progress);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        st = c.reconcile_state().await?;
                        waited += 1;
                        if waited > 15_000 {
                            return Err(Failure::Said(
                                "the reconciliation did not finish in 50 minutes".into(),
                            ));
                        }
                    }
                    st.last.ok_or_else(|| Failure::Said("no report".into()))
                }
                .await
            }
            Goods::Local(a) => match reconciler(a.store(), config).await {
                // The node is stopped: no intake runs beside this reconciler.
                Ok(rec) => {
                    let rec = rec.without_intake();
                    let b = bar.clone();
                    Ok(rec.run(which, &mut move |p| show(&b, &p)).await)
                }
                Err(e) => Err(Failure::Other(e)),
            },
        };
        bar.finish_and_clear();
        backend.close().await;
        match r {
            Ok(report) => {
                print(args.json, &report, |r| render(r, config.node.language));
                let code = report.exit_code();
                if code == 1 && !args.json {
                    for c in report
                        .checks
                        .iter()
                        .filter(|c| c.status == CheckStatus::NotRun)
                    {
                        eprintln!(
                            "error: check {} could not run: {}",
                            c.name,
                            c.reason.as_deref().unwrap_or("")
                        );
                    }
                }
                Ok(ExitCode::from(code))
            }
            Err(Failure::Said(m)) => {
                eprintln!("error: {m}");
                Ok(ExitCode::FAILURE)
            }
            Err(Failure::Other(e)) => Err(e),
        }
    })
}

fn progress_bar(json: bool, lang: Lang) -> indicatif::ProgressBar {
    if json {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(CHECKS.len() as u64);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let template = format!(
        "{} {{bar:30}} {{pos}}/{{len}} {{msg}}",
        lang.t(Msg::RecProgress)
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

fn show(bar: &indicatif::ProgressBar, p: &Progress) {
    bar.set_length(p.total as u64);
    bar.set_position(p.done as u64);
    if let Some(c) = &p.current {
        bar.set_message(c.clone());
    }
}

fn render(r: &Report, lang: Lang) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", lang.f(Msg::RecTitle, &[&r.started, &r.finished]));
    let _ = writeln!(
        out,
        "{:<3} {} {} {}",
        "#",
        pad(lang.t(Msg::RecCheck), 22),
        pad(lang.t(Msg::RecStatus), 9),
        lang.t(Msg::RecFindings)
    );
    for c in &r.checks {
        let n = CHECKS
            .iter()
            .find(|(_, name, _)| *name == c.name)
            .map_or(0, |(n, _, _)| *n);
        let status = lang.t(match c.status {
            CheckStatus::Clean => Msg::RecClean,
            CheckStatus::Findings => Msg::RecHasFindings,
            CheckStatus::NotRun => Msg::RecNotRun,
        });
        let summary = match c.status {
            CheckStatus::NotRun => c.reason.clone().unwrap_or_default(),
            _ => c.findings.len().to_string(),
        };
        let _ = writeln!(out, "{n:<3} {:<22} {} {summary}", c.name, pad(status, 9));
        for f in &c.findings {
            let subject = match (&f.tid, &f.sku) {
                (Some(t), _) => lang.f(Msg::RecTrade, &[t]),
                (None, Some(s)) => lang.f(Msg::RecSku, &[s]),
                (None, None) => f.kind.clone(),
            };
            let _ = writeln!(out, "      {subject}: {}", f.detail);
        }
    }
    let _ = writeln!(
        out,
        "{}",
        lang.t(match r.exit_code() {
            0 => Msg::RecAllMatch,
            3 => Msg::RecFindingsAbove,
            _ => Msg::RecSomeNotRun,
        })
    );
    out
}
