//! The floor as operators see it: the status page's "Floor" section (the broker, the node's
//! own MQTT session, devices online by class and the ones that are not), from the presence
//! map and the device registry at the instant of the request.

use super::devices;
use super::presence::Presence;
use crate::status::i18n::{Lang, Msg};
use crate::status::{At, Observation, StatusSection, StatusSource};
use crate::store::Store;
use firmware_bridge::proto::DeviceClass;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many offline devices are named before "and N more".
const NAMED: usize = 5;

/// The "Floor" section.
pub struct FloorSection {
    store: Store,
    presence: Presence,
    connected: Arc<AtomicBool>,
    broker: String,
}

impl FloorSection {
    /// The section; `broker` says where the broker is (`embedded on 0.0.0.0:1883`, or the
    /// external broker's host and port, never credentials).
    pub fn new(
        store: Store,
        presence: Presence,
        connected: Arc<AtomicBool>,
        broker: String,
    ) -> Self {
        FloorSection {
            store,
            presence,
            connected,
            broker,
        }
    }
}

/// One registered device as the section sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Device {
    class: &'static str,
    id: String,
    online: bool,
    last_seen_ms: Option<u64>,
}

/// A device class in `lang`.
fn class_word(class: &str, lang: Lang) -> &str {
    match class {
        "scanner" => lang.t(Msg::DevScanner),
        "printer" => lang.t(Msg::DevPrinter),
        "gateway" => lang.t(Msg::DevGateway),
        other => other,
    }
}

/// "3 of 4 online (scanner 2 of 3, printer 1 of 1)" and the offline ones, oldest news first.
fn summary(devices: &[Device], lang: Lang) -> (String, Vec<&Device>) {
    if devices.is_empty() {
        return (lang.t(Msg::NoDevices).to_owned(), Vec::new());
    }
    let mut by_class: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for d in devices {
        let e = by_class.entry(d.class).or_default();
        e.1 += 1;
        if d.online {
            e.0 += 1;
        }
    }
    let online = devices.iter().filter(|d| d.online).count();
    let classes: Vec<String> = by_class
        .iter()
        .map(|(c, (on, all))| lang.f(Msg::ClassOnline, &[&class_word(c, lang), on, all]))
        .collect();
    let mut offline: Vec<&Device> = devices.iter().filter(|d| !d.online).collect();
    offline.sort_by_key(|d| (d.last_seen_ms, d.id.clone()));
    (
        lang.f(
            Msg::DevicesOnline,
            &[&online, &devices.len(), &classes.join(lang.t(Msg::ListSep))],
        ),
        offline,
    )
}

impl StatusSource for FloorSection {
    fn observe(&self, at: &At<'_>) -> Observation {
        let mut rows = vec![
            (at.t(Msg::RowBroker), self.broker.clone()),
            (
                at.t(Msg::RowSession),
                at.t(if self.connected.load(Ordering::Relaxed) {
                    Msg::Connected
                } else {
                    Msg::NotConnected
                }),
            ),
        ];
        match self.store.read(devices::list) {
            Err(e) => rows.push((at.t(Msg::RowDevices), at.f(Msg::CannotReadRegistry, &[&e]))),
            Ok(records) => {
                let list: Vec<Device> = records
                    .iter()
                    .filter_map(|r| {
                        let id = r.device()?;
                        let class = DeviceClass::from_name(&r.class)?.as_str();
                        let seen = self.presence.get(&id);
                        Some(Device {
                            class,
                            id: r.id.clone(),
                            online: seen.as_ref().is_some_and(|s| s.online),
                            last_seen_ms: seen.map(|s| s.since_ms).or(r.last_seen_ms),
                        })
                    })
                    .collect();
                let (text, offline) = summary(&list, at.lang);
                rows.push((at.t(Msg::RowDevices), text));
                if !offline.is_empty() {
                    let mut named: Vec<String> = offline
                        .iter()
                        .take(NAMED)
                        .map(|d| {
                            let class = class_word(d.class, at.lang);
                            match d.last_seen_ms {
                                Some(t) => at.f(Msg::LastSeen, &[&class, &d.id, &at.when(t)]),
                                None => at.f(Msg::NeverSeen, &[&class, &d.id]),
                            }
                        })
                        .collect();
                    if offline.len() > NAMED {
                        named.push(at.f(Msg::AndMore, &[&(offline.len() - NAMED)]));
                    }
                    rows.push((at.t(Msg::RowOffline), named.join(&at.t(Msg::PartsSep))));
                }
            }
        }
        Observation {
            checks: Vec::new(),
            section: Some(StatusSection {
                title: at.t(Msg::SecFloor),
                rows,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(class: &'static str, id: &str, online: bool, seen: Option<u64>) -> Device {
        Device {
            class,
            id: id.to_owned(),
            online,
            last_seen_ms: seen,
        }
    }

    #[test]
    fn devices_are_counted_per_class_and_offline_ones_listed_oldest_first() {
        let list = [
            d("scanner", "s1", true, Some(5)),
            d("scanner", "s2", false, Some(9)),
            d("printer", "p1", false, None),
            d("scanner", "s3", false, Some(3)),
        ];
        let (text, offline) = summary(&list, Lang::En);
        assert_eq!(text, "1 of 4 online (printer 0 of 1, scanner 1 of 3)");
        let (zh, _) = summary(&list, Lang::Zh);
        assert_eq!(zh, "4 台中 1 台在线（打印机 0/1、扫描枪 1/3）");
        let ids: Vec<&str> = offline.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["p1", "s3", "s2"]);
    }

    #[test]
    fn no_devices_says_how_to_add_one() {
        let (text, offline) = summary(&[], Lang::En);
        assert!(text.contains("devices add"), "{text}");
        assert!(offline.is_empty());
    }
}
