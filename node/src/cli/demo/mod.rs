//! `wms-node demo`: the node, its embedded broker, a simulated Taobao shop and a simulated
//! warehouse floor, in one process, on a temporary data directory. No config file, no
//! internet.
//!
//! ```text
//!  simulated shop (in-process taobao-sandbox: demo catalogue, pre-issued session, Cainiao)
//!        ▲  signed TOP calls over real HTTP on 127.0.0.1
//!  wms-node (store, order intake, stock ledger, outbox, floor, status page on --listen)
//!        ▲  MQTT on 127.0.0.1 (the embedded broker: per-device credentials and topics)
//!  simulated floor ([`sim`]): scanners picker-1, picker-2, pack-1, dock-1; printer pack-1
//! ```
//!
//! The script ([`script`]): the SKU master is imported (the catalogue with bins) and becomes
//! the stock ledger; the devices are registered as `wms-node devices add` registers them and
//! log in with their own credentials. Buyers pay orders through `--duration`; the node's
//! order intake pulls and releases them; the pickers ask for tasks and scan every unit; the
//! pack station packs and labels each tote (its printer answers `print_result`), the dock
//! scans each parcel's waybill and the shipment goes to Taobao through the outbox. One order is
//! refunded while it is being picked: the hold reaches the picker's scanner, which
//! acknowledges it and puts the picked units back. A third into the run the Taobao link drops
//! for `--outage` (the floor goes on; shipments and stock wait in the outbox) and a delivery is
//! received at the dock. At the end every figure is read back from the shop: every trade
//! shipped once with its Cainiao waybill, the refunded one not at all, platform stock equal to
//! what the ledger offers.
//!
//! On a terminal the view ([`view`]) is redrawn in place (`t` cuts or restores the Taobao link,
//! `q` quits); `--headless` (or output that is not a terminal) tells the same as plain lines
//! and exits with the end check: status 0 only when it checks out.

use clap::Args;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[cfg(feature = "demo")]
mod script;
#[cfg(feature = "demo")]
mod sim;
#[cfg(feature = "demo")]
mod view;

/// `wms-node demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Orders the simulated shop takes (3–200); one of them is refunded while it is picked.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(3..=200))]
    pub orders: u32,
    /// How long buyers keep paying orders (5s–1h); then the demo lets the floor and the
    /// outbox finish and checks the shop.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long the simulated internet outage lasts (0s for none); it starts a third into
    /// the run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub outage: Duration,
    /// Plain lines instead of the live view, for scripts and tests: exits after the end
    /// check, with status 0 only when it checks out.
    #[arg(long)]
    pub headless: bool,
    /// Where the node's status page listens (a free port is used if this one is taken).
    #[arg(long, default_value = "127.0.0.1:9870")]
    pub listen: SocketAddr,
    /// Stop after the end check instead of serving the status page until Ctrl-C (plain
    /// output; the live view stops with `q`).
    #[arg(long)]
    pub exit: bool,
    /// The status page's and the floor's language (`[node] language`): en or zh.
    #[arg(long, default_value = "en", value_parser = parse_language)]
    pub language: wms_node::status::i18n::Lang,
}

/// `en` or `zh`.
fn parse_language(s: &str) -> Result<wms_node::status::i18n::Lang, String> {
    match s {
        "en" => Ok(wms_node::status::i18n::Lang::En),
        "zh" => Ok(wms_node::status::i18n::Lang::Zh),
        other => Err(format!("`{other}` is not a language of the node: en or zh")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(5) || d > Duration::from_secs(3600) {
        return Err(format!("{s} is out of range: from 5s to 1h"));
    }
    Ok(d)
}

/// Runs the demo.
#[cfg(not(feature = "demo"))]
pub fn run(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    eprintln!(
        "wms-node demo: this binary was built without the `demo` feature (it links the \
         simulated shop); build with default features: cargo run --release -p wms-node -- demo"
    );
    Ok(ExitCode::FAILURE)
}

/// Runs the demo.
#[cfg(feature = "demo")]
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use std::io::IsTerminal;
    // The node's own log only for errors: the demo narrates. RUST_LOG=info shows everything.
    // The live view owns the screen: the node's errors then wait in the event log.
    let live = !args.headless && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    wms_node::ops::log::init(
        if live { "off" } else { "error" },
        wms_node::config::LogFormat::Text,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wms-demo")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(script::run(args, live))
}

/// The demo's event log: every part says what it did; the view shows the last few (or, plain,
/// every one).
#[cfg(feature = "demo")]
#[derive(Clone)]
pub struct Log {
    tx: tokio::sync::mpsc::UnboundedSender<view::Line>,
    start: std::time::Instant,
}

#[cfg(feature = "demo")]
impl Log {
    fn new(start: std::time::Instant) -> (Log, tokio::sync::mpsc::UnboundedReceiver<view::Line>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Log { tx, start }, rx)
    }

    /// Records that `who` did `text`.
    pub fn say(&self, who: &str, text: impl Into<String>) {
        let _ = self.tx.send(view::Line {
            at: self.start.elapsed(),
            who: who.to_owned(),
            text: text.into(),
        });
    }
}
