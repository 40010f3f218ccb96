//! Configuration: the TOML file, `WMS_NODE__SECTION__KEY` overrides, validation, secrets.
//!
//! ```text
//!   compiled-in defaults  ──▶  TOML file (--config)  ──▶  WMS_NODE__SECTION__KEY env vars
//!        (Default impls)        unknown keys rejected      values read as TOML scalars
//!                                                          ("30s", true, 0.8), else strings
//!                         ──▶  *_file secrets read  ──▶  validate(): every problem at once
//! ```
//!
//! The doc comments on the structs below are the user documentation of each key;
//! `config/node.example.toml` repeats them with the defaults. Durations are written as
//! humantime strings (`"500ms"`, `"2m"`), byte sizes as `"64MiB"` or an integer. Relative
//! paths are resolved against the directory of the config file.
//!
//! Secrets (`taobao.app_secret`, `taobao.session`, `mqtt.password`, `alerts.url`, `alerts.secret`) are [`Secret`]s: they
//! print as `"<redacted>"` everywhere, and loading errors never echo their values. Each can
//! be given inline, through its `*_file` key (the file's content, trailing newline removed;
//! fits systemd credentials and Docker secrets), or through the environment.
//!
//! This module never logs: loading happens before logging is set up, and every problem is
//! returned to the caller as a [`Problem`] naming the key and where its value came from.

pub mod bounds;
mod bytes;
mod goods;
mod load;
mod schema;

/// How log lines are written: `"text"` or `"json"`.
pub use crate::ops::log::LogFormat;
/// What the store does at its byte cap: `"reject_new"`, `"drop_oldest"` or `"block"`.
pub use crate::store::CapPolicy;
/// How TOP requests are signed: `"md5"`, `"hmac"` or `"hmac-sha256"`.
pub use crate::taobao::sign::SignMethod;
pub use bytes::{ByteSize, ParseByteSizeError};
pub use goods::{ReconcileConfig, ShippingConfig, StockConfig, WaybillConfig};
pub use load::{ConfigError, ENV_PREFIX, Origin, Problem};

use crate::alert::Severity;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole node configuration. Every section and key has a compiled-in default except the
/// few that identify the box and the shop (`node.id`, `taobao.app_key`, the app secret).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// This box: its identity and where it keeps its data.
    pub node: NodeConfig,
    /// Logging.
    pub log: LogConfig,
    /// The local database (one redb file under `node.data_dir`).
    pub store: StoreConfig,
    /// Delivery of queued effects (shipments, stock) to Taobao.
    pub outbox: OutboxConfig,
    /// The Taobao Open Platform app and shop connection.
    pub taobao: TaobaoConfig,
    /// Order intake: how orders are pulled, and what holds them.
    pub intake: IntakeConfig,
    /// Parcels (merged orders) and ship-by deadlines.
    pub shipping: ShippingConfig,
    /// Cainiao e-waybills.
    pub waybill: WaybillConfig,
    /// What the shop is told about stock.
    pub stock: StockConfig,
    /// The periodic comparison with Taobao.
    pub reconcile: ReconcileConfig,
    /// The MQTT broker that scanners, printers and bridges talk to.
    pub mqtt: MqttConfig,
    /// The warehouse floor: device events, dedupe, generated broker files.
    pub floor: FloorConfig,
    /// The operations HTTP server: `/healthz`, `/metrics`, the status page.
    pub http: HttpConfig,
    /// Over-the-air updates of this node's software.
    pub ota: OtaConfig,
    /// Alerts that reach people: a DingTalk or WeCom group robot, or a JSON webhook.
    pub alerts: AlertsConfig,
}

/// `[node]`: this box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeConfig {
    /// Required. A name unique to this gateway box, used in MQTT topics
    /// (`wms/{site}/gateway/{id}/…`), metrics and alerts. Letters, digits, `-`, `_`, `.`.
    pub id: String,
    /// The warehouse this box serves; the second level of every MQTT topic (`wms/{site}/…`).
    /// Letters, digits, `-`, `_`, `.`.
    pub site: String,
    /// Where the database and state files live. Must be on persistent storage, writable by
    /// the service user.
    pub data_dir: PathBuf,
    /// The warehouse's time zone, for times people read (the status page, alert messages in
    /// group chats): `"Asia/Shanghai"` and other zones without daylight saving time, `"UTC"`,
    /// or an offset such as `"+08:00"`. JSON and logs stay in UTC.
    pub timezone: String,
    /// The language of the status page and of the CLI's human output: `"en"` (English) or
    /// `"zh"` (Simplified Chinese). `/healthz`, `/metrics`, `--json`, logs, and the messages
    /// of checks and alerts stay in English.
    pub language: crate::status::i18n::Lang,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: String::new(),
            site: "main".into(),
            data_dir: PathBuf::from("/var/lib/wms-node"),
            timezone: "Asia/Shanghai".into(),
            language: crate::status::i18n::Lang::En,
        }
    }
}

/// `[log]`: what is logged and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// A filter in `RUST_LOG` syntax: `"info"`, `"warn,wms_node::outbox=debug"`. The
    /// `RUST_LOG` environment variable, when set, takes precedence.
    pub level: String,
    /// `"text"` for people (colours on a terminal) or `"json"`, one object per line, for log
    /// collectors. The `--log-format` command-line flag takes precedence.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `[store]`: the local database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Memory for the database page cache. Gateways have 512 MiB–1 GiB of RAM; the default
    /// keeps the node's footprint small. From 1MiB to 1GiB.
    pub cache_size: ByteSize,
    /// The most bytes the queue of operations waiting for Taobao (the outbox backlog) may
    /// take; `0` means no cap. When it is reached, `cap_policy` decides what happens;
    /// shipments are accepted beyond it whatever the policy. Sizing: a day offline at
    /// 2,000 shipments an hour is about 15 MB, times 3 for the database's page overhead.
    /// 0 (off) or from 1MiB to 1TiB.
    pub max_bytes: ByteSize,
    /// What to do at `max_bytes`: `"reject_new"` refuses new non-critical operations (the
    /// producer is told), `"drop_oldest"` drops the oldest non-critical queued operations
    /// (counted and alerted), `"block"` makes producers wait until there is room.
    pub cap_policy: CapPolicy,
    /// Fractions of `max_bytes` at which a `store_cap` alert is raised, ascending. Each
    /// from 0.01 to 1.
    pub cap_alert_thresholds: Vec<f64>,
    /// How long a write that finds the writer idle may wait for others to share its fsync.
    /// 0 (the default): none; under load writes share a commit anyway (those that arrive
    /// while one runs form the next), and waiting would only add to every lone scan's time.
    /// Longer means fewer fsyncs at light load (less flash wear) but slower scan feedback.
    /// From 0s to 100ms.
    #[serde(with = "humantime_serde")]
    pub group_commit_max_wait: Duration,
    /// The most writes committed in one transaction. From 1 to 65536.
    pub group_commit_max_batch: usize,
    /// redb quick-repair on every commit: opening after a power cut takes milliseconds
    /// instead of a walk over the whole file (about 2 s per GiB from cache, longer cold), at
    /// the price of a slower commit (see docs/BENCHMARKS.md, Outbox).
    pub quick_repair: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_size: ByteSize::mib(16),
            max_bytes: ByteSize::mib(256),
            cap_policy: CapPolicy::RejectNew,
            cap_alert_thresholds: vec![0.8, 0.95],
            group_commit_max_wait: Duration::ZERO,
            group_commit_max_batch: 1024,
            quick_repair: true,
        }
    }
}

/// `[outbox]`: delivery of queued operations to Taobao.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboxConfig {
    /// How many operations (on different keys) may be in flight at once. From 1 to 64.
    pub concurrency: usize,
    /// Sustained delivery rate, operations per second (token bucket). From 0.01 to 1000.
    pub rate_per_second: f64,
    /// How many operations may go at once after an idle period (token bucket size). From 1
    /// to 10000.
    pub burst: u32,
    /// The first retry delay after a failure; doubles on each further failure (with jitter).
    /// From 100ms to 1h.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// The longest retry delay, not shorter than `backoff_initial`. From 1s to 1h.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// On shutdown, how long in-flight deliveries may take to finish, so that the node stops
    /// within 5 seconds of SIGTERM. From 0s to 4s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            concurrency: 4,
            rate_per_second: 5.0,
            burst: 10,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

/// `[taobao]`: the Taobao Open Platform (TOP) app and the shop's authorization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaobaoConfig {
    /// The TOP REST gateway. Production: `https://gw.api.taobao.com/router/rest`.
    pub endpoint: String,
    /// The OAuth 2.0 server's base URL (`/authorize` and `/token` are appended).
    pub oauth_url: String,
    /// Required. The app key from the Taobao Open Platform console.
    pub app_key: String,
    /// The app secret. Prefer `app_secret_file` or the `WMS_NODE__TAOBAO__APP_SECRET`
    /// environment variable, so the secret is not in this file. One of the three is required.
    pub app_secret: Option<Secret>,
    /// A file holding the app secret (trailing newline ignored), e.g. a systemd credential.
    pub app_secret_file: Option<PathBuf>,
    /// How requests are signed: `"md5"`, `"hmac"` or `"hmac-sha256"`.
    pub sign_method: SignMethod,
    /// A pre-issued session key (access token), for self-use apps and tests that skip OAuth.
    /// Seeds the token store at start-up; `wms-node auth` manages tokens otherwise.
    pub session: Option<Secret>,
    /// A file holding the pre-issued session key.
    pub session_file: Option<PathBuf>,
    /// The OAuth callback registered for the app. `wms-node auth login` uses a local one.
    pub redirect_uri: Option<String>,
    /// How often new and changed orders are pulled. From 1s to 1h.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The longest wait for a TCP/TLS connection to the gateway. From 100ms to 1m.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The longest wait for one API call, connection included; not shorter than
    /// `connect_timeout`. From 1s to 10m.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The app's daily call quota (pre-launch apps get 5,000). An alert is raised at 80 %.
    /// 0 (off) or from 1 to 1000000000; 0 means no budget is tracked.
    pub daily_call_budget: u64,
}

impl Default for TaobaoConfig {
    fn default() -> Self {
        TaobaoConfig {
            endpoint: crate::taobao::client::PRODUCTION_ENDPOINT.into(),
            oauth_url: "https://oauth.taobao.com".into(),
            app_key: String::new(),
            app_secret: None,
            app_secret_file: None,
            sign_method: SignMethod::HmacSha256,
            session: None,
            session_file: None,
            redirect_uri: None,
            poll_interval: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            daily_call_budget: 5_000,
        }
    }
}

/// `[intake]`: how orders are pulled from Taobao and which of them wait for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IntakeConfig {
    /// How far back the very first pull looks (orders modified since then arrive; the
    /// re-scan then fetches every order still waiting to ship from the last `rescan_days`).
    /// From 1m to 89d (Taobao keeps three months of changes).
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
    /// How much each pull overlaps the previous one, so a change Taobao records a little
    /// late is not missed. From 2m to 1h.
    #[serde(with = "humantime_serde")]
    pub overlap: Duration,
    /// The overlap after an error or an outage, not shorter than `overlap`. From 2m to 1d.
    #[serde(with = "humantime_serde")]
    pub error_overlap: Duration,
    /// The longest time window one call asks for (Taobao advises at most 30m). From 1m to
    /// 30m.
    #[serde(with = "humantime_serde")]
    pub max_window: Duration,
    /// Orders per page. From 1 to 100.
    pub page_size: u32,
    /// How often the orders still waiting to ship are re-scanned (`trades.sold.get`), on
    /// top of the first start and the end of every outage. From 1h to 7d.
    #[serde(with = "humantime_serde")]
    pub rescan_every: Duration,
    /// How many days back (by creation) the re-scan looks. From 1 to 90.
    pub rescan_days: u32,
    /// Open orders not read in full for this long are read again at the re-scan. From 1m to
    /// 30d.
    #[serde(with = "humantime_serde")]
    pub refresh_after: Duration,
    /// `/healthz` fails when intake lags more than this while Taobao answers (a link that
    /// is down only degrades it); at least twice `taobao.poll_interval`. From 2s to 1d.
    #[serde(with = "humantime_serde")]
    pub lag_alert: Duration,
    /// Orders read in full (`trade.fullinfo.get`) at once. From 1 to 16.
    pub fullinfo_concurrency: usize,
    /// The trade types to pull (`type`). Empty: Taobao's default set (guarantee_trade,
    /// auto_delivery, ec, cod, step). List every type the shop sells with, e.g. "fixed".
    pub trade_types: Vec<String>,
    /// Ship the lines that are left when some lines of an order are refunded, without
    /// asking. Off: such an order is held until `wms-node orders release`.
    pub partial_shipment: bool,
    /// Seller flag colours (1 red, 2 yellow, 3 green, 4 blue, 5 purple) that hold an order
    /// for review until `wms-node orders release`. Each from 1 to 5.
    pub review_flags: Vec<u8>,
    /// Words in the seller's memo that hold an order for review (case-insensitive), e.g.
    /// ["hold", "暂停", "换"]. The memo itself is never stored.
    pub review_memo_words: Vec<String>,
    /// The shop's ship-by promise after payment, for orders whose trade gives no deadline.
    /// From 1h to 30d.
    #[serde(with = "humantime_serde")]
    pub default_promise: Duration,
    /// Report to AliGenius (`taobao.rdc.aligenius.sendgoods.cancel`) when an unshipped
    /// order is stopped after a refund request, so the buyer is refunded at once. Turn off
    /// if the app lacks the permission (the calls would be refused).
    pub ag_feedback: bool,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            lookback: Duration::from_secs(24 * 3600),
            overlap: Duration::from_secs(120),
            error_overlap: Duration::from_secs(600),
            max_window: Duration::from_secs(1800),
            page_size: 100,
            rescan_every: Duration::from_secs(24 * 3600),
            rescan_days: 3,
            refresh_after: Duration::from_secs(24 * 3600),
            lag_alert: Duration::from_secs(1800),
            fullinfo_concurrency: 4,
            trade_types: Vec::new(),
            partial_shipment: false,
            review_flags: Vec::new(),
            review_memo_words: Vec::new(),
            default_promise: Duration::from_secs(48 * 3600),
            ag_feedback: true,
        }
    }
}

impl TaobaoConfig {
    /// The REST client's options (secrets must already be resolved from their files).
    pub fn client_options(&self) -> crate::taobao::client::ClientOptions {
        let mut o = crate::taobao::client::ClientOptions::new(
            self.endpoint.clone(),
            self.app_key.clone(),
            self.app_secret.clone().unwrap_or_default(),
        );
        o.sign_method = self.sign_method;
        o.connect_timeout = self.connect_timeout;
        o.request_timeout = self.request_timeout;
        o.daily_call_budget = (self.daily_call_budget > 0).then_some(self.daily_call_budget);
        o
    }

    /// The OAuth client's options; `redirect_uri` overrides the configured one (`auth login`
    /// uses a local address). Refresh needs no redirect URI, so an absent one is left empty.
    pub fn oauth_options(
        &self,
        redirect_uri: Option<String>,
    ) -> crate::taobao::oauth::OAuthOptions {
        let mut o = crate::taobao::oauth::OAuthOptions::new(
            self.oauth_url.clone(),
            self.app_key.clone(),
            self.app_secret.clone().unwrap_or_default(),
            redirect_uri
                .or_else(|| self.redirect_uri.clone())
                .unwrap_or_default(),
        );
        o.connect_timeout = self.connect_timeout;
        o.request_timeout = self.request_timeout;
        o
    }
}

/// `[mqtt]`: the broker of the warehouse floor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MqttConfig {
    /// `"embedded"` runs a broker inside the node (one box, no other broker needed);
    /// `"mqtt://host:port"` or `"mqtts://host:port"` (TLS) uses an external one.
    pub broker: String,
    /// Where the embedded broker listens for devices. Ignored with an external broker.
    pub listen: SocketAddr,
    /// The node's user name at the broker, if it requires one.
    pub username: Option<String>,
    /// The node's password at the broker. Prefer `password_file` or
    /// `WMS_NODE__MQTT__PASSWORD`.
    pub password: Option<Secret>,
    /// A file holding the broker password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// `mqtts://` only: a PEM file with the CA(s) that signed the broker's certificate.
    /// Without it the broker must have a certificate from a public CA (webpki roots).
    pub ca_file: Option<PathBuf>,
    /// `mqtts://` only: the node's client certificate (PEM chain), for brokers that require
    /// one (`require_certificate true`). Needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// `mqtts://` only: the private key of `cert_file` (PEM).
    pub key_file: Option<PathBuf>,
    /// MQTT keep-alive of the node's session: how soon a dead connection is noticed (and the
    /// node's will published). From 5s to 10m.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// The first wait before reconnecting to the broker (full jitter, doubling per failure).
    /// From 10ms to 1m.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// The longest wait between reconnect attempts (one below `reconnect_min` is taken as
    /// `reconnect_min`). From 10ms to 1h.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            broker: "embedded".into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            keep_alive: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
        }
    }
}

/// `[floor]`: the warehouse floor's device traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FloorConfig {
    /// How long the node remembers its answer to each device event, so a re-sent event gets
    /// the original answer and is never applied twice. At least 24h (devices and bridges may
    /// re-send after a long outage), at most 30 days. From 1d to 30d.
    #[serde(with = "humantime_serde")]
    pub dedupe_retention: Duration,
    /// The largest event or reply payload the node reads; bigger ones are answered "too
    /// large". A scan is about 300 bytes. From 1KiB to 1MiB.
    pub max_event_bytes: ByteSize,
    /// With an external broker: the folder where the node writes Mosquitto's password file
    /// (`passwd`) and ACL file (`acl`) for every registered device, at start and on every
    /// `wms-node devices add|remove`. Point Mosquitto's `password_file` and `acl_file` at them
    /// and reload it after a change. Default: `<data_dir>/mosquitto`.
    pub mosquitto_dir: Option<PathBuf>,
    /// How long a packing station's printer has to answer a `print` with `print_result`
    /// before the label is sent again (the same waybill, a new job id); after three tries
    /// the station's scanner is told to check the printer. From 5s to 10m.
    #[serde(with = "humantime_serde")]
    pub print_timeout: Duration,
    /// Packing stations: each pairs a scanner with the printer beside it
    /// (`[[floor.stations]]`, `scanner`, `printer`, `format` = `cainiao` or `zpl`). A packed
    /// order's label goes to the printer of the scanner that packed it.
    pub stations: Vec<StationConfig>,
    /// The language of what scanners and printers show people (feedback and task texts,
    /// holds, station notices, the pause before an update): `"en"` or `"zh"`. Absent: the
    /// node's `[node] language`. Set it when the floor reads another language than whoever
    /// reads the CLI. Machine fields of the protocol (`beep`, reasons, actions, ids, SKU
    /// codes, locations) are the same in either.
    pub language: Option<crate::status::i18n::Lang>,
}

/// `[[floor.stations]]`: one packing station.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    /// The packing scanner's id (as in `wms-node devices add ID --class scanner`).
    pub scanner: String,
    /// The label printer's id (`--class printer`).
    pub printer: String,
    /// `cainiao`: the waybill's print data and template, for a station running the Cainiao
    /// print component; `zpl`: a carton label with the tracking number's barcode, for a ZPL
    /// printer.
    #[serde(default = "StationConfig::default_format")]
    pub format: crate::floor::labels::LabelFormat,
}

impl StationConfig {
    fn default_format() -> crate::floor::labels::LabelFormat {
        crate::floor::labels::LabelFormat::Cainiao
    }
}

impl Default for FloorConfig {
    fn default() -> Self {
        FloorConfig {
            dedupe_retention: Duration::from_secs(48 * 60 * 60),
            max_event_bytes: ByteSize::kib(64),
            mosquitto_dir: None,
            print_timeout: Duration::from_secs(30),
            stations: Vec::new(),
            language: None,
        }
    }
}

/// Which broker the node uses, parsed from `mqtt.broker`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broker {
    /// A broker inside the node, listening on `mqtt.listen`.
    Embedded,
    /// An external broker.
    External {
        /// Host name or IP address.
        host: String,
        /// TCP port (1883 for `mqtt://`, 8883 for `mqtts://` when not given).
        port: u16,
        /// Whether to use TLS (`mqtts://`).
        tls: bool,
    },
}

impl MqttConfig {
    /// Parses `broker`; the error says what is wrong with it.
    pub fn broker(&self) -> Result<Broker, String> {
        let b = self.broker.trim();
        if b == "embedded" {
            return Ok(Broker::Embedded);
        }
        let (tls, rest) = if let Some(rest) = b.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = b.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(format!(
                "`{b}` is not \"embedded\", \"mqtt://host:port\" or \"mqtts://host:port\""
            ));
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if tls { 8883 } else { 1883 };
        // An IPv6 literal is bracketed: mqtt://[::1]:1883.
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            match v6.split_once(']') {
                Some((h, "")) => (h, None),
                Some((h, p)) => (h, Some(p.strip_prefix(':').unwrap_or(p))),
                None => return Err(format!("`{b}` has an unclosed `[`")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(format!("`{b}` has no valid host"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("`{b}` has a bad port `{p}`"))?,
        };
        Ok(Broker::External {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

/// `[http]`: the operations HTTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Where `/healthz`, `/metrics` and the status page are served. It has no
    /// authentication: keep it on loopback or a management network. Port 0 picks a free
    /// port (the log says which).
    pub listen: SocketAddr,
    /// A second address for the read-only views (status page, `/healthz`, `/metrics`), e.g.
    /// `0.0.0.0:9871` so a phone on the warehouse Wi-Fi can open the page; the admin API is
    /// never served there. Unset: only `listen`.
    pub status_listen: Option<SocketAddr>,
    /// Host names the server answers to besides IP addresses and `localhost` (e.g. the
    /// box's name on the warehouse network, `wms-gw1.local`). A request naming any other
    /// host is refused, so a web page cannot reach the server through DNS rebinding.
    pub hosts: Vec<String>,
    /// How long a client has to send a request's headers, from the moment it connects or
    /// starts the next request; a client that trickles them (slowloris) is disconnected.
    /// From 100ms to 1m.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// The longest a request may take, body and answer included (408 after it). From 1s
    /// to 5m.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed. From 1s to 1h.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The most connections served at once; further ones wait in the kernel's queue until
    /// one closes. From 1 to 4096.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9870)),
            status_listen: None,
            hosts: Vec::new(),
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 64,
        }
    }
}

/// `[ota]`: signed over-the-air updates (docs/OTA.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OtaConfig {
    /// The ed25519 public keys (base64) whose signatures on update manifests are accepted.
    /// Empty: every update is refused. List two during a key rotation. `wms-node ota keygen`
    /// prints a new key pair's public key.
    pub public_keys: Vec<String>,
    /// How long an update on trial has to pass its self-test (config, store round trip,
    /// local broker, version) before the previous build comes back. From 5s to 30m.
    #[serde(with = "humantime_serde")]
    pub gate_timeout: Duration,
    /// Trial starts that end without a verdict (a power cut, the launcher killed) before the
    /// launcher rolls back. A failed self-test, an exit or a hang rolls back at once. From 1
    /// to 10.
    pub trial_attempts: u32,
    /// A download that receives nothing for this long is cut and resumed. From 1s to 10m.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// Resumed download attempts in a row without one new byte before it gives up (and
    /// reports the failure). From 0 to 100.
    pub download_retries: u32,
}

impl Default for OtaConfig {
    fn default() -> Self {
        OtaConfig {
            public_keys: Vec::new(),
            gate_timeout: Duration::from_secs(60),
            trial_attempts: 3,
            stall_timeout: Duration::from_secs(30),
            download_retries: 8,
        }
    }
}

/// Where `[alerts]` notices go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertWebhook {
    /// Nowhere: alerts are still kept, shown on the status page and in `/metrics`, and sent
    /// on MQTT.
    #[default]
    None,
    /// A DingTalk group's custom robot (自定义机器人).
    DingTalk,
    /// A WeCom group robot (企业微信群机器人).
    WeCom,
    /// Any HTTP endpoint: a POST of the alert's JSON.
    Json,
}

/// `[alerts]`: alerts that reach people (docs/OPERATIONS.md, *Alerts*).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertsConfig {
    /// Where notices go: `"none"`, `"dingtalk"`, `"wecom"` or `"json"`.
    pub webhook: AlertWebhook,
    /// The webhook's URL. A robot's URL holds its token (`access_token=` for DingTalk, `key=`
    /// for WeCom), so it is a secret: prefer `url_file` or `WMS_NODE__ALERTS__URL`; it is
    /// never logged or shown.
    pub url: Option<Secret>,
    /// A file holding the URL (trailing newline ignored).
    pub url_file: Option<PathBuf>,
    /// DingTalk: the robot's signing secret (`SEC…`, 加签), when its security setting is
    /// signing. JSON: a key the node signs each POST with (`X-Wms-Signature`). WeCom robots
    /// have none.
    pub secret: Option<Secret>,
    /// A file holding the secret.
    pub secret_file: Option<PathBuf>,
    /// The severities people are told about: any of `"info"`, `"warning"`, `"critical"`.
    pub severities: Vec<Severity>,
    /// An alert that cleared is told `raised` again no sooner than this after its last
    /// notice (a flapping condition costs at most two notices per interval). From 0s to 1d.
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
    /// Notices a minute at most (1 to 60). DingTalk and WeCom robots take 20 and block a
    /// sender for 10 minutes beyond that, so at most 20 for them. From 1 to 60.
    pub per_minute: u32,
    /// Whether a `resolved` notice is sent when an alert clears.
    pub send_resolved: bool,
    /// Resolved alerts kept in the store and shown as "recently resolved" (0 to 10000).
    /// From 0 to 10000.
    pub history: usize,
    /// The longest wait for the webhook to answer one notice. From 1s to 1m.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook: AlertWebhook::None,
            url: None,
            url_file: None,
            secret: None,
            secret_file: None,
            severities: vec![Severity::Warning, Severity::Critical],
            min_interval: Duration::from_secs(600),
            per_minute: 20,
            send_resolved: true,
            history: crate::alert::DEFAULT_HISTORY,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The longest `outbox.shutdown_grace` that still lets the node stop within 5 s.
pub const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

impl Config {
    /// How to open the store: `<data_dir>/wms-node.v3.redb` (converted from an earlier
    /// release's `wms-node.redb` if need be) with the `[store]` settings.
    pub fn store_options(&self) -> crate::store::StoreOptions {
        let s = &self.store;
        let mut o = crate::store::StoreOptions::in_dir(&self.node.data_dir);
        o.cache_size = s.cache_size.bytes();
        o.max_bytes = s.max_bytes.bytes();
        o.cap_policy = s.cap_policy;
        o.group_commit_max_wait = s.group_commit_max_wait;
        o.group_commit_max_batch = s.group_commit_max_batch;
        o.quick_repair = s.quick_repair;
        o.schemas.push(crate::outbox::SCHEMA);
        o
    }

    /// What the Taobao side starts with: the client, OAuth and the pre-issued session.
    pub fn taobao_options(&self) -> crate::taobao::setup::TaobaoOptions {
        crate::taobao::setup::TaobaoOptions {
            client: self.taobao.client_options(),
            oauth: self.taobao.oauth_options(None),
            session: self.taobao.session.clone(),
        }
    }

    /// How the outbox delivers: the `[outbox]` settings and `store.cap_alert_thresholds`.
    pub fn outbox_options(&self) -> crate::outbox::OutboxOptions {
        let o = &self.outbox;
        crate::outbox::OutboxOptions {
            concurrency: o.concurrency,
            // validate() refused any other rate, so this is never `None` for a loaded config.
            rate: firmware_bridge::pace::Rate::new(o.rate_per_second, o.burst).ok(),
            backoff_initial: o.backoff_initial,
            backoff_max: o.backoff_max,
            shutdown_grace: o.shutdown_grace,
            cap_alert_thresholds: self.store.cap_alert_thresholds.clone(),
            ..crate::outbox::OutboxOptions::default()
        }
    }

    /// How order intake runs: `[intake]` and `taobao.poll_interval`.
    pub fn intake_options(&self) -> crate::sync::intake::IntakeOptions {
        let i = &self.intake;
        let types: Vec<&str> = i
            .trade_types
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .collect();
        crate::sync::intake::IntakeOptions {
            shop: crate::wms::ShopId::main(),
            poll_interval: self.taobao.poll_interval,
            overlap: i.overlap,
            error_overlap: i.error_overlap,
            max_window: i.max_window,
            page_size: i.page_size,
            lookback: i.lookback,
            rescan_every: i.rescan_every,
            rescan_days: i.rescan_days,
            refresh_after: i.refresh_after,
            lag_alert: i.lag_alert,
            fullinfo_concurrency: i.fullinfo_concurrency,
            trade_types: (!types.is_empty()).then(|| types.join(",")),
            rules: self.rules(),
        }
    }

    /// The hold rules of `[intake]`.
    pub fn rules(&self) -> crate::wms::Rules {
        let i = &self.intake;
        crate::wms::Rules {
            partial_shipment: i.partial_shipment,
            review_flags: i.review_flags.clone(),
            review_memo_words: i.review_memo_words.clone(),
            default_promise_s: i64::try_from(i.default_promise.as_secs()).unwrap_or(i64::MAX),
            ag_feedback: i.ag_feedback,
            merge_orders: self.shipping.merge_orders,
        }
    }

    /// How stock is pushed: `[stock]`.
    pub fn stock_options(&self) -> crate::sync::stock::StockOptions {
        crate::sync::stock::StockOptions {
            shop: crate::wms::ShopId::main(),
            max_intake_lag: self.stock.max_intake_lag,
            ..crate::sync::stock::StockOptions::default()
        }
    }

    /// How e-waybills are asked for: `[waybill]` and `shipping.merge_orders`.
    pub fn waybill_options(&self) -> crate::sync::waybill::WaybillOptions {
        let w = &self.waybill;
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        crate::sync::waybill::WaybillOptions {
            shop: crate::wms::ShopId::main(),
            cp_code: opt(&w.cp_code),
            branch_code: w.branch_code.trim().to_owned(),
            template_url: w.template_url.trim().to_owned(),
            order_channels_type: w.order_channels_type.clone(),
            need_encrypt: w.need_encrypt,
            sender: crate::taobao::api::WaybillParty {
                name: w.sender_name.trim().to_owned(),
                mobile: opt(&w.sender_mobile),
                phone: opt(&w.sender_phone),
                address: crate::taobao::api::WaybillAddress {
                    province: w.sender_province.trim().to_owned(),
                    city: opt(&w.sender_city),
                    district: opt(&w.sender_district),
                    town: None,
                    detail: w.sender_detail.trim().to_owned(),
                },
            },
            merge_orders: self.shipping.merge_orders,
        }
    }

    /// Ship-by deadline alerts: `[shipping]`.
    pub fn deadline_options(&self) -> crate::sync::deadlines::DeadlineOptions {
        crate::sync::deadlines::DeadlineOptions {
            shop: crate::wms::ShopId::main(),
            warning: self.shipping.deadline_warning,
            critical: self.shipping.deadline_critical,
            ..crate::sync::deadlines::DeadlineOptions::default()
        }
    }

    /// Reconciliation: `[reconcile]`, `waybill.unused_after`, `[stock]` and the intake's
    /// lag alert.
    pub fn reconcile_options(&self) -> crate::sync::reconcile::ReconcileOptions {
        let r = &self.reconcile;
        crate::sync::reconcile::ReconcileOptions {
            shop: crate::wms::ShopId::main(),
            every: r.every,
            stock_every: r.stock_every,
            stuck_after: r.stuck_after,
            days: r.days,
            unused_waybill_after: self.waybill.unused_after,
            deadline_within: self.shipping.deadline_warning,
            max_intake_lag: self.stock.max_intake_lag,
            lag_alert: self.intake.lag_alert,
            trade_types: {
                let types: Vec<&str> = self
                    .intake
                    .trade_types
                    .iter()
                    .map(|t| t.trim())
                    .filter(|t| !t.is_empty())
                    .collect();
                (!types.is_empty()).then(|| types.join(","))
            },
        }
    }

    /// The warehouse's time zone (`node.timezone`; China Standard Time if it does not parse,
    /// which [`Config::validate`] reports).
    pub fn local_time(&self) -> crate::status::time::LocalTime {
        crate::status::time::LocalTime::parse(&self.node.timezone).unwrap_or_default()
    }

    /// How alerts reach people: `[alerts]` and the node's name.
    pub fn alerts_options(&self) -> crate::ops::notify::NotifyOptions {
        use crate::ops::notify::{Webhook, WebhookKind};
        let a = &self.alerts;
        let mut o = crate::ops::notify::NotifyOptions::new(&self.node.id, &self.node.site);
        let kind = match a.webhook {
            AlertWebhook::None => None,
            AlertWebhook::DingTalk => Some(WebhookKind::DingTalk),
            AlertWebhook::WeCom => Some(WebhookKind::WeCom),
            AlertWebhook::Json => Some(WebhookKind::Json),
        };
        o.webhook = kind.zip(a.url.clone()).map(|(kind, url)| Webhook {
            kind,
            url,
            secret: a.secret.clone().filter(|_| kind != WebhookKind::WeCom),
            timeout: a.timeout,
        });
        o.severities = a.severities.iter().copied().collect();
        o.min_interval = a.min_interval;
        o.send_resolved = a.send_resolved;
        o.history = a.history;
        o.utc_offset = self.local_time().offset;
        o.delivery = crate::ops::notify::delivery_options(a.per_minute, a.timeout);
        o
    }

    /// How OTA works: the `[ota]` settings, `node.data_dir` and the store file. Keys that do
    /// not parse are left out here; [`Config::validate`] reports them.
    pub fn ota_options(&self) -> crate::ota::OtaOptions {
        let o = &self.ota;
        let mut opts = crate::ota::OtaOptions::new(
            &self.node.data_dir,
            self.node.data_dir.join(crate::store::FILE),
        );
        opts.public_keys = crate::ota::TrustedKeys(
            o.public_keys
                .iter()
                .filter_map(|k| crate::ota::PublicKey::parse(k).ok())
                .collect(),
        );
        opts.gate_timeout = o.gate_timeout;
        opts.trial_attempts = o.trial_attempts;
        opts.stall_timeout = o.stall_timeout;
        opts.download_retries = o.download_retries;
        opts.connect_timeout = self.taobao.connect_timeout.max(Duration::from_secs(5));
        opts
    }

    /// The ops HTTP server's limits: the `[http]` settings.
    pub fn http_options(&self) -> crate::ops::http::HttpOptions {
        let h = &self.http;
        crate::ops::http::HttpOptions {
            header_read_timeout: h.header_read_timeout,
            request_timeout: h.request_timeout,
            idle_timeout: h.idle_timeout,
            max_connections: h.max_connections,
        }
    }

    /// The floor's options: `[node]` site and id, `[mqtt]` and `[floor]`. Call on a validated
    /// config (a broker URL that does not parse falls back to the embedded broker here).
    pub fn floor_options(&self) -> crate::floor::FloorOptions {
        let m = &self.mqtt;
        let mut o = crate::floor::FloorOptions::new(&self.node.site, &self.node.id, m.listen);
        if let Ok(Broker::External { host, port, tls }) = m.broker() {
            o.broker = crate::floor::BrokerChoice::External {
                host,
                port,
                tls: tls.then(|| crate::floor::client::TlsFiles {
                    ca_file: m.ca_file.clone(),
                    cert_file: m.cert_file.clone(),
                    key_file: m.key_file.clone(),
                }),
                files_dir: Some(self.mosquitto_dir()),
            };
        }
        o.credentials = match (&m.username, &m.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (Some(u), None) => Some((u.clone(), Secret::new(""))),
            _ => None,
        };
        o.keep_alive = m.keep_alive;
        o.reconnect_min = m.reconnect_min;
        // A maximum below the first wait means "no growth".
        o.reconnect_max = m.reconnect_max.max(m.reconnect_min);
        o.max_event_bytes =
            usize::try_from(self.floor.max_event_bytes.bytes()).unwrap_or(usize::MAX);
        o.dedupe_retention = self.floor.dedupe_retention;
        o.print_timeout = self.floor.print_timeout;
        o.lang = self.floor_language();
        o
    }

    /// The language the floor's devices show people: `floor.language`, else `node.language`.
    pub fn floor_language(&self) -> crate::status::i18n::Lang {
        self.floor.language.unwrap_or(self.node.language)
    }

    /// The packing stations of `[[floor.stations]]`.
    pub fn floor_stations(&self) -> Vec<crate::floor::labels::Station> {
        self.floor
            .stations
            .iter()
            .map(|s| crate::floor::labels::Station {
                scanner: s.scanner.clone(),
                printer: s.printer.clone(),
                format: s.format,
            })
            .collect()
    }

    /// Where the generated Mosquitto files go (`floor.mosquitto_dir`, else `<data_dir>/mosquitto`).
    pub fn mosquitto_dir(&self) -> PathBuf {
        self.floor
            .mosquitto_dir
            .clone()
            .unwrap_or_else(|| self.node.data_dir.join("mosquitto"))
    }

    /// The base URL of this node's ops HTTP server, as a local client reaches it
    /// (`0.0.0.0` and `::` become loopback). `queue` commands use it to ask a running node.
    pub fn admin_url(&self) -> String {
        let mut addr = self.http.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        format!("http://{addr}")
    }

    /// The effective configuration as TOML, secrets shown as `"<redacted>"`.
    pub fn to_redacted_toml(&self) -> String {
        // Serializing plain structs of strings, numbers and tables cannot fail; should it
        // ever, say so instead of printing half a file.
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"))
    }

    /// Reads the secrets given as `*_file` keys into their secret fields, and reports keys
    /// given twice (`app_secret` and `app_secret_file`), files that cannot be read and empty
    /// files. Paths must already be absolute or relative to the working directory.
    pub fn resolve_secrets(&mut self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let t = &mut self.taobao;
        resolve_secret(
            "taobao.app_secret",
            &mut t.app_secret,
            t.app_secret_file.as_deref(),
            &mut problems,
        );
        resolve_secret(
            "taobao.session",
            &mut t.session,
            t.session_file.as_deref(),
            &mut problems,
        );
        let m = &mut self.mqtt;
        resolve_secret(
            "mqtt.password",
            &mut m.password,
            m.password_file.as_deref(),
            &mut problems,
        );
        let a = &mut self.alerts;
        resolve_secret(
            "alerts.url",
            &mut a.url,
            a.url_file.as_deref(),
            &mut problems,
        );
        resolve_secret(
            "alerts.secret",
            &mut a.secret,
            a.secret_file.as_deref(),
            &mut problems,
        );
        problems
    }

    /// Every problem with the values (not the syntax) of this configuration, each section
    /// checked by its own step. Empty means the node can start with it. Call after
    /// [`Config::resolve_secrets`].
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut bad = |key: &str, message: String| p.push(Problem::new(key, message));
        self.node.check(&mut bad);
        self.log.check(&mut bad);
        self.store.check(&mut bad);
        self.outbox.check(&mut bad);
        self.taobao.check(&mut bad);
        self.intake.check(self.taobao.poll_interval, &mut bad);
        self.shipping.check(&mut bad);
        self.waybill.check(&mut bad);
        self.stock.check(self.taobao.poll_interval, &mut bad);
        self.reconcile.check(&mut bad);
        self.mqtt.check(&mut bad);
        self.http.check(&mut bad);
        self.floor.check(&mut bad);
        self.ota.check(&mut bad);
        self.alerts.check(&mut bad);
        p
    }

    /// Makes relative paths absolute against `base` (the config file's directory).
    pub(crate) fn absolutize_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.node.data_dir);
        for p in [
            &mut self.taobao.app_secret_file,
            &mut self.taobao.session_file,
            &mut self.mqtt.password_file,
            &mut self.alerts.url_file,
            &mut self.alerts.secret_file,
            &mut self.mqtt.ca_file,
            &mut self.mqtt.cert_file,
            &mut self.mqtt.key_file,
            &mut self.floor.mosquitto_dir,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
    }
}

/// What the OTA launcher needs from the config file: `node.data_dir` and the `[ota]` trial
/// settings, read leniently (with their `WMS_NODE__…` overrides). The launcher is the
/// package's binary and may be older than the build it starts, whose config keys it may not
/// know, so nothing else in the file is looked at, and anything unreadable falls back to the
/// default with a warning: the build that runs reports the real problems.
pub fn launch_options(path: &Path) -> (crate::ota::launch::LaunchOptions, Vec<String>) {
    let mut warnings = Vec::new();
    let defaults = Config::default();
    let table = match std::fs::read_to_string(path) {
        Ok(text) => match text.parse::<toml::Table>() {
            Ok(t) => t,
            Err(e) => {
                warnings.push(format!(
                    "{}: not TOML ({e}); using defaults",
                    path.display()
                ));
                toml::Table::new()
            }
        },
        Err(e) => {
            warnings.push(format!(
                "cannot read {}: {e}; using defaults",
                path.display()
            ));
            toml::Table::new()
        }
    };
    let value = |section: &str, key: &str| -> Option<String> {
        let var = format!(
            "{ENV_PREFIX}{}__{}",
            section.to_ascii_uppercase(),
            key.to_ascii_uppercase()
        );
        if let Some(v) = std::env::var_os(&var) {
            return Some(v.to_string_lossy().into_owned());
        }
        match table.get(section)?.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            other => Some(other.to_string()),
        }
    };
    let mut data_dir = value("node", "data_dir")
        .map(PathBuf::from)
        .unwrap_or(defaults.node.data_dir);
    if data_dir.is_relative()
        && let Some(base) = path.parent()
    {
        data_dir = base.join(data_dir);
    }
    // Out of bounds is as unusable as unreadable: the launcher adds to the gate's time and
    // must not overflow on a value `check-config` would refuse.
    let in_bounds = |key: &str, v: bounds::Num| bounds::of(key).is_some_and(|b| b.accepts(v));
    let gate_timeout = match value("ota", "gate_timeout") {
        Some(v) => match humantime::parse_duration(&v) {
            Ok(d) if in_bounds("ota.gate_timeout", bounds::Num::Time(d)) => d,
            Ok(_) => {
                warnings.push(format!(
                    "ota.gate_timeout `{v}` is out of range; using the default"
                ));
                defaults.ota.gate_timeout
            }
            Err(e) => {
                warnings.push(format!("ota.gate_timeout `{v}`: {e}; using the default"));
                defaults.ota.gate_timeout
            }
        },
        None => defaults.ota.gate_timeout,
    };
    let trial_attempts = match value("ota", "trial_attempts") {
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| in_bounds("ota.trial_attempts", bounds::Num::Int(u64::from(*n))))
            .unwrap_or_else(|| {
                let range = bounds::of("ota.trial_attempts").map(bounds::Bound::range);
                warnings.push(format!(
                    "ota.trial_attempts `{v}` is not a number {}; using the default",
                    range.unwrap_or_default()
                ));
                defaults.ota.trial_attempts
            }),
        None => defaults.ota.trial_attempts,
    };
    (
        crate::ota::launch::LaunchOptions {
            store_path: data_dir.join(crate::store::FILE),
            data_dir,
            gate_timeout,
            trial_attempts,
        },
        warnings,
    )
}

/// Fills `secret` from `file`, or reports why it cannot.
fn resolve_secret(
    key: &str,
    secret: &mut Option<Secret>,
    file: Option<&Path>,
    problems: &mut Vec<Problem>,
) {
    let Some(file) = file else { return };
    let file_key = format!("{key}_file");
    if secret.is_some() {
        problems.push(Problem::new(
            &file_key,
            format!("{key} and {file_key} are both set: keep one"),
        ));
        return;
    }
    match std::fs::read_to_string(file) {
        Ok(mut value) => {
            // A trailing newline is what every editor and `echo` leave; nothing else is trimmed
            // because a secret may legitimately contain spaces.
            if value.ends_with('\n') {
                value.pop();
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            if value.is_empty() {
                problems.push(Problem::new(
                    &file_key,
                    format!("{} is empty", file.display()),
                ));
            } else {
                *secret = Some(Secret::new(value));
            }
        }
        Err(e) => problems.push(Problem::new(
            &file_key,
            format!("cannot read {}: {e}", file.display()),
        )),
    }
}

impl NodeConfig {
    /// `[node]`: the box names itself with MQTT topic segments and has a data directory.
    fn check(&self, bad: &mut dyn FnMut(&str, String)) {
        if self.id.trim().is_empty() {
            bad(
                "node.id",
                "is required: a name unique to this box, e.g. \"wh1-gw1\"".into(),
            );
        } else if let Err(e) = topic_segment(&self.id) {
            bad("node.id", e);
        }
        if let Err(e) = topic_segment(&self.site) {
            bad("node.site", e);
        }
        if self.data_dir.as_os_str().is_empty() {
            bad(
                "node.data_dir",
                "is empty: name a writable directory".into(),
            );
        }
        if let Err(e) = crate::status::time::LocalTime::parse(&self.timezone) {
            bad("node.timezone", e);
        }
    }
}

impl LogConfig {
    /// `[log]`: the level is a filter `tracing` understands.
    fn check(&self, bad: &mut dyn FnMut(&str, String)) {
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.level) {
            bad(
                "log.level",
                format!(
                    "`{}` is not a log filter ({e}); write e.g. \"info\" or \"warn,wms_node=debug\"",
                    self.level
                ),
            );
        }
    }
}

impl StoreConfig {
    /// `[store]`: sizes, the cap's alert thresholds, group commit.
    fn check(&self, bad: &mut dyn FnMut(&str, String)) {
        use bounds::{Num, check, count};
        let s = self;
        check(bad, "store.cache_size", Num::Bytes(s.cache_size.bytes()));
        check(bad, "store.max_bytes", Num::Bytes(s.max_bytes.bytes()));
        if let Some(t) = s.cap_alert_thresholds.iter().find(|t| {
            bounds::of("store.cap_alert_thresholds").is_some_and(|b| !b.accepts(Num::Float(**t)))
        }) {
            check(bad, "store.cap_alert_thresholds", Num::Float(*t));
        } else if s.cap_alert_thresholds.windows(2).any(|w| w[0] >= w[1]) {
            bad(
                "store.cap_alert_thresholds",
                "thresholds must be in ascending order, e.g. [0.8, 0.95]".into(),
            );
        }
        check(
            bad,
            "store.group_commit_max_wait",
            Num::Time(s.group_commit_max_wait),
        );
        check(
            bad,
            "store.group_commit_max_batch",
            count(s.group_commit_max_batch),
        );
    }
}

impl OutboxConfig {
    /// `[outbox]`: concurrency, rate, backoff, shutdown grace.
    fn check(&self, bad: &mut dyn FnMut(&str, String)) {
        use bounds::{Num, check, count};
        let o = self;
        check(bad, "outbox.concurrency", count(o.concurrency));
        check(bad, "outbox.rate_per_second", Num::Float(o.rate_per_second));
        check(bad, "outbox.burst", Num::Int(u64::from(o.burst)));
        check(bad, "outbox.backoff_initial", Num::Time(o.backoff_initial));
        check(bad, "outbox.backoff_max", Num::Time(o.backoff_max));
        if o.backoff_max < o.backoff_initial {
            bad(
                "outbox.backoff_max",
                "must not be shorter than outbox.backoff_initial".into(),
            );
        }
        check(bad, "outbox.shutdown_grace", Num::Time(o.shutdown_grace));
    }
}

impl HttpConfig {
    /// `[http]`: the limits that keep slow or many clients from holding the server.
    fn check(&self, bad: &mut dyn FnMut(&str, String)) {
        use bounds::{Num, check, count};
        check(
            bad,
            "http.header_read_timeout",
            Num::Time(self.header_read_timeout),
        );
        check(bad, "http.request_timeout", Num::Time(self.request_timeout));
        check(bad, "http.idle_timeout", Num::Time(self.idle_timeout));
        check(bad, "http.max_connections", count(self.max_connections));
    }
}

impl TaobaoConfig {
    /// `[taobao]`: URLs, the app's key and secret, timings.
    fn check(&self, bad: &mut dyn FnMut(&str, String)) {
        let t = self;
        if let Err(e) = http_url(&t.endpoint) {
            bad("taobao.endpoint", e);
        }
        if let Err(e) = http_url(&t.oauth_url) {
            bad("taobao.oauth_url", e);
        }
        if let Some(uri) = &t.redirect_uri
            && let Err(e) = http_url(uri)
        {
            bad("taobao.redirect_uri", e);
        }
        if t.app_key.trim().is_empty() {
            bad(
                "taobao.app_key",
                "is required: the app key from the Taobao Open Platform console".into(),
            );
        } else if !t.app_key.chars().all(|c| c.is_ascii_alphanumeric()) {
            bad(
                "taobao.app_key",
                format!(
                    "`{}` is not an app key (letters and digits only)",
                    t.app_key
                ),
            );
        }
        match &t.app_secret {
            None if t.app_secret_file.is_none() => bad(
                "taobao.app_secret",
                "is required: set taobao.app_secret_file (recommended), taobao.app_secret \
                 or the WMS_NODE__TAOBAO__APP_SECRET environment variable"
                    .into(),
            ),
            Some(s) if s.is_empty() => bad("taobao.app_secret", "is empty".into()),
            _ => {}
        }
        if matches!(&t.session, Some(s) if s.is_empty()) {
            bad("taobao.session", "is empty".into());
        }
        use bounds::{Num, check};
        check(bad, "taobao.poll_interval", Num::Time(t.poll_interval));
        check(bad, "taobao.connect_timeout", Num::Time(t.connect_timeout));
        check(bad, "taobao.request_timeout", Num::Time(t.request_timeout));
        check(
            bad,
            "taobao.daily_call_budget",
            Num::Int(t.daily_call_budget),
        );
        if t.request_timeout < t.connect_timeout {
            bad(
                "taobao.request_timeout",
                "must not be shorter than taobao.connect_timeout".into(),
            );
        }
    }
}

impl IntakeConfig {
    /// `[intake]`: windows, paging, re-scans and the hold rules. `poll_interval` is
    /// `taobao.poll_interval` (the lag alert must leave room for two polls).
    fn check(&self, poll_interval: Duration, bad: &mut dyn FnMut(&str, String)) {
        use bounds::{Num, check, count};
        let i = self;
        check(bad, "intake.lookback", Num::Time(i.lookback));
        check(bad, "intake.overlap", Num::Time(i.overlap));
        check(bad, "intake.error_overlap", Num::Time(i.error_overlap));
        if i.error_overlap < i.overlap {
            bad(
                "intake.error_overlap",
                "must not be shorter than intake.overlap".into(),
            );
        }
        check(bad, "intake.max_window", Num::Time(i.max_window));
        check(bad, "intake.page_size", Num::Int(u64::from(i.page_size)));
        check(bad, "intake.rescan_every", Num::Time(i.rescan_every));
        check(
            bad,
            "intake.rescan_days",
            Num::Int(u64::from(i.rescan_days)),
        );
        check(bad, "intake.refresh_after", Num::Time(i.refresh_after));
        check(bad, "intake.lag_alert", Num::Time(i.lag_alert));
        // (`poll_interval` may itself be out of its range here, reported by [taobao].)
        if i.lag_alert < poll_interval.saturating_mul(2) {
            bad(
                "intake.lag_alert",
                "must not be shorter than twice taobao.poll_interval".into(),
            );
        }
        check(
            bad,
            "intake.fullinfo_concurrency",
            count(i.fullinfo_concurrency),
        );
        if let Some(f) = i.review_flags.iter().find(|f| {
            bounds::of("intake.review_flags").is_some_and(|b| !b.accepts(Num::Int(u64::from(**f))))
        }) {
            check(bad, "intake.review_flags", Num::Int(u64::from(*f)));
        }
        if let Some(t) = i.trade_types.iter().find(|t| {
            t.trim().is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }) {
            bad(
                "intake.trade_types",
                format!("`{t}` is not a trade type (letters, digits and `_`, e.g. \"fixed\")"),
            );
        }
        check(bad, "intake.default_promise", Num::Time(i.default_promise));
    }
}

impl AlertsConfig {
    /// `[alerts]`: the webhook, its URL and secret, the limits. Never echoes the URL or the
    /// secret.
    fn check(&self, bad: &mut dyn FnMut(&str, String)) {
        use bounds::{Num, check, count};
        let a = self;
        if a.webhook != AlertWebhook::None {
            match &a.url {
                None => bad(
                    "alerts.url",
                    "is required with alerts.webhook: set alerts.url_file (recommended), \
                     alerts.url or the WMS_NODE__ALERTS__URL environment variable"
                        .into(),
                ),
                Some(url) => {
                    let (token, example) = match a.webhook {
                        AlertWebhook::DingTalk => (
                            Some("access_token"),
                            "https://oapi.dingtalk.com/robot/send?access_token=…",
                        ),
                        AlertWebhook::WeCom => (
                            Some("key"),
                            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…",
                        ),
                        _ => (None, "https://alerts.example.com/hook"),
                    };
                    match reqwest::Url::parse(url.expose()) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                            if let Some(t) = token
                                && !u.query_pairs().any(|(k, v)| k == t && !v.is_empty())
                            {
                                bad(
                                    "alerts.url",
                                    format!(
                                        "has no `{t}=` parameter: copy the robot's whole \
                                         webhook URL ({example})"
                                    ),
                                );
                            }
                        }
                        // The value is never echoed: it holds the robot's token.
                        _ => bad(
                            "alerts.url",
                            format!("is not an http:// or https:// URL (e.g. {example})"),
                        ),
                    }
                }
            }
        }
        if a.webhook == AlertWebhook::WeCom && a.secret.is_some() {
            bad(
                "alerts.secret",
                "WeCom robots have no signing secret (the URL's key is the credential): \
                 remove alerts.secret"
                    .into(),
            );
        }
        if matches!(&a.secret, Some(s) if s.is_empty()) {
            bad("alerts.secret", "is empty".into());
        }
        if a.severities.is_empty() {
            bad(
                "alerts.severities",
                "must name at least one of \"info\", \"warning\", \"critical\"".into(),
            );
        }
        check(bad, "alerts.min_interval", Num::Time(a.min_interval));
        let robot = matches!(a.webhook, AlertWebhook::DingTalk | AlertWebhook::WeCom);
        check(bad, "alerts.per_minute", count(a.per_minute as usize));
        if robot && a.per_minute > 20 {
            bad(
                "alerts.per_minute",
                "must be at most 20 for a DingTalk or WeCom robot: they take 20 messages a \
                 minute and block the sender for 10 minutes beyond that"
                    .into(),
            );
        }
        check(bad, "alerts.history", count(a.history));
        check(bad, "alerts.timeout", Num::Time(a.timeout));
    }
}

impl OtaConfig {
    /// `[ota]`: the trusted keys and the trial's limits.
    fn check(&self, bad: &mut dyn FnMut(&str, String)) {
        for (i, k) in self.public_keys.iter().enumerate() {
            if let Err(e) = crate::ota::PublicKey::parse(k) {
                bad(
                    "ota.public_keys",
                    format!("key {} is not an ed25519 public key: {e}", i + 1),
                );
            }
        }
        use bounds::{Num, check};
        check(bad, "ota.gate_timeout", Num::Time(self.gate_timeout));
        check(
            bad,
            "ota.trial_attempts",
            Num::Int(u64::from(self.trial_attempts)),
        );
        check(bad, "ota.stall_timeout", Num::Time(self.stall_timeout));
        check(
            bad,
            "ota.download_retries",
            Num::Int(u64::from(self.download_retries)),
        );
    }
}

impl MqttConfig {
    /// `[mqtt]`: the broker URL and its credentials.
    fn check(&self, bad: &mut dyn FnMut(&str, String)) {
        let m = self;
        if let Err(e) = m.broker() {
            bad("mqtt.broker", e);
        }
        if m.password.is_some() && m.username.is_none() {
            bad(
                "mqtt.password",
                "is set but mqtt.username is not: brokers need both".into(),
            );
        }
        if matches!(&m.password, Some(s) if s.is_empty()) {
            bad("mqtt.password", "is empty".into());
        }
        let tls = matches!(m.broker(), Ok(Broker::External { tls: true, .. }));
        for (key, set) in [
            ("mqtt.ca_file", m.ca_file.is_some()),
            ("mqtt.cert_file", m.cert_file.is_some()),
            ("mqtt.key_file", m.key_file.is_some()),
        ] {
            if set && !tls {
                bad(key, "only applies to an mqtts:// broker".into());
            }
        }
        if m.cert_file.is_some() != m.key_file.is_some() {
            bad(
                "mqtt.cert_file",
                "and mqtt.key_file go together: a client certificate needs its key".into(),
            );
        }
        for (key, path) in [
            ("mqtt.ca_file", &m.ca_file),
            ("mqtt.cert_file", &m.cert_file),
            ("mqtt.key_file", &m.key_file),
        ] {
            if let Some(p) = path
                && tls
                && !p.is_file()
            {
                bad(key, format!("{} is not a readable file", p.display()));
            }
        }
        bounds::check(bad, "mqtt.keep_alive", bounds::Num::Time(m.keep_alive));
        bounds::check(
            bad,
            "mqtt.reconnect_min",
            bounds::Num::Time(m.reconnect_min),
        );
        bounds::check(
            bad,
            "mqtt.reconnect_max",
            bounds::Num::Time(m.reconnect_max),
        );
    }
}

impl FloorConfig {
    /// `[floor]`: dedupe retention and payload limit.
    fn check(&self, bad: &mut dyn FnMut(&str, String)) {
        use bounds::{Num, check};
        check(
            bad,
            "floor.dedupe_retention",
            Num::Time(self.dedupe_retention),
        );
        check(
            bad,
            "floor.max_event_bytes",
            Num::Bytes(self.max_event_bytes.bytes()),
        );
        check(bad, "floor.print_timeout", Num::Time(self.print_timeout));
        let mut scanners = std::collections::BTreeSet::new();
        for (i, st) in self.stations.iter().enumerate() {
            let key = format!("floor.stations[{i}]");
            for (field, v) in [("scanner", &st.scanner), ("printer", &st.printer)] {
                if let Err(e) = topic_segment(v) {
                    bad(&format!("{key}.{field}"), format!("{v:?} {e}"));
                }
            }
            if !scanners.insert(st.scanner.as_str()) {
                bad(
                    &format!("{key}.scanner"),
                    format!(
                        "scanner {:?} is in two stations: a scanner packs at one station",
                        st.scanner
                    ),
                );
            }
        }
    }
}

/// Checks a name used as one MQTT topic level, by the floor protocol's own rule
/// (`firmware_bridge::proto::topic::check_segment`), in the config's words.
fn topic_segment(s: &str) -> Result<(), String> {
    use firmware_bridge::proto::topic::{MAX_SEGMENT_LEN, TopicError, check_segment};
    check_segment("it", s).map_err(|e| match e {
        TopicError::Empty(_) | TopicError::TooLong(_) => {
            format!("must be 1 to {MAX_SEGMENT_LEN} bytes")
        }
        TopicError::Character(_) => format!(
            "`{s}` may only contain A-Z, a-z, 0-9, `.`, `_` and `-` (it is part of MQTT topics)"
        ),
        other => other.to_string(),
    })
}

/// Checks an http(s) URL with a host.
fn http_url(s: &str) -> Result<(), String> {
    match reqwest::Url::parse(s) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(format!("`{s}` is not an http:// or https:// URL")),
        Err(e) => Err(format!("`{s}` is not a URL ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Config {
        let mut c = Config::default();
        c.node.id = "gw1".into();
        c.taobao.app_key = "12345678".into();
        c.taobao.app_secret = Some(Secret::new("s3cret"));
        c
    }

    #[test]
    fn the_defaults_plus_identity_are_valid() {
        assert_eq!(minimal().validate(), vec![]);
    }

    #[test]
    fn store_settings_reach_the_store_options() {
        let mut c = minimal();
        c.node.data_dir = "/data".into();
        c.store.quick_repair = false;
        c.store.group_commit_max_batch = 64;
        c.store.cap_policy = CapPolicy::DropOldest;
        let o = c.store_options();
        assert_eq!(
            o.path,
            std::path::Path::new("/data").join(crate::store::FILE)
        );
        assert_eq!(
            o.legacy_path.as_deref(),
            Some(
                std::path::Path::new("/data")
                    .join(crate::store::LEGACY_FILE)
                    .as_path()
            )
        );
        assert!(!o.quick_repair);
        assert_eq!(o.group_commit_max_batch, 64);
        assert_eq!(o.cap_policy, CapPolicy::DropOldest);
        // The defaults agree with the store's own.
        let d = minimal().store_options();
        let s = crate::store::StoreOptions::new(&d.path);
        assert_eq!(
            (
                d.quick_repair,
                d.group_commit_max_batch,
                d.max_bytes,
                d.cache_size
            ),
            (
                s.quick_repair,
                s.group_commit_max_batch,
                s.max_bytes,
                s.cache_size
            )
        );
    }

    #[test]
    fn the_defaults_alone_name_every_missing_required_key() {
        let keys: Vec<String> = Config::default()
            .validate()
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, ["node.id", "taobao.app_key", "taobao.app_secret"]);
    }

    #[test]
    fn taobao_maps_onto_client_and_oauth_options() {
        let t = TaobaoConfig {
            app_key: "12345678".into(),
            app_secret: Some(Secret::new("s")),
            sign_method: SignMethod::Md5,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(9),
            daily_call_budget: 0,
            redirect_uri: Some("https://relay.example/cb".into()),
            ..TaobaoConfig::default()
        };
        let c = t.client_options();
        assert_eq!(c.sign_method, SignMethod::Md5);
        assert_eq!(c.endpoint, t.endpoint);
        assert_eq!(c.app_secret.expose(), "s");
        assert_eq!(
            (c.connect_timeout, c.request_timeout),
            (t.connect_timeout, t.request_timeout)
        );
        assert_eq!(c.daily_call_budget, None);
        let o = t.oauth_options(None);
        assert_eq!(o.redirect_uri, "https://relay.example/cb");
        assert_eq!(
            t.oauth_options(Some("http://127.0.0.1:1/cb".into()))
                .redirect_uri,
            "http://127.0.0.1:1/cb"
        );
        for m in SignMethod::ALL {
            // The config file's names are the wire names.
            let key: Config = toml::from_str(&format!("[taobao]\nsign_method = \"{m}\"")).unwrap();
            assert_eq!(key.taobao.sign_method, m);
        }
    }

    #[test]
    fn node_id_and_site_follow_the_floor_protocols_topic_rule() {
        assert_eq!(topic_segment("wh1-gw.1_a"), Ok(()));
        assert_eq!(topic_segment(&"a".repeat(64)), Ok(()));
        assert_eq!(
            topic_segment(&"a".repeat(65)),
            Err("must be 1 to 64 bytes".into())
        );
        assert_eq!(topic_segment(""), Err("must be 1 to 64 bytes".into()));
        for bad in ["wh/1", "wh+", "#", "wh 1", "仓库"] {
            let e = topic_segment(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains("MQTT topics"), "{bad}: {e}");
            // The node and the bridge agree: what the config refuses, proto refuses.
            assert!(firmware_bridge::proto::topic::check_segment("id", bad).is_err());
        }
    }

    #[test]
    fn validate_lists_every_problem_at_once() {
        let mut c = minimal();
        c.node.site = "a/b".into();
        c.taobao.endpoint = "not a url".into();
        c.store.cap_alert_thresholds = vec![0.9, 0.5];
        c.outbox.shutdown_grace = Duration::from_secs(10);
        c.mqtt.broker = "tcp://x".into();
        let keys: Vec<String> = c.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "node.site",
                "store.cap_alert_thresholds",
                "outbox.shutdown_grace",
                "taobao.endpoint",
                "mqtt.broker"
            ]
        );
    }

    #[test]
    fn broker_urls_parse_with_default_ports() {
        let b = |s: &str| {
            MqttConfig {
                broker: s.into(),
                ..MqttConfig::default()
            }
            .broker()
        };
        assert_eq!(b("embedded"), Ok(Broker::Embedded));
        assert_eq!(
            b("mqtt://broker.lan"),
            Ok(Broker::External {
                host: "broker.lan".into(),
                port: 1883,
                tls: false
            })
        );
        assert_eq!(
            b("mqtts://10.0.0.2:9883"),
            Ok(Broker::External {
                host: "10.0.0.2".into(),
                port: 9883,
                tls: true
            })
        );
        assert_eq!(
            b("mqtt://[::1]:1884"),
            Ok(Broker::External {
                host: "::1".into(),
                port: 1884,
                tls: false
            })
        );
        assert!(b("mqtt://:1883").is_err());
        assert!(b("mqtt://host:99999").is_err());
        assert!(b("http://host").is_err());
    }

    #[test]
    fn the_launcher_reads_only_what_it_needs_and_tolerates_keys_it_does_not_know() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "[node]\ndata_dir = \"state\"\n[ota]\ngate_timeout = \"90s\"\n\
             [floor]\nkey_of_a_newer_release = 1\n",
        )
        .unwrap();
        let (o, warnings) = launch_options(&path);
        assert_eq!(o.data_dir, dir.path().join("state"));
        assert_eq!(
            o.store_path,
            dir.path().join("state").join(crate::store::FILE)
        );
        assert_eq!(o.gate_timeout, Duration::from_secs(90));
        assert_eq!(o.trial_attempts, 3);
        assert!(warnings.is_empty(), "{warnings:?}");
        // Values out of bounds are taken as unreadable: no overflow in the launcher.
        std::fs::write(
            &path,
            "[ota]\ngate_timeout = \"500000000000y\"\ntrial_attempts = 4000000000\n",
        )
        .unwrap();
        let (o, warnings) = launch_options(&path);
        assert_eq!(o.gate_timeout, Duration::from_secs(60));
        assert_eq!(o.trial_attempts, 3);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        // An unreadable file still gives a launcher that starts (with defaults).
        let (o, warnings) = launch_options(&dir.path().join("missing.toml"));
        assert_eq!(o.data_dir, PathBuf::from("/var/lib/wms-node"));
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn ota_keys_are_checked_and_reach_the_options() {
        let mut c = minimal();
        c.ota.public_keys = vec!["AAAA".into()];
        c.ota.trial_attempts = 0;
        let keys: Vec<String> = c.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["ota.public_keys", "ota.trial_attempts"]);
        let (k, _) = crate::ota::verify::SigningKey::generate().unwrap();
        c.ota.public_keys = vec![k.public_key().to_string()];
        assert_eq!(c.ota_options().public_keys.ids(), [k.public_key().key_id()]);
    }

    #[test]
    fn alerts_are_checked_without_echoing_the_url_or_the_secret() {
        let mut c = minimal();
        assert!(c.alerts_options().webhook.is_none());
        c.alerts.webhook = AlertWebhook::DingTalk;
        let keys = |c: &Config| -> Vec<(String, String)> {
            c.validate()
                .into_iter()
                .map(|p| (p.key, p.message))
                .collect()
        };
        assert_eq!(keys(&c)[0].0, "alerts.url");
        c.alerts.url = Some(Secret::new(
            "https://oapi.dingtalk.com/robot/send?x=tok-123",
        ));
        c.alerts.per_minute = 30;
        c.alerts.secret = Some(Secret::new("SECabc"));
        let problems = keys(&c);
        assert_eq!(
            problems.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            ["alerts.url", "alerts.per_minute"]
        );
        assert!(problems[0].1.contains("access_token="), "{problems:?}");
        for (_, m) in &problems {
            assert!(!m.contains("tok-123") && !m.contains("SECabc"), "{m}");
        }
        c.alerts.url = Some(Secret::new("not a url tok-123"));
        assert!(!keys(&c)[0].1.contains("tok-123"));
        c.alerts.url = Some(Secret::new(
            "https://oapi.dingtalk.com/robot/send?access_token=tok-123",
        ));
        c.alerts.per_minute = 20;
        assert_eq!(keys(&c), vec![]);
        let o = c.alerts_options();
        let hook = o.webhook.unwrap();
        assert_eq!(hook.secret.unwrap().expose(), "SECabc");
        assert_eq!(o.node_id, "gw1");
        // WeCom robots have no secret; a JSON endpoint may take 60 a minute.
        c.alerts.webhook = AlertWebhook::WeCom;
        c.alerts.url = Some(Secret::new(
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
        ));
        assert_eq!(keys(&c)[0].0, "alerts.secret");
        c.alerts.webhook = AlertWebhook::Json;
        c.alerts.url = Some(Secret::new("http://127.0.0.1:8080/hook"));
        c.alerts.per_minute = 60;
        assert_eq!(keys(&c), vec![]);
        let out = c.to_redacted_toml();
        assert!(!out.contains("SECabc") && !out.contains("8080"), "{out}");
        let parsed: Config = toml::from_str(
            "[alerts]\nwebhook = \"wecom\"\nseverities = [\"critical\"]\nmin_interval = \"1m\"",
        )
        .unwrap();
        assert_eq!(parsed.alerts.webhook, AlertWebhook::WeCom);
        assert_eq!(parsed.alerts.severities, [Severity::Critical]);
    }

    #[test]
    fn redacted_toml_never_contains_secrets() {
        let mut c = minimal();
        c.taobao.session = Some(Secret::new("session-value"));
        c.mqtt.username = Some("node".into());
        c.mqtt.password = Some(Secret::new("mqtt-pass"));
        let out = c.to_redacted_toml();
        for secret in ["s3cret", "session-value", "mqtt-pass"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(out.contains("app_secret = \"<redacted>\""), "{out}");
    }
}
