//! Everything the sandbox remembers, behind one lock: the shop, tokens, faults, the call limiter,
//! the call log and the runtime settings.
//!
//! One `std::sync::Mutex` is enough: every operation is short and never awaits while holding it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::auth::{Auth, TokenLifetimes};
use crate::faults::{Faults, RateLimiter};
use crate::shop::Shop;

/// The call log keeps at most this many entries (oldest dropped), so a long demo stays bounded.
pub const CALL_LOG_CAP: usize = 100_000;

/// One gateway call as `GET /sandbox/calls` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// `method` as sent (empty when absent).
    pub method: String,
    /// TOP code: 0 = success, -1 = not processed because of a transport fault.
    pub code: i64,
    /// Sub-code of an error reply.
    pub sub_code: Option<String>,
    /// Transport fault applied to the call (`outage`, `http_500`, `slow`, `reset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// When, RFC 3339 UTC (sandbox clock).
    pub at: String,
    /// The call's business parameters that say what was asked (paging, windows, ids: see
    /// [`LOGGED_PARAMS`]); never a session, a signature or a struct parameter.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, String>,
}

/// The business parameters kept in the call log.
pub const LOGGED_PARAMS: &[&str] = &[
    "start_modified",
    "end_modified",
    "start_created",
    "end_created",
    "page_no",
    "page_size",
    "use_has_next",
    "status",
    "type",
    "tid",
    "num_iid",
    "sku_id",
    "quantity",
    "refund_id",
];

/// Settings tests may change at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Emit numeric ids as JSON strings.
    pub ids_as_strings: bool,
    /// Calls per second per (app_key, method); `None` = unlimited.
    pub rate_per_second: Option<f64>,
    /// `/oauth/authorize` answers `error=access_denied`.
    pub oauth_deny: bool,
    /// Access token lifetime, s.
    pub access_token_s: u64,
    /// Refresh token lifetime, s (0 = cannot refresh).
    pub refresh_token_s: u64,
    /// Authorization code lifetime, s.
    pub code_s: u64,
}

impl Settings {
    /// Token lifetimes as the auth store takes them.
    pub fn lifetimes(&self) -> TokenLifetimes {
        TokenLifetimes {
            access_s: self.access_token_s,
            refresh_s: self.refresh_token_s,
            code_s: self.code_s,
        }
    }
}

/// The mutable world.
#[derive(Debug)]
pub struct World {
    /// Items, trades, refunds, shipments, waybills.
    pub shop: Shop,
    /// Sessions, codes, refresh tokens.
    pub auth: Auth,
    /// Injected faults.
    pub faults: Faults,
    /// Per-(app, method) token buckets.
    pub limiter: RateLimiter,
    /// Gateway call log.
    pub calls: VecDeque<CallRecord>,
    /// Runtime settings.
    pub settings: Settings,
}

impl World {
    /// Appends to the call log, dropping the oldest entry at the cap.
    pub fn record(&mut self, rec: CallRecord) {
        if self.calls.len() >= CALL_LOG_CAP {
            self.calls.pop_front();
        }
        self.calls.push_back(rec);
    }
}
