//! Which devices are online, from their retained `state` (birth `{"online":true,…}`, will
//! `{"online":false}`): in memory, rebuilt from the broker's retained messages whenever the
//! node (re)subscribes. The firmware and last-seen time also go to the device record, so a
//! stopped node can still say when it last heard from a device.

use super::devices::DeviceId;
use firmware_bridge::proto::State;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What the node knows of a device's connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// Its last `state` said online.
    pub online: bool,
    /// The firmware its state named.
    pub fw: Option<String>,
    /// Its state's note (`port closed`, `paper out`).
    pub detail: Option<String>,
    /// When that state arrived (ms since the Unix epoch).
    pub since_ms: u64,
}

/// The online map, shared by the MQTT session and the admin API.
#[derive(Debug, Clone, Default)]
pub struct Presence {
    inner: Arc<Mutex<HashMap<DeviceId, Seen>>>,
}

impl Presence {
    /// Records a device's state message.
    pub fn update(&self, device: &DeviceId, state: &State<String>, now_ms: u64) {
        let seen = Seen {
            online: state.online,
            fw: state.fw.clone(),
            detail: state.detail.clone(),
            since_ms: now_ms,
        };
        let was = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(device.clone(), seen);
        if was.as_ref().map(|w| w.online) != Some(state.online) {
            tracing::info!(device = %device, online = state.online, "device state");
        }
        metrics::gauge!("wms_node_floor_devices_online").set(self.online_count() as f64);
    }

    /// Forgets a removed device.
    pub fn forget(&self, device: &DeviceId) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(device);
    }

    /// What is known of `device`.
    pub fn get(&self, device: &DeviceId) -> Option<Seen> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(device)
            .cloned()
    }

    /// How many devices are online.
    pub fn online_count(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|s| s.online)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware_bridge::proto::DeviceClass;

    #[test]
    fn birth_and_will_flip_a_device_online_and_offline() {
        let p = Presence::default();
        let d = DeviceId::new(DeviceClass::Scanner, "sc-1").unwrap();
        assert_eq!(p.get(&d), None);
        let mut birth = State::<String>::offline();
        birth.online = true;
        birth.fw = Some("wms-bridge 0.1.0".into());
        p.update(&d, &birth, 10);
        assert!(p.get(&d).unwrap().online);
        assert_eq!(p.online_count(), 1);
        p.update(&d, &State::offline(), 20);
        let s = p.get(&d).unwrap();
        assert!(!s.online);
        assert_eq!(s.since_ms, 20);
        assert_eq!(p.online_count(), 0);
    }
}
