//! The Taobao link and the shop's authorisation as operators see them: the status page's
//! "Taobao" section and the `taobao` health check, from one reading of what the calls saw
//! (up or down, since when, the last success and the last failure, a ban in force) and of
//! the tokens (shop, expiry, whether the node can refresh them by itself). Never a token.

use super::client::TopClient;
use super::error::BanScope;
use super::tokens::{TokenManager, TokenStatus};
use crate::status::health::{CheckName, Status};
use crate::status::i18n::Msg;
use crate::status::{At, Observation, StatusSection, StatusSource, age};
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
            (None, _) => at.t(Msg::NoCallYet),
            (Some(true), Some(t)) => at.f(Msg::UpSince, &[&at.when(t)]),
            (Some(false), Some(t)) => {
                at.f(Msg::DownSinceCalls, &[&at.when(t), &link.failures_in_a_row])
            }
            (Some(up), None) => at.t(if up { Msg::LinkUp } else { Msg::LinkDown }),
        };
        rows.push((at.t(Msg::RowLink), link_row));
        rows.push((
            at.t(Msg::RowLastSuccess),
            link.last_success_ms
                .map_or(at.t(Msg::NoneSinceStart), |t| at.when(t)),
        ));
        if let Some((t, why)) = &link.last_failure {
            let recovered = link.last_success_ms.is_some_and(|ok| ok > *t);
            rows.push((
                at.t(Msg::RowLastFailure),
                at.f(
                    Msg::FailureAt,
                    &[
                        &at.when(*t),
                        why,
                        &if recovered {
                            at.t(Msg::RecoveredSince)
                        } else {
                            String::new()
                        },
                    ],
                ),
            ));
        }
        rows.push((
            at.t(Msg::RowBan),
            if bans.is_empty() {
                at.t(Msg::None_)
            } else {
                bans.iter()
                    .map(|(scope, left)| at.f(Msg::BanLeft, &[scope, &at.age(*left)]))
                    .collect::<Vec<_>>()
                    .join(&at.t(Msg::ListSep))
            },
        ));

        let (shop, authorisation) = match &auth {
            None => (at.t(Msg::Unknown), at.t(Msg::NotReadYet)),
            Some((None, _)) => (at.t(Msg::NotAuthorised), at.t(Msg::NeverAuthorised)),
            Some((Some(t), refused)) => (
                t.shop_nick
                    .clone()
                    .or_else(|| t.user_id.clone())
                    .unwrap_or_else(|| at.t(Msg::Unknown)),
                describe_auth(t, *refused, at),
            ),
        };
        rows.push((at.t(Msg::RowShop), shop));
        rows.push((at.t(Msg::RowAuthorisation), authorisation));
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
                title: at.t(Msg::SecTaobao),
                rows,
            }),
        }
    }
}

fn describe_auth(t: &TokenStatus, refused: bool, at: &At<'_>) -> String {
    if refused {
        return at.t(Msg::AuthRefused);
    }
    let expiry = match t.expires_at {
        None => at.t(Msg::NoExpiryKnown),
        Some(e) => {
            let ms = u64::try_from(e.timestamp_millis()).unwrap_or(0);
            if t.expired {
                at.f(Msg::ExpiredAt, &[&at.when(ms)])
            } else {
                at.f(
                    Msg::ExpiresIn,
                    &[
                        &at.local.format(ms),
                        &at.age(Duration::from_millis(ms.saturating_sub(at.now_ms))),
                    ],
                )
            }
        }
    };
    let refresh = at.t(if t.refreshable {
        Msg::RefreshesItself
    } else {
        Msg::CannotRefresh
    });
    at.f(Msg::AuthSummary, &[&expiry, &refresh])
}
