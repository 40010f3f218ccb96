//! The command line: parsing, dispatch, and exit codes.
//!
//! Exit codes: 0 success; 2 bad usage or a bad configuration (fix the command or the file);
//! 1 any other failure; `reconcile` alone also says 3: it ran and found discrepancies. Results go to stdout, logs
//! and errors to stderr. `anyhow` lives here and in the subcommand files only.
//!
//! Results are printed with `outln!` and `out!` ([`write_out`]), not `println!`: a reader
//! that stops early (`wms-node orders list | head`) ends the command quietly, as it ends
//! other Unix tools, where `println!` would panic on the broken pipe.

/// `println!` for the CLI's results ([`write_out`]).
macro_rules! outln {
    () => {
        $crate::cli::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the CLI's results ([`write_out`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!($($arg)*))
    };
}

pub mod alerts;
pub mod auth;
pub mod check_config;
pub mod demo;
pub mod devices;
pub mod goods;
pub mod launch;
pub mod orders;
pub mod ota;
pub mod queue;
pub mod reconcile;
pub mod run;
pub mod ship;
pub mod sku;
pub mod stock;
pub mod waybill;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use wms_node::config::{Config, LogFormat};

/// Where `--config` points when it is not given.
pub const DEFAULT_CONFIG: &str = "/etc/wms-node/node.toml";

/// Exit code for bad usage or a bad configuration.
pub const EXIT_USAGE: u8 = 2;

const ABOUT: &str = "\
Warehouse gateway daemon: pulls paid Taobao orders into pick tasks for barcode scanners and \
label printers on the warehouse floor (MQTT), and pushes shipments and stock back to Taobao. \
Everything is kept in a local database first, so nothing is lost while the internet link or \
the power is down.";

const AFTER_HELP: &str = "\
Getting started:
  wms-node demo                              see it work: node + simulated shop and floor
  wms-node default-config > node.toml        a complete, commented config file to edit
  wms-node check-config --config node.toml   check it (lists every problem at once)
  wms-node auth login --config node.toml     authorize the node for your Taobao shop
  wms-node sku import skus.csv               the SKU master and which listings sell what
  wms-node run --config node.toml            run the node (systemd: Type=notify)
  wms-node orders list --held                orders waiting for someone
  wms-node ship TID --company YTO --waybill NO   a parcel leaves
  wms-node stock show                        stock per SKU and what the shop was told
  wms-node reconcile                         compare with Taobao (exit 3: findings)

Every config key can also be set in the environment as WMS_NODE__SECTION__KEY,
e.g. WMS_NODE__TAOBAO__APP_SECRET. Exit codes: 0 ok, 1 failure, 2 bad usage or config.";

/// `wms-node`: the command line.
#[derive(Debug, Parser)]
#[command(
    name = "wms-node",
    version = wms_node::VERSION,
    about = ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// The config file (TOML). Relative paths inside it are relative to its directory.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "WMS_NODE_CONFIG",
        default_value = DEFAULT_CONFIG
    )]
    pub config: PathBuf,

    /// Log format; overrides `log.format` in the config file.
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> Self {
        match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node: pull orders, serve the floor, push shipments and stock, until SIGTERM.
    Run,
    /// Run a self-contained demo: the node, a simulated Taobao shop and simulated scanners
    /// and printers over MQTT, with a refund on the floor and an internet outage. Needs no
    /// config file and no internet.
    Demo(demo::DemoArgs),
    /// Check a config file: print the effective configuration (secrets redacted) and exit
    /// 0, or list every problem and exit 2.
    CheckConfig,
    /// Print a complete, commented config file with every key and its default.
    DefaultConfig,
    /// Authorize the node for a Taobao shop (OAuth) and show the authorization's state.
    Auth(auth::AuthArgs),
    /// The node's active alerts (and with --history the recently resolved ones).
    Alerts(alerts::AlertsArgs),
    /// Inspect and repair the queue of operations waiting for Taobao (shipments, stock).
    Queue(queue::QueueArgs),
    /// The scanners and printers allowed on the floor: add (prints credentials once), list,
    /// remove (revokes).
    Devices(devices::DevicesArgs),
    /// Orders pulled from Taobao: list, show, hold, release.
    Orders(orders::OrdersArgs),
    /// The SKU master and the map from Taobao listings to SKUs: import, sync, list.
    Sku(sku::SkuArgs),
    /// The stock ledger and what the shop is told: show, set, adjust, push, stop, resume.
    Stock(stock::StockArgs),
    /// Ship a parcel: checks holds, carrier and waybill number, queues the shipment.
    Ship(ship::ShipArgs),
    /// Cainiao e-waybills: get (or reprint) a package's waybill, void one.
    Waybill(waybill::WaybillArgs),
    /// Compare local orders, shipments, waybills and stock with Taobao and report differences.
    Reconcile(reconcile::ReconcileArgs),
    /// Over-the-air updates of this node's software.
    Ota(ota::OtaArgs),
    /// Start the node through the OTA launcher (what the systemd unit runs): boots an
    /// installed update on trial, commits it or rolls it back, then runs the chosen build.
    Launch(launch::LaunchArgs),
    /// Print the version.
    Version,
}

/// Writes a result to stdout. A reader that went away (a closed pipe) ends the process with
/// status 0 at once: what it read was all it wanted. Any other failure to write (a full disk
/// under a redirect) ends it with status 1 and says so on stderr.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// Parses the command line, runs the command, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    // Keeps the version marker in the binary whatever the linker would drop (`ota sign`).
    std::hint::black_box(&wms_node::VERSION_MARKER);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap: 0 for --help/--version, 2 for usage errors.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE));
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let log_format = cli.log_format.map(LogFormat::from);
    match cli.command {
        Command::Run => run::run(&cli.config, log_format),
        Command::Demo(args) => demo::run(args),
        Command::CheckConfig => Ok(check_config::check(&cli.config)),
        Command::DefaultConfig => Ok(check_config::print_default()),
        Command::Version => {
            outln!("wms-node {}", wms_node::VERSION);
            Ok(ExitCode::SUCCESS)
        }
        Command::Auth(args) => {
            let Some(config) = load_for_command(&cli.config, log_format) else {
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            auth::run(args, &config)
        }
        Command::Alerts(args) => {
            let Some(config) = load_for_command(&cli.config, log_format) else {
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            alerts::run(args, &config)
        }
        Command::Queue(args) => {
            let Some(config) = load_for_command(&cli.config, log_format) else {
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            queue::run(
                args,
                config.store_options(),
                Some(config.admin_url()),
                config.node.language,
            )
        }
        Command::Orders(args) => {
            let Some(config) = load_for_command(&cli.config, log_format) else {
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            orders::run(args, &config)
        }
        Command::Sku(args) => {
            let Some(config) = load_for_command(&cli.config, log_format) else {
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            sku::run(args, &config)
        }
        Command::Devices(args) => {
            let Some(config) = load_for_command(&cli.config, log_format) else {
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            devices::run(args, &config)
        }
        Command::Stock(args) => {
            let Some(config) = load_for_command(&cli.config, log_format) else {
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            stock::run(args, &config)
        }
        Command::Ship(args) => {
            let Some(config) = load_for_command(&cli.config, log_format) else {
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            ship::run(args, &config)
        }
        Command::Waybill(args) => {
            let Some(config) = load_for_command(&cli.config, log_format) else {
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            waybill::run(args, &config)
        }
        Command::Reconcile(args) => {
            let Some(config) = load_for_command(&cli.config, log_format) else {
                return Ok(ExitCode::from(EXIT_USAGE));
            };
            reconcile::run(args, &config)
        }
        Command::Ota(args) => ota::run(args, &cli.config, log_format),
        Command::Launch(args) => launch::run(args, &cli.config, cli.log_format),
    }
}

/// Loads the config, printing every problem on failure (the caller exits 2).
pub fn load_config(path: &Path) -> Option<Config> {
    match Config::load(path) {
        Ok(config) => Some(config),
        Err(e) => {
            eprintln!("error: {e}");
            if matches!(&e, wms_node::config::ConfigError::Read { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound)
            {
                eprintln!(
                    "hint: pass --config FILE (or set WMS_NODE_CONFIG); \
                     `wms-node default-config > node.toml` writes a file to start from"
                );
            }
            None
        }
    }
}

/// Loads the config and sets up logging for a short-lived command: warnings and errors
/// only unless `RUST_LOG` says otherwise, so command output stays readable.
fn load_for_command(path: &Path, log_format: Option<LogFormat>) -> Option<Config> {
    let config = load_config(path)?;
    let format = log_format.unwrap_or(config.log.format);
    if let Err(e) = wms_node::ops::log::init("warn", format) {
        eprintln!("error: {e}");
        return None;
    }
    Some(config)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
