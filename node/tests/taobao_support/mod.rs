//! Shared set-up for the Taobao client's integration tests: an in-process sandbox on
//! `127.0.0.1:0`, a client pointed at it, and a clock that moves with the sandbox's.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use taobao_sandbox::{
    NewItem, NewOrder, NewSku, NewTrade, PreIssued, SandboxConfig, SandboxHandle,
};
use wms_node::ops::alert::Alerts;
use wms_node::secret::Secret;
use wms_node::taobao::client::ClientOptions;
use wms_node::taobao::limit::RateLimits;
use wms_node::taobao::time::Clock;
use wms_node::taobao::{SessionProvider, SignMethod, StaticSession, TopClient};

/// The pre-issued session every [`Env`] starts with.
pub const SESSION: &str = "test-session-key";
/// The sandbox's app.
pub const APP_KEY: &str = taobao_sandbox::DEFAULT_APP_KEY;
/// The sandbox's secret.
pub const APP_SECRET: &str = taobao_sandbox::DEFAULT_APP_SECRET;

/// A running sandbox and a client for it.
pub struct Env {
    /// The sandbox.
    pub sandbox: SandboxHandle,
    /// Alerts the client raises.
    pub alerts: Alerts,
    /// Seconds the client's clock runs ahead of the host's (moved with the sandbox's).
    pub offset: Arc<AtomicI64>,
}

impl Env {
    /// A sandbox with the pre-issued [`SESSION`].
    pub async fn start() -> Env {
        Env::with(SandboxConfig::default()).await
    }

    /// A sandbox with `cfg` plus the pre-issued [`SESSION`].
    pub async fn with(mut cfg: SandboxConfig) -> Env {
        cfg.sessions.push(PreIssued::new(SESSION));
        let sandbox = match taobao_sandbox::spawn(cfg).await {
            Ok(s) => s,
            Err(e) => panic!("sandbox did not start: {e}"),
        };
        Env {
            sandbox,
            alerts: Alerts::new(),
            offset: Arc::new(AtomicI64::new(0)),
        }
    }

    /// The client's clock: the host's plus [`Env::offset`].
    pub fn clock(&self) -> Clock {
        Clock::offset(self.offset.clone())
    }

    /// Options for a client of this sandbox: unlimited pacing, the moving clock.
    pub fn options(&self, method: SignMethod) -> ClientOptions {
        let mut o = ClientOptions::new(self.sandbox.rest_url(), APP_KEY, Secret::new(APP_SECRET));
        o.sign_method = method;
        o.limits = RateLimits::unlimited();
        o.clock = self.clock();
        o.connect_timeout = Duration::from_secs(2);
        o.request_timeout = Duration::from_secs(5);
        o
    }

    /// A client with `opts` and `sessions`.
    pub fn client_with(
        &self,
        opts: ClientOptions,
        sessions: Option<Arc<dyn SessionProvider>>,
    ) -> TopClient {
        match TopClient::new(opts, sessions, self.alerts.clone()) {
            Ok(c) => c,
            Err(e) => panic!("client: {e}"),
        }
    }

    /// A client signing with `method` and the pre-issued session.
    pub fn client(&self, method: SignMethod) -> TopClient {
        self.client_with(
            self.options(method),
            Some(Arc::new(StaticSession(Secret::new(SESSION)))),
        )
    }

    /// Moves the sandbox's clock and the client's together.
    pub fn advance(&self, seconds: u64) {
        self.sandbox.sandbox().advance_clock(seconds);
        self.offset.fetch_add(seconds as i64, Ordering::Relaxed);
    }

    /// Adds an item with SKUs `(sku_id, quantity)`.
    pub fn item(&self, num_iid: i64, skus: &[(i64, i64)]) {
        let item = NewItem {
            num_iid,
            title: format!("测试商品 {num_iid}"),
            outer_id: Some(format!("ITEM-{num_iid}")),
            quantity: if skus.is_empty() { Some(10) } else { None },
            price: Some("19.90".into()),
            skus: skus
                .iter()
                .map(|(sku_id, quantity)| NewSku {
                    sku_id: *sku_id,
                    outer_id: Some(format!("SKU-{sku_id}")),
                    quantity: *quantity,
                    barcode: Some(format!("69{sku_id}")),
                    ..Default::default()
                })
                .collect(),
            presale: false,
        };
        if let Err(e) = self.sandbox.sandbox().create_item(item) {
            panic!("create item {num_iid}: {e}");
        }
    }

    /// Creates a paid trade for `(num_iid, sku_id, num)` lines; returns `(tid, oids)`.
    pub fn paid_trade(&self, lines: &[(i64, Option<i64>, i64)]) -> (i64, Vec<i64>) {
        let t = NewTrade {
            receiver_state: Some("浙江省".into()),
            receiver_city: Some("杭州市".into()),
            receiver_district: Some("余杭区".into()),
            orders: lines
                .iter()
                .map(|(num_iid, sku_id, num)| NewOrder {
                    num_iid: *num_iid,
                    sku_id: *sku_id,
                    num: *num,
                })
                .collect(),
            ..Default::default()
        };
        match self.sandbox.sandbox().create_trade(t) {
            Ok(c) => (c.tid, c.oids),
            Err(e) => panic!("create trade: {e}"),
        }
    }

    /// The sandbox's call log for `method`: `(code, sub_code)` per call.
    pub fn calls(&self, method: &str) -> Vec<(i64, Option<String>)> {
        self.sandbox
            .sandbox()
            .calls(Some(method))
            .into_iter()
            .map(|c| (c.code, c.sub_code))
            .collect()
    }
}
