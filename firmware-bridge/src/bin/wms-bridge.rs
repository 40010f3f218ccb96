//! `wms-bridge`: joins serial barcode scanners and label printers to the wms-node floor
//! protocol over MQTT. CLI only; the work is in `firmware_bridge::bridge`.
//!
//! Exit codes: 0 success, 2 bad usage or configuration, 1 failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use firmware_bridge::bridge::{self, config::Config};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "wms-bridge",
    version,
    about = "Serial scanners and label printers to the wms-node MQTT floor protocol"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge until SIGTERM or Ctrl-C.
    Run {
        /// Configuration file.
        #[arg(long, short, env = "WMS_BRIDGE_CONFIG")]
        config: PathBuf,
    },
    /// Check a configuration file and print what it configures (no secrets).
    CheckConfig {
        /// Configuration file.
        #[arg(long, short, env = "WMS_BRIDGE_CONFIG")]
        config: PathBuf,
    },
    /// Print the documented example configuration.
    PrintConfig,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::PrintConfig => {
            print!("{}", bridge::config::EXAMPLE);
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                println!("config {} is valid", config.display());
                println!(
                    "site {}, broker {}, spool {}",
                    c.bridge.site,
                    c.mqtt.broker,
                    c.bridge.spool_dir.display()
                );
                for d in &c.devices {
                    println!(
                        "  {} {} on {} at {} Bd",
                        d.class,
                        d.id,
                        d.port.display(),
                        d.baud
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wms-bridge: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            init_logging(cli.log_format);
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("wms-bridge: {e}");
                    return ExitCode::from(2);
                }
            };
            match run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "wms-bridge failed");
                    eprintln!("wms-bridge: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = {
            let shutdown = shutdown.clone();
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                shutdown.cancel();
            })
        };
        let result = bridge::run(config, shutdown).await;
        signals.abort();
        result.map_err(anyhow::Error::from)
    })
}
