//! `wms-node alerts`: the active alerts and, with `--history`, the recently resolved ones.
//!
//! While the node runs, it asks its admin API (`GET /api/alerts`); otherwise it reads the
//! store file (the alerts are kept there). A table for people, times in the warehouse's time
//! zone (`[node] timezone`); with `--json`, the admin API's view (times RFC 3339, UTC).
//! Exit 0 (also with active alerts: this command reports, it does not judge).

use anyhow::{Context, bail};
use clap::Args;
use std::fmt::Write as _;
use std::process::ExitCode;
use wms_node::config::Config;
use wms_node::ops::alert::Alerts;
use wms_node::ops::notify::AlertsView;
use wms_node::outbox::admin::{AdminClient, ClientError};
use wms_node::status::i18n::{Lang, Msg, pad, pad_left};
use wms_node::store::{OpenError, Store};

/// `wms-node alerts` options.
#[derive(Debug, Args)]
#[command(after_help = "\
While the node runs, this goes through its HTTP API ([http] listen); otherwise it reads the \
database directly.

Examples:
  wms-node alerts
  wms-node alerts --history
  wms-node alerts --json")]
pub struct AlertsArgs {
    /// Also list the recently resolved alerts.
    #[arg(long)]
    pub history: bool,
    /// Print JSON instead of a table (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// Runs `wms-node alerts`.
pub fn run(args: AlertsArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let view: serde_json::Value = rt.block_on(fetch(config))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        out!(
            "{}",
            table(
                &view,
                args.history,
                &config.local_time(),
                config.node.language
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn fetch(config: &Config) -> anyhow::Result<serde_json::Value> {
    let url = config.admin_url();
    let client = AdminClient::new(&url)?;
    match client.get_json::<serde_json::Value>("/api/alerts").await {
        Ok(v) => return Ok(v),
        Err(ClientError::Unreachable { .. }) => {}
        Err(e) => bail!("the node at {url} answered, but not as expected: {e}"),
    }
    let opts = config.store_options();
    let path = opts.path.clone();
    if !path.exists() {
        bail!(
            "no database at {} (has the node run with this node.data_dir?)",
            path.display()
        );
    }
    let store = match Store::open(opts, Alerts::new()) {
        Ok(s) => s,
        Err(OpenError::InUse { .. }) => bail!(
            "{} is in use by a running node, but its admin API at {url} did not answer; check \
             [http] listen in the config",
            path.display()
        ),
        Err(e) => return Err(e).context("cannot open the database"),
    };
    let view = AlertsView::from_store(&store, config.alerts.history);
    let _ = store.close().await;
    Ok(serde_json::to_value(
        view.context("cannot read the alerts")?,
    )?)
}

fn table(
    v: &serde_json::Value,
    history: bool,
    tz: &wms_node::status::time::LocalTime,
    lang: Lang,
) -> String {
    let now = chrono::Utc::now();
    let ms = |a: &serde_json::Value, k: &str| {
        a[k].as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| u64::try_from(t.timestamp_millis()).unwrap_or(0))
    };
    let age =
        |from: u64, to: u64| lang.age(std::time::Duration::from_millis(to.saturating_sub(from)));
    let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    let name = |a: &serde_json::Value| {
        let mut n = format!(
            "{} ({})",
            a["code"].as_str().unwrap_or("?"),
            a["number"].as_u64().unwrap_or(0)
        );
        if let (Some(k), Some(i)) = (a["subject"]["kind"].as_str(), a["subject"]["id"].as_str()) {
            let _ = write!(n, " · {k} {i}");
        }
        n
    };
    let severity = |a: &serde_json::Value| match a["severity"].as_str() {
        Some("critical") => lang.t(Msg::Critical).to_owned(),
        Some("warning") => lang.t(Msg::Warning).to_owned(),
        Some("info") => lang.t(Msg::Info).to_owned(),
        other => other.unwrap_or("?").to_owned(),
    };
    let mut out = String::new();
    let active = v["active"].as_array().cloned().unwrap_or_default();
    if active.is_empty() {
        let _ = writeln!(out, "{}", lang.t(Msg::NoActiveAlerts));
    } else {
        let _ = writeln!(
            out,
            "{} {} {} {} {}  {}",
            pad(lang.t(Msg::CliSeverity), 9),
            pad(lang.t(Msg::CliAlert), 40),
            pad(&lang.f(Msg::CliSinceTz, &[&tz.offset_str()]), 20),
            pad_left(lang.t(Msg::CliFor), 10),
            pad_left(lang.t(Msg::CliCount), 6),
            lang.t(Msg::CliMessage),
        );
        for a in &active {
            let first = ms(a, "first_seen");
            let _ = writeln!(
                out,
                "{} {} {} {} {:>6}  {}",
                pad(&severity(a), 9),
                pad(&name(a), 40),
                pad(&tz.format(first), 20),
                pad_left(&age(first, now_ms), 10),
                a["count"].as_u64().unwrap_or(0),
                a["message"].as_str().unwrap_or("")
            );
        }
    }
    if history {
        let resolved = v["resolved"].as_array().cloned().unwrap_or_default();
        out.push('\n');
        if resolved.is_empty() {
            let _ = writeln!(out, "{}", lang.t(Msg::CliNoResolvedKept));
        } else {
            let _ = writeln!(
                out,
                "{} {} {} {}  {}",
                pad(lang.t(Msg::CliResolvedAlert), 40),
                pad(&lang.f(Msg::CliResolvedTz, &[&tz.offset_str()]), 20),
                pad_left(lang.t(Msg::CliLasted), 10),
                pad_left(lang.t(Msg::CliCount), 6),
                lang.t(Msg::CliMessage),
            );
            for a in &resolved {
                let end = ms(a, "resolved_at");
                let _ = writeln!(
                    out,
                    "{} {} {} {:>6}  {}",
                    pad(&name(a), 40),
                    pad(&tz.format(end), 20),
                    pad_left(&age(ms(a, "first_seen"), end), 10),
                    a["count"].as_u64().unwrap_or(0),
                    a["message"].as_str().unwrap_or("")
                );
            }
        }
    }
    out
}
