//! The Taobao link and the shop's authorisation as operators see them: the status page's
//! "Taobao" section and the `taobao` health check, from one reading of what the calls saw
//! (up or down, since when, the last success and the last failure, a ban in force) and of
//! the tokens (shop, expiry, whether the node can refresh them by itself). Never a token.

use super::client::TopClient;
use super::error::BanScope;
use super::tokens::{TokenManager, TokenStatus};
use crate::ops::health::{CheckName, Status};
use crate::ops::http::{At, Observation, StatusSection, StatusSource, age};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The "Taobao" section and check.
pub struct TaobaoSection {
    client: TopClient,
    tokens: Arc<TokenManager>,
    /// The last authorisation read (shown while a refresh holds the tokens).
    last_auth: Mutex<Option<(Option<TokenStatus>, bool)>>,
}

impl TaobaoSection {
    /// The section of the node's client and tokens.
    pub fn new(client: TopClient, tokens: Arc<TokenManager>) -> Self {
        TaobaoSection {
            client,
            tokens,
            last_auth: Mutex::new(None),
        }
    }

    fn auth(&self) -> Option<(Option<TokenStatus>, bool)> {
        let mut last = self.last_auth.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(now) = self.tokens.try_status() {
            *last = Some(now);
        }
        last.clone()
    }
}

impl StatusSource for TaobaoSection {
    fn observe(&self, at: &At<'_>) -> Observation {
        let link = self.client.link();
        let bans = self.client.bans();
        let auth = self.auth();
        let mut rows = Vec::new();

        let link_row = match (link.up, link.since_ms) {
            (None, _) => "no call yet".to_owned(),
            (Some(true), Some(t)) => format!("up since {}", at.when(t)),
            (Some(false), Some(t)) => format!(
                "down since {} ({} calls in a row without a reply)",
                at.when(t),
                link.failures_in_a_row
            ),
            (Some(up), None) => if up { "up" } else { "down" }.to_owned(),
        };
        rows.push(("link".to_owned(), link_row));
        rows.push((
            "last success".to_owned(),
            link.last_success_ms
                .map_or("none since start".to_owned(), |t| at.when(t)),
        ));
        if let Some((t, why)) = &link.last_failure {
            let recovered = link.last_success_ms.is_some_and(|ok| ok > *t);
            rows.push((
                "last failure".to_owned(),
                format!(
                    "{}: {why}{}",
                    at.when(*t),
                    if recovered { " (recovered since)" } else { "" }
                ),
            ));
        }
        rows.push((
            "ban".to_owned(),
            if bans.is_empty() {
                "none".to_owned()
            } else {
                bans.iter()
                    .map(|(scope, left)| format!("{scope}: {} more", age(*left)))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ));

        let (shop, authorisation) = match &auth {
            None => ("unknown".to_owned(), "not read yet".to_owned()),
            Some((None, _)) => (
                "not authorised".to_owned(),
                "never authorised: run `wms-node auth login`".to_owned(),
            ),
            Some((Some(t), refused)) => (
                t.shop_nick
                    .clone()
                    .or_else(|| t.user_id.clone())
                    .unwrap_or_else(|| "unknown".to_owned()),
                describe_auth(t, *refused, at),
            ),
        };
        rows.push(("shop".to_owned(), shop));
        rows.push(("authorisation".to_owned(), authorisation));
        if let Some((Some(t), _)) = &auth {
            metrics::gauge!("wms_node_taobao_token_expiry_timestamp_seconds").set(
                t.expires_at
                    .map_or(0.0, |e| e.timestamp_millis() as f64 / 1000.0),
            );
            metrics::gauge!("wms_node_taobao_token_refreshable").set(if t.refreshable {
                1.0
            } else {
                0.0
            });
        }
        metrics::gauge!("wms_node_taobao_link_up").set(match link.up {
            Some(true) => 1.0,
            _ => 0.0,
        });

        let app_ban = bans.iter().find(|(s, _)| *s == BanScope::App);
        let check = match (app_ban, link.up, link.since_ms) {
            (Some((_, left)), _, _) => (
                Status::Degraded,
                format!(
                    "Taobao banned this app's calls for {} more; they resume by themselves",
                    age(*left)
                ),
            ),
            (None, Some(false), since) => (
                Status::Degraded,
                format!(
                    "Taobao unreachable since {} ({} calls in a row without a reply); work is queued",
                    since.map_or("?".to_owned(), |t| at.local.format(t)),
                    link.failures_in_a_row
                ),
            ),
            (None, Some(true), _) => (
                Status::Ok,
                format!(
                    "Taobao answers; last success {}",
                    link.last_success_ms
                        .map_or("none yet".to_owned(), |t| at.when(t))
                ),
            ),
            (None, None, _) => (Status::Ok, "no call to Taobao yet".to_owned()),
        };
        Observation {
            checks: vec![(CheckName::Taobao, check.0, check.1)],
            section: Some(StatusSection {
                title: "Taobao".to_owned(),
                rows,
            }),
        }
    }
}

fn describe_auth(t: &TokenStatus, refused: bool, at: &At<'_>) -> String {
    if refused {
        return "refused by Taobao: authorise again (`wms-node auth login`)".to_owned();
    }
    let expiry = match t.expires_at {
        None => "no expiry known (a pre-issued session)".to_owned(),
        Some(e) => {
            let ms = u64::try_from(e.timestamp_millis()).unwrap_or(0);
            if t.expired {
                format!("expired {}", at.when(ms))
            } else {
                format!(
                    "expires {} (in {})",
                    at.local.format(ms),
                    age(Duration::from_millis(ms.saturating_sub(at.now_ms)))
                )
            }
        }
    };
    let refresh = if t.refreshable {
        "the node refreshes it by itself"
    } else {
        "the node cannot refresh it: authorise again before then"
    };
    format!("{expiry}; {refresh}")
}
