//! `wms-bridge` configuration: a TOML file (`config/bridge.example.toml` documents every key).
//!
//! Parsing is strict (unknown keys are errors, so a typo cannot silently fall back to a
//! default) and [`Config::validate`] reports every problem at once, each naming its key, e.g.
//! `device[1] "pr-01": baud 0 is not a serial speed`. Secrets (the MQTT password) never appear
//! in `Debug` output or errors.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::proto::topic::check_segment;
use crate::proto::{DeviceClass, Mode, PrintFormat};

/// The example configuration, compiled in (`wms-bridge print-config`).
pub const EXAMPLE: &str = include_str!("../../../config/bridge.example.toml");

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[bridge]`: site, spool, heartbeat.
    pub bridge: BridgeSection,
    /// `[mqtt]`: broker and connection settings.
    pub mqtt: MqttSection,
    /// `[[device]]`: the serial devices to run.
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceConfig>,
}

/// `[bridge]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSection {
    /// Warehouse site id: the `{site}` segment of every topic.
    pub site: String,
    /// Directory for the durable spools, one file per device (created if missing).
    pub spool_dir: PathBuf,
    /// Most events kept per device while the broker is unreachable.
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
    /// Heartbeat interval per device; `"0s"` turns heartbeats off.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat: Duration,
}

/// `[mqtt]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// `mqtt://host[:port]` (port 1883 by default).
    pub broker: String,
    /// User name for every device (a device may override it).
    #[serde(default)]
    pub username: Option<String>,
    /// Password (prefer `password_file`).
    #[serde(default)]
    pub password: Option<String>,
    /// A file whose first line is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// MQTT keep-alive.
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Shortest reconnect delay (the first retry waits up to this long).
    #[serde(default = "default_reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Client ids are `{client_id_prefix}-{site}-{class}-{id}`.
    #[serde(default = "default_client_prefix")]
    pub client_id_prefix: String,
    /// Largest MQTT packet accepted or sent, bytes (print jobs with graphics are large).
    #[serde(default = "default_max_packet")]
    pub max_packet_bytes: usize,
}

impl fmt::Debug for MqttSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttSection")
            .field("broker", &self.broker)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("keep_alive", &self.keep_alive)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("client_id_prefix", &self.client_id_prefix)
            .field("max_packet_bytes", &self.max_packet_bytes)
            .finish()
    }
}

/// How a device talks on its serial port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// A stock device: a scanner sending lines, a printer taking ZPL/TSPL (the drivers).
    #[default]
    Line,
    /// A microcontroller speaking the floor protocol itself: postcard messages in COBS frames
    /// with CRC, sequence numbers and acknowledgements ([`crate::frame`]).
    Frame,
}

/// One `[[device]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Device id, unique per class on the site: the `{id}` topic segment.
    pub id: String,
    /// `scanner` or `printer`.
    pub class: DeviceClass,
    /// Serial device path, e.g. `/dev/ttyUSB0` or a stable `/dev/serial/by-id/…` link.
    pub port: PathBuf,
    /// Serial speed (8N1, no flow control).
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// `line` (a stock scanner or printer, default) or `frame` (a microcontroller speaking the
    /// floor protocol in frames).
    #[serde(default)]
    pub link: LinkKind,
    /// First wait before reopening a port that failed or vanished.
    #[serde(default = "default_reopen_min", with = "humantime_serde")]
    pub reopen_min: Duration,
    /// Longest wait between reopen attempts.
    #[serde(default = "default_reopen_max", with = "humantime_serde")]
    pub reopen_max: Duration,
    /// Per-device MQTT user name (overrides `[mqtt] username`).
    #[serde(default)]
    pub username: Option<String>,
    /// Per-device MQTT password file (overrides `[mqtt]`'s password).
    #[serde(default)]
    pub password_file: Option<PathBuf>,

    // --- scanners ---
    /// Scanner: the mode its scans carry (`pick`, `pack`, `ship`, `receive`, `count`).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Scanner: bytes that end a read (TOML escapes, e.g. `"\r\n"`).
    #[serde(default)]
    pub suffix: Option<String>,
    /// Scanner: whether it sends AIM symbology identifiers.
    #[serde(default)]
    pub aim_ids: Option<bool>,
    /// Scanner: bytes sent to start a read (host trigger).
    #[serde(default)]
    pub trigger_on: Option<String>,
    /// Scanner: bytes sent to stop a read.
    #[serde(default)]
    pub trigger_off: Option<String>,
    /// Scanner: bytes sent for a good feedback (the scanner's beep command).
    #[serde(default)]
    pub good_command: Option<String>,
    /// Scanner: bytes sent for a bad feedback.
    #[serde(default)]
    pub bad_command: Option<String>,
    /// Scanner: a scan of `{mode_prefix}{mode}` switches the station's mode; empty = off.
    #[serde(default)]
    pub mode_prefix: Option<String>,

    // --- printers ---
    /// Printer: `zpl` or `tspl`.
    #[serde(default)]
    pub language: Option<PrintFormat>,
    /// Printer: ask for the status before every job and refuse the job on a fault.
    #[serde(default)]
    pub status_check: Option<bool>,
    /// Printer: how long to wait for a status answer.
    #[serde(default, with = "humantime_serde::option")]
    pub status_timeout: Option<Duration>,
}

fn default_max_queued() -> usize {
    10_000
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(60)
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(15)
}
fn default_reconnect_min() -> Duration {
    Duration::from_millis(500)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}
fn default_client_prefix() -> String {
    "wms-bridge".to_owned()
}
fn default_max_packet() -> usize {
    1024 * 1024
}
fn default_baud() -> u32 {
    9600
}
fn default_reopen_min() -> Duration {
    Duration::from_millis(500)
}
fn default_reopen_max() -> Duration {
    Duration::from_secs(10)
}

/// Why the configuration cannot be used. Never retryable: fix the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message (with line and column).
        message: String,
    },
    /// The values break the rules; every problem is listed.
    #[error("config {path} has {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// One line per problem, each naming its key.
        problems: Vec<String>,
    },
}

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Parses `mqtt://host[:port]` (also `tcp://`).
pub fn parse_broker(url: &str) -> Result<Broker, String> {
    let rest = if let Some(r) = url.strip_prefix("mqtt://") {
        r
    } else if let Some(r) = url.strip_prefix("tcp://") {
        r
    } else if url.starts_with("mqtts://") || url.starts_with("ssl://") {
        return Err(format!(
            "broker {url:?}: TLS is not supported by wms-bridge; use mqtt:// on the LAN or a local TLS tunnel"
        ));
    } else {
        return Err(format!("broker {url:?} must start with mqtt://"));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(format!("broker {url:?} must be mqtt://host[:port]"));
    }
    // [v6]:port, host:port or host
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("broker {url:?}: unclosed '['"))?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(format!("broker {url:?} must be mqtt://host[:port]")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("broker {url:?} has no host"));
    }
    let port = match port {
        None => 1883,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("broker {url:?}: port {p:?} is not a TCP port"))?,
    };
    Ok(Broker {
        host: host.to_owned(),
        port,
    })
}

/// Turns a TOML string into raw bytes: each character must be U+0000–U+00FF (one byte).
pub fn string_bytes(s: &str) -> Result<Vec<u8>, String> {
    s.chars()
        .map(|c| {
            u8::try_from(u32::from(c)).map_err(|_| format!("character {c:?} is not a single byte"))
        })
        .collect()
}

impl Config {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// Every problem with the values, each naming its key; empty when the config is usable.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = check_segment("site", &self.bridge.site) {
            p.push(format!("bridge.site {:?}: {e}", self.bridge.site));
        }
        if self.bridge.spool_dir.as_os_str().is_empty() {
            p.push("bridge.spool_dir is empty".to_owned());
        }
        if self.bridge.max_queued == 0 {
            p.push("bridge.max_queued must be at least 1".to_owned());
        }
        if let Err(e) = parse_broker(&self.mqtt.broker) {
            p.push(format!("mqtt.broker: {e}"));
        }
        if self.mqtt.password.is_some() && self.mqtt.password_file.is_some() {
            p.push("mqtt: set password or password_file, not both".to_owned());
        }
        if self.mqtt.keep_alive < Duration::from_secs(5) {
            p.push("mqtt.keep_alive must be at least 5s".to_owned());
        }
        if self.mqtt.reconnect_min.is_zero() || self.mqtt.reconnect_min > self.mqtt.reconnect_max {
            p.push("mqtt.reconnect_min must be above 0 and at most reconnect_max".to_owned());
        }
        if self.mqtt.max_packet_bytes < 4096 {
            p.push("mqtt.max_packet_bytes must be at least 4096".to_owned());
        }
        if let Err(e) = check_segment("mqtt.client_id_prefix", &self.mqtt.client_id_prefix) {
            p.push(format!("{e}"));
        }
        if self.devices.is_empty() {
            p.push("no [[device]] configured".to_owned());
        }
        let mut seen = HashSet::new();
        let mut ports = HashSet::new();
        for (i, d) in self.devices.iter().enumerate() {
            let at = format!("device[{i}] {:?}", d.id);
            if let Err(e) = check_segment("id", &d.id) {
                p.push(format!("{at}: {e}"));
            }
            if !seen.insert((d.class, d.id.clone())) {
                p.push(format!("{at}: another {} has the same id", d.class));
            }
            if !ports.insert(d.port.clone()) {
                p.push(format!(
                    "{at}: port {} is used by another device",
                    d.port.display()
                ));
            }
            if d.port.as_os_str().is_empty() {
                p.push(format!("{at}: port is empty"));
            }
            if d.baud == 0 || d.baud > 4_000_000 {
                p.push(format!("{at}: baud {} is not a serial speed", d.baud));
            }
            if d.reopen_min.is_zero() || d.reopen_min > d.reopen_max {
                p.push(format!(
                    "{at}: reopen_min must be above 0 and at most reopen_max"
                ));
            }
            let scanner_keys = [
                ("mode", d.mode.is_some()),
                ("suffix", d.suffix.is_some()),
                ("aim_ids", d.aim_ids.is_some()),
                ("trigger_on", d.trigger_on.is_some()),
                ("trigger_off", d.trigger_off.is_some()),
                ("good_command", d.good_command.is_some()),
                ("bad_command", d.bad_command.is_some()),
                ("mode_prefix", d.mode_prefix.is_some()),
            ];
            let printer_keys = [
                ("language", d.language.is_some()),
                ("status_check", d.status_check.is_some()),
                ("status_timeout", d.status_timeout.is_some()),
            ];
            if d.link == LinkKind::Frame {
                for (k, set) in scanner_keys.iter().chain(printer_keys.iter()) {
                    if *set {
                        p.push(format!(
                            "{at}: key {k} does not apply to link = \"frame\" (the device speaks the protocol itself)"
                        ));
                    }
                }
                if d.class == DeviceClass::Gateway {
                    p.push(format!("{at}: class must be scanner or printer"));
                }
                continue;
            }
            match d.class {
                DeviceClass::Scanner => {
                    for (k, set) in printer_keys {
                        if set {
                            p.push(format!("{at}: key {k} only applies to printers"));
                        }
                    }
                    let suffix = d.suffix.as_deref().unwrap_or("\r");
                    match string_bytes(suffix) {
                        Ok(b) if b.is_empty() || b.len() > 4 => {
                            p.push(format!("{at}: suffix must be 1 to 4 bytes"));
                        }
                        Ok(_) => {}
                        Err(e) => p.push(format!("{at}: suffix: {e}")),
                    }
                    for (k, v) in [
                        ("trigger_on", &d.trigger_on),
                        ("trigger_off", &d.trigger_off),
                        ("good_command", &d.good_command),
                        ("bad_command", &d.bad_command),
                    ] {
                        if let Some(v) = v {
                            match string_bytes(v) {
                                Ok(b) if b.len() > 32 => {
                                    p.push(format!("{at}: {k} is longer than 32 bytes"))
                                }
                                Ok(_) => {}
                                Err(e) => p.push(format!("{at}: {k}: {e}")),
                            }
                        }
                    }
                }
                DeviceClass::Printer => {
                    for (k, set) in scanner_keys {
                        if set {
                            p.push(format!("{at}: key {k} only applies to scanners"));
                        }
                    }
                    if !matches!(d.language, Some(PrintFormat::Zpl | PrintFormat::Tspl)) {
                        p.push(format!(
                            "{at}: printers need language = \"zpl\" or \"tspl\" (cainiao is a \
                             cloud-print document, not a printer language)"
                        ));
                    }
                    if let Some(t) = d.status_timeout
                        && (t < Duration::from_millis(50) || t > Duration::from_secs(60))
                    {
                        p.push(format!("{at}: status_timeout must be between 50ms and 60s"));
                    }
                }
                DeviceClass::Gateway => {
                    p.push(format!("{at}: class must be scanner or printer"));
                }
            }
        }
        p
    }

    /// The MQTT credentials of a device: its own user name and password file, else
    /// `[mqtt]`'s. `None` when no user name is configured.
    pub fn credentials(
        &self,
        device: &DeviceConfig,
    ) -> Result<Option<(String, String)>, ConfigError> {
        let Some(user) = device
            .username
            .clone()
            .or_else(|| self.mqtt.username.clone())
        else {
            return Ok(None);
        };
        let file = device
            .password_file
            .as_ref()
            .or(self.mqtt.password_file.as_ref());
        let password = match file {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
                    path: file.clone(),
                    source,
                })?;
                text.lines().next().unwrap_or("").to_owned()
            }
            None => self.mqtt.password.clone().unwrap_or_default(),
        };
        Ok(Some((user, password)))
    }
}

impl DeviceConfig {
    /// The scanner driver settings this device asks for (defaults where keys are absent).
    /// Pin patterns are silent: a Linux serial scanner beeps by host command, if at all.
    pub fn scanner_config(&self) -> crate::scanner::ScannerConfig {
        use crate::scanner::{BeepPattern, ScannerConfig, bytes};
        let mut c = ScannerConfig::default();
        let b = |s: &Option<String>, default: &crate::scanner::Bytes| match s {
            Some(s) => bytes(&string_bytes(s).unwrap_or_default()),
            None => default.clone(),
        };
        c.suffix = b(&self.suffix, &c.suffix);
        c.trigger_on = b(&self.trigger_on, &c.trigger_on);
        c.trigger_off = b(&self.trigger_off, &c.trigger_off);
        c.good_command = b(&self.good_command, &c.good_command);
        c.bad_command = b(&self.bad_command, &c.bad_command);
        c.aim_ids = self.aim_ids.unwrap_or(true);
        let silent = BeepPattern {
            pulses: 0,
            on_ms: 0,
            off_ms: 0,
        };
        c.good = silent;
        c.bad = silent;
        c
    }

    /// The printer driver settings this device asks for.
    pub fn printer_config(&self) -> crate::printer::PrinterConfig {
        crate::printer::PrinterConfig {
            language: self.language.unwrap_or(PrintFormat::Zpl),
            status_timeout_ms: self
                .status_timeout
                .map_or(2000, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
            poll_ms: 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let c = parse(EXAMPLE).unwrap();
        assert!(c.devices.len() >= 2);
        assert_eq!(parse_broker(&c.mqtt.broker).unwrap().port, 1883);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
            [bridge]
            site = "sh/01"
            spool_dir = "/tmp/x"
            max_queued = 0
            [mqtt]
            broker = "http://x"
            password = "p"
            password_file = "/f"
            [[device]]
            id = "a"
            class = "scanner"
            port = "/dev/ttyS0"
            baud = 0
            language = "zpl"
            suffix = ""
            [[device]]
            id = "a"
            class = "printer"
            port = "/dev/ttyS0"
            mode = "pick"
            [[device]]
            id = "waybills"
            class = "printer"
            port = "/dev/ttyS2"
            language = "cainiao"
        "#;
        let Err(ConfigError::Invalid { problems, .. }) = parse(text) else {
            panic!("accepted")
        };
        let all = problems.join("\n");
        for needle in [
            "bridge.site",
            "max_queued",
            "mqtt.broker",
            "not both",
            "baud 0",
            "key language only applies to printers",
            "suffix must be 1 to 4 bytes",
            "port /dev/ttyS0 is used by another device",
            "key mode only applies to scanners",
            "printers need language",
            "cainiao is a cloud-print document, not a printer language",
        ] {
            assert!(all.contains(needle), "{needle:?} missing from:\n{all}");
        }
    }

    #[test]
    fn unknown_keys_are_errors_with_a_position() {
        let text = "[bridge]\nsite = \"s\"\nspool_dir = \"/x\"\nsitee = 1\n[mqtt]\nbroker = \"mqtt://h\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("sitee"), "{err}");
    }

    #[test]
    fn broker_urls_parse_with_and_without_port() {
        assert_eq!(
            parse_broker("mqtt://10.0.0.5:1884").unwrap(),
            Broker {
                host: "10.0.0.5".into(),
                port: 1884
            }
        );
        assert_eq!(parse_broker("tcp://broker").unwrap().port, 1883);
        assert_eq!(parse_broker("mqtt://[::1]:2000").unwrap().host, "::1");
        assert!(parse_broker("mqtts://b").unwrap_err().contains("TLS"));
        assert!(parse_broker("mqtt://b:0").is_err());
        assert!(parse_broker("mqtt://b:x").is_err());
        assert!(parse_broker("mqtt://u:p@b").is_err());
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let mut c = parse(EXAMPLE).unwrap();
        c.mqtt.password = Some("hunter2".into());
        c.mqtt.password_file = None;
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn framed_devices_take_no_driver_keys() {
        let text = r#"
            [bridge]
            site = "s"
            spool_dir = "/x"
            [mqtt]
            broker = "mqtt://h"
            [[device]]
            id = "mcu-1"
            class = "scanner"
            link = "frame"
            port = "/dev/ttyACM0"
            suffix = "\r"
        "#;
        let Err(ConfigError::Invalid { problems, .. }) = parse(text) else {
            panic!("accepted")
        };
        assert!(
            problems[0].contains("suffix does not apply to link = \"frame\""),
            "{problems:?}"
        );
        let ok = text.replace("suffix = \"\\r\"", "");
        assert_eq!(parse(&ok).unwrap().devices[0].link, LinkKind::Frame);
    }

    #[test]
    fn toml_strings_become_bytes_only_when_each_char_is_one_byte() {
        assert_eq!(string_bytes("\u{16}T\r").unwrap(), [0x16, b'T', b'\r']);
        assert!(string_bytes("扫").is_err());
    }
}
