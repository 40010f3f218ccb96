//! `wms-node devices add|list|remove`: the scanners and printers allowed on the floor.
//!
//! While the node runs these go through its admin API (so the embedded broker's credentials
//! change at once); when nothing answers there they open the store directly. With an external
//! broker both rewrite the generated Mosquitto password and ACL files (reload Mosquitto after).
//! Exit codes: 0 done, 1 failure (no such device, already registered), 2 bad usage.

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use std::process::ExitCode;
use wms_node::config::Config;
use wms_node::floor::admin::{AddRequest, Added, AdminError, DeviceAdmin, DeviceView};
use wms_node::floor::devices::DeviceError;
use wms_node::ops::alert::Alerts;
use wms_node::outbox::admin::{AdminClient, ClientError};
use wms_node::status::i18n::{Lang, Msg, pad};
use wms_node::store::{OpenError, Store};

/// `wms-node devices` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  wms-node devices add sc-01 --class scanner    prints the device's MQTT credentials once
  wms-node devices add fleet --class gateway    a fleet link: may send this node OTA updates
  wms-node devices list
  wms-node devices remove sc-01                 revokes its credentials at once")]
pub struct DevicesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DevicesCommand,
    /// Print JSON instead of a table (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// A device class on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClassArg {
    /// A barcode scanner or handheld.
    Scanner,
    /// A label printer.
    Printer,
    /// A fleet link (an MQTT bridge or fleet tool): may publish `ota_update` on this node's
    /// gateway `cmd` topic and read its `reply`, `alert` and `state` (docs/OTA.md, Fleets).
    Gateway,
}

impl ClassArg {
    fn class(self) -> firmware_bridge::proto::DeviceClass {
        match self {
            ClassArg::Scanner => firmware_bridge::proto::DeviceClass::Scanner,
            ClassArg::Printer => firmware_bridge::proto::DeviceClass::Printer,
            ClassArg::Gateway => firmware_bridge::proto::DeviceClass::Gateway,
        }
    }
}

/// `wms-node devices` subcommands.
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Register a device and print its MQTT user name, client id and password (shown once;
    /// only a hash is kept).
    Add {
        /// Its id: 1-64 of A-Z a-z 0-9 . _ - (unique per class).
        id: String,
        /// Scanner or printer.
        #[arg(long)]
        class: ClassArg,
    },
    /// Every device: class, online, firmware, last seen.
    List,
    /// Revoke a device's credentials and forget it.
    Remove {
        /// Its id.
        id: String,
        /// Its class, when a scanner and a printer share the id.
        #[arg(long)]
        class: Option<ClassArg>,
    },
}

/// Runs a devices command.
pub fn run(args: DevicesArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(args, config))
}

enum Backend {
    Node(AdminClient),
    Local(DeviceAdmin),
}

async fn connect(config: &Config) -> anyhow::Result<Backend> {
    let url = config.admin_url();
    let client = AdminClient::new(&url)?;
    match client.get_json::<Vec<DeviceView>>("/api/devices").await {
        Ok(_) => return Ok(Backend::Node(client)),
        Err(ClientError::Unreachable { .. }) => {}
        Err(e) => bail!("the node at {url} answered, but not as expected: {e}"),
    }
    let opts = config.store_options();
    let path = opts.path.clone();
    let store = match Store::open(opts, Alerts::new()) {
        Ok(s) => s,
        Err(OpenError::InUse { .. }) => bail!(
            "{} is in use by a running node, but its admin API at {url} did not answer; check \
             [http] listen in the config",
            path.display()
        ),
        Err(e) => return Err(e).context("cannot open the database"),
    };
    let floor = config.floor_options();
    Ok(Backend::Local(DeviceAdmin::new(
        store,
        floor.scope(),
        None,
        floor.mosquitto_files(),
    )))
}

async fn run_async(args: DevicesArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let backend = connect(config).await?;
    let json = args.json;
    let lang = config.node.language;
    match args.command {
        DevicesCommand::Add { id, class } => {
            let added: Result<Added, String> = match &backend {
                Backend::Node(c) => c
                    .post_json(
                        "/api/devices",
                        &AddRequest {
                            class: class.class().as_str().to_owned(),
                            id: id.clone(),
                        },
                    )
                    .await
                    .map_err(|e| e.to_string()),
                Backend::Local(a) => a.add(class.class(), &id).await.map_err(|e| local_error(&e)),
            };
            match added {
                Ok(a) => {
                    if json {
                        outln!("{}", serde_json::to_string_pretty(&a)?);
                    } else {
                        print_added(&a, config);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => fail(&e),
            }
        }
        DevicesCommand::List => {
            let list = match &backend {
                Backend::Node(c) => c.get_json::<Vec<DeviceView>>("/api/devices").await?,
                Backend::Local(a) => a.list()?,
            };
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_list(&list, matches!(backend, Backend::Node(_)), lang);
            }
            Ok(ExitCode::SUCCESS)
        }
        DevicesCommand::Remove { id, class } => {
            let result = match &backend {
                Backend::Node(c) => {
                    let class = match class {
                        Some(c) => c.class(),
                        None => {
                            let list = c.get_json::<Vec<DeviceView>>("/api/devices").await?;
                            let found: Vec<&DeviceView> =
                                list.iter().filter(|d| d.id == id).collect();
                            match found.as_slice() {
                                [one] => firmware_bridge::proto::DeviceClass::from_name(&one.class)
                                    .context("unknown class")?,
                                [] => return fail(&format!("no device {id}")),
                                _ => {
                                    return fail(&format!(
                                        "both a scanner and a printer have the id {id}: give --class"
                                    ));
                                }
                            }
                        }
                    };
                    c.post_json::<_, serde_json::Value>(
                        &format!("/api/devices/{}/{id}/remove", class.as_str()),
                        &serde_json::json!({}),
                    )
                    .await
                    .map(|_| format!("{}/{id}", class.as_str()))
                    .map_err(|e| e.to_string())
                }
                Backend::Local(a) => match a.resolve(class.map(ClassArg::class), &id) {
                    Ok(d) => a
                        .remove(&d)
                        .await
                        .map(|()| d.to_string())
                        .map_err(|e| local_error(&e)),
                    Err(e) => Err(local_error(&e)),
                },
            };
            match result {
                Ok(name) => {
                    if json {
                        outln!("{}", serde_json::json!({ "removed": name }));
                    } else {
                        outln!("{}", lang.f(Msg::DevRemoved, &[&name]));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => fail(&e),
            }
        }
    }
}

fn local_error(e: &AdminError) -> String {
    match e {
        AdminError::Device(DeviceError::Store(s)) => format!("store: {s}"),
        e => e.to_string(),
    }
}

fn fail(message: &str) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::FAILURE)
}

/// A device class as people read it (the class name itself in English, what `--class` takes).
fn class_word(class: &str, lang: Lang) -> String {
    let m = match class {
        "scanner" => Msg::DevScanner,
        "printer" => Msg::DevPrinter,
        "gateway" => Msg::DevGateway,
        other => return other.to_owned(),
    };
    lang.t(m).to_owned()
}

fn print_added(a: &Added, config: &Config) {
    let lang = config.node.language;
    let t = |m| lang.t(m);
    let d = &a.device;
    outln!(
        "{}",
        lang.f(Msg::DevAdded, &[&class_word(&d.class, lang), &d.id])
    );
    outln!();
    let heads = [
        Msg::DevUser,
        Msg::DevPassword,
        Msg::DevClientId,
        Msg::DevTopics,
    ];
    let w = heads
        .iter()
        .map(|&m| wms_node::status::i18n::width(t(m)))
        .max()
        .unwrap_or(0)
        .max(15);
    let topics = format!(
        "wms/{}/{}/{}/{{evt,reply,state}}",
        config.node.site, d.class, d.id
    );
    for (m, value) in heads.into_iter().zip([
        d.username.clone(),
        a.password.clone(),
        d.client_id.clone(),
        lang.f(Msg::DevTopicsValue, &[&topics]),
    ]) {
        outln!("  {}  {value}", pad(t(m), w));
    }
    outln!();
    outln!("{}", t(Msg::DevPasswordOnce));
    if config.mqtt.broker.trim() != "embedded" {
        outln!(
            "{}",
            lang.f(Msg::DevExternalBroker, &[&config.mosquitto_dir().display()])
        );
    }
}

fn print_list(list: &[DeviceView], running: bool, lang: Lang) {
    let t = |m| lang.t(m);
    if list.is_empty() {
        outln!("{}", t(Msg::DevNone));
        return;
    }
    let rows: Vec<[String; 5]> = list
        .iter()
        .map(|d| {
            [
                class_word(&d.class, lang),
                d.id.clone(),
                match d.online {
                    Some(true) => t(Msg::DevIsOnline).into(),
                    Some(false) => t(Msg::DevIsOffline).into(),
                    None => "-".into(),
                },
                d.firmware.clone().unwrap_or_else(|| "-".into()),
                d.last_seen
                    .clone()
                    .unwrap_or_else(|| t(Msg::DevNever).into()),
            ]
        })
        .collect();
    let head = [
        Msg::DevClass,
        Msg::DevId,
        Msg::DevOnline,
        Msg::DevFirmware,
        Msg::DevLastSeen,
    ]
    .map(t);
    // Widths in terminal columns: a Chinese character takes two.
    let mut w = head.map(wms_node::status::i18n::width);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(wms_node::status::i18n::width(c));
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&pad(c, w[i]));
                s.push_str("  ");
            }
        }
        outln!("{}", s.trim_end());
    };
    line(head);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    if !running {
        outln!("{}", t(Msg::DevNotRunning));
    }
}
