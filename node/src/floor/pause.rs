//! Telling the floor to wait: the retained `pause` message on every registered scanner's
//! and printer's `cmd` topic (`firmware_bridge::proto::Pause`).
//!
//! Before the node stops to boot an OTA update on trial, every device gets `active: true`
//! (the trial's self-test may migrate the store, and a rollback restores the old file, so
//! nothing may be acknowledged meanwhile: the node takes no floor work until the new build
//! is committed and runs). The next start of `run` sends `active: false` (the OTA state
//! remembers that the floor was told to wait): a build only runs after its trial was
//! decided, so from then on the floor works again. Both are retained, so a device that
//! connects in between (to an external broker that stays up) learns the current state.
//! Fleet links (`gateway/…`) get none: they take no floor work.

use super::admin::DeviceAdmin;
use crate::status::i18n::{Lang, Msg};
use firmware_bridge::proto::{DeviceClass, Pause, VERSION, json};
use rumqttc::{AsyncClient, QoS};

/// Publishes `pause` to the floor.
#[derive(Clone)]
pub struct FloorPause {
    client: AsyncClient,
    site: String,
    devices: DeviceAdmin,
    lang: Lang,
}

impl FloorPause {
    /// Through the node's session `client`, to the devices `devices` lists, its text in
    /// `lang` (the floor's).
    pub fn new(client: AsyncClient, site: &str, devices: DeviceAdmin, lang: Lang) -> Self {
        FloorPause {
            client,
            site: site.to_owned(),
            devices,
            lang,
        }
    }

    /// Publishes the retained `pause` (`active`, with its text for the operator: wait, or
    /// carry on) to every registered scanner and printer; returns to how many.
    pub async fn set(&self, active: bool) -> usize {
        let text = self.lang.t(if active {
            Msg::FlPaused
        } else {
            Msg::FlResumed
        });
        let msg = Pause {
            v: VERSION,
            active,
            reason: "update",
            text,
        };
        let payload = match json::to_vec(&msg) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a pause");
                return 0;
            }
        };
        let devices = match self.devices.list() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the devices to tell them to wait");
                return 0;
            }
        };
        let mut sent = 0;
        for d in devices {
            let floor = DeviceClass::from_name(&d.class)
                .is_some_and(|c| matches!(c, DeviceClass::Scanner | DeviceClass::Printer));
            if !floor {
                continue;
            }
            let topic = format!("wms/{}/{}/{}/cmd", self.site, d.class, d.id);
            match self
                .client
                .publish(topic, QoS::AtLeastOnce, true, payload.clone())
                .await
            {
                Ok(()) => sent += 1,
                Err(e) => tracing::warn!(error = %e, "cannot publish a pause"),
            }
        }
        tracing::info!(
            active,
            devices = sent,
            "floor told to {}",
            if active { "wait" } else { "carry on" }
        );
        sent
    }
}
