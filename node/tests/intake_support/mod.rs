//! An order intake over the Taobao sandbox on `127.0.0.1:0` (real signed HTTP calls), with
//! a clock that moves together with the sandbox's, so a test can run a day in seconds; the
//! node's outbox delivers through the same sink as the daemon's (stock pushes decided from
//! the ledger, shipments checked against their orders), the stock feeder runs, and
//! [`Sim::goods`] is the admin API's backend (ship, stock, waybills, reconciliation).
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;
use taobao_sandbox::{NewItem, NewSku, PreIssued, SandboxConfig, SandboxHandle};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use wms_node::ops::alert::Alerts;
use wms_node::ops::goods::GoodsAdmin;
use wms_node::outbox::{Outbox, OutboxOptions};
use wms_node::secret::Secret;
use wms_node::status::health::Health;
use wms_node::store::{Store, StoreOptions};
use wms_node::sync::intake::{Intake, IntakeHandle, IntakeOptions};
use wms_node::sync::reconcile::Reconciler;
use wms_node::sync::stock::{StockFeed, StockOptions};
use wms_node::sync::waybill::WaybillOptions;
use wms_node::taobao::client::ClientOptions;
use wms_node::taobao::limit::RateLimits;
use wms_node::taobao::oauth::{OAuthClient, OAuthOptions, TokenOrigin, TokenSet};
use wms_node::taobao::outbox::TaobaoOp;
use wms_node::taobao::time::Clock;
use wms_node::taobao::tokens::{RedbTokenStore, TokenManager, TokenStore};
use wms_node::taobao::{SessionProvider, TopClient};
use wms_node::wms::{self, Bus, Event, OrderRecord, ShopId, Wms};

pub const SESSION: &str = "sim-session";
pub const REFRESH: &str = "sim-refresh";
pub const ITEM: i64 = 600_000_000_101;
/// The item's SKUs and their merchant codes.
pub const SKUS: [(i64, &str); 4] = [
    (4_600_000_001_011, "SIM-RED"),
    (4_600_000_001_012, "SIM-BLUE"),
    (4_600_000_001_013, "SIM-GREEN"),
    (4_600_000_001_014, "SIM-BLACK"),
];

/// The sandbox, the node's intake and outbox, and the shared clock.
pub struct Sim {
    pub sb: SandboxHandle,
    pub store: Store,
    pub clock: Clock,
    pub client: TopClient,
    pub alerts: Alerts,
    pub health: Health,
    pub bus: Bus,
    pub intake: IntakeHandle,
    pub outbox: Outbox<TaobaoOp>,
    pub events: Arc<std::sync::Mutex<Vec<Event>>>,
    /// Ship, stock, waybills, reconciliation (as the admin API).
    pub goods: GoodsAdmin,
    /// Reconciliation, run in the test.
    pub reconciler: Reconciler,
    /// `stock.max_intake_lag`.
    pub max_intake_lag: Duration,
    /// Intake's poll interval.
    pub poll: Duration,
    token: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Sim {
    /// Starts everything; the SKU map knows the item's four SKUs when `map_skus`.
    pub async fn start(opts: IntakeOptions, map_skus: bool) -> Sim {
        Sim::start_with(opts, map_skus, REFRESH).await
    }

    /// [`start`](Self::start) with the refresh token the node holds (the sandbox knows
    /// [`REFRESH`] only).
    pub async fn start_with(opts: IntakeOptions, map_skus: bool, refresh: &str) -> Sim {
        Sim::start_full(opts, map_skus, refresh, Goods::default()).await
    }

    /// [`start`](Self::start) with the goods-out settings of `goods`.
    pub async fn start_goods(opts: IntakeOptions, map_skus: bool, goods: Goods) -> Sim {
        Sim::start_full(opts, map_skus, REFRESH, goods).await
    }

    async fn start_full(
        opts: IntakeOptions,
        map_skus: bool,
        refresh: &str,
        goods_opts: Goods,
    ) -> Sim {
        let sb = taobao_sandbox::spawn(SandboxConfig {
            sessions: vec![PreIssued {
                refresh_token: Some(REFRESH.into()),
                ..PreIssued::new(SESSION)
            }],
            ..SandboxConfig::default()
        })
        .await
        .unwrap_or_else(|e| panic!("sandbox: {e}"));
        sb.sandbox()
            .create_item(NewItem {
                num_iid: ITEM,
                title: "模拟商品".into(),
                skus: SKUS
                    .iter()
                    .map(|(id, code)| NewSku {
                        sku_id: *id,
                        outer_id: Some((*code).into()),
                        quantity: 999_999,
                        barcode: Some(format!("69{id}")),
                        ..NewSku::default()
                    })
                    .collect(),
                ..NewItem::default()
            })
            .unwrap_or_else(|e| panic!("item: {e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let alerts = Alerts::new();
        let store = Store::open(
            StoreOptions {
                max_bytes: goods_opts.outbox_max_bytes,
                ..StoreOptions::new(dir.path().join("node.redb"))
            },
            alerts.clone(),
        )
        .unwrap_or_else(|e| panic!("store: {e}"));
        let clock = Clock::offset(Arc::new(AtomicI64::new(0)));
        let mut oauth = OAuthOptions::new(
            sb.oauth_url(),
            taobao_sandbox::DEFAULT_APP_KEY,
            Secret::new(taobao_sandbox::DEFAULT_APP_SECRET),
            "",
        );
        oauth.clock = clock.clone();
        let token_store: Arc<dyn TokenStore> = Arc::new(RedbTokenStore::new(store.clone()));
        let now = clock.now();
        let year = chrono::Duration::days(365);
        let tokens = Arc::new(TokenManager::new(
            token_store,
            Some(OAuthClient::new(oauth).unwrap_or_else(|e| panic!("{e}"))),
            alerts.clone(),
        ));
        tokens
            .install(TokenSet {
                access_token: Secret::new(SESSION),
                refresh_token: Some(Secret::new(refresh)),
                issued_at: now,
                expires_at: Some(now + year),
                refresh_expires_at: Some(now + year),
                user_id: None,
                user_nick: None,
                origin: TokenOrigin::OAuth,
            })
            .await
            .unwrap_or_else(|e| panic!("tokens: {e}"));
        let mut o = ClientOptions::new(
            sb.rest_url(),
            taobao_sandbox::DEFAULT_APP_KEY,
            Secret::new(taobao_sandbox::DEFAULT_APP_SECRET),
        );
        o.limits = RateLimits::unlimited();
        o.clock = clock.clone();
        o.connect_timeout = Duration::from_secs(2);
        o.request_timeout = goods_opts.request_timeout;
        o.daily_call_budget = None;
        let provider: Arc<dyn SessionProvider> = tokens.clone();
        let client = TopClient::new(o, Some(provider), alerts.clone())
            .unwrap_or_else(|e| panic!("client: {e}"));
        let outbox: Outbox<TaobaoOp> = Outbox::new(
            store.clone(),
            OutboxOptions {
                backoff_initial: Duration::from_millis(100),
                backoff_max: Duration::from_millis(500),
                rate: None,
                ..OutboxOptions::default()
            },
            alerts.clone(),
        );
        if map_skus {
            let mut csv = String::from("sku,barcode,name,on_hand,num_iid,sku_id\n");
            for (id, code) in SKUS {
                csv.push_str(&format!("{code},69{id},{code},100,,\n"));
            }
            let rows = wms::sku::parse_skus(csv.as_bytes()).unwrap_or_default();
            let now = clock.now();
            wms::write(&store, move |txn| {
                let mut w = Wms::new(txn, &ShopId::main(), now);
                w.import_skus(&rows, &[], false, &wms::Rules::default())?;
                w.finish()?;
                Ok(())
            })
            .await
            .unwrap_or_else(|e| panic!("import: {e}"));
        }
        let health = Health::new();
        let bus = Bus::new();
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let token = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut rx = bus.subscribe();
        tasks.push(tokio::spawn({
            let events = events.clone();
            let token = token.clone();
            async move {
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        e = rx.recv() => match e {
                            Ok((_, e)) => events.lock().unwrap_or_else(|p| p.into_inner()).push(e),
                            Err(broadcast::error::RecvError::Lagged(n)) => panic!("event bus lagged by {n}"),
                            Err(broadcast::error::RecvError::Closed) => return,
                        },
                    }
                }
            }
        }));
        let poll = opts.poll_interval;
        let (intake, handle) = Intake::new(
            client.clone(),
            store.clone(),
            outbox.clone(),
            bus.clone(),
            alerts.clone(),
            health.clone(),
            clock.clone(),
            opts,
        );
        tasks.push(tokio::spawn({
            let token = token.clone();
            async move {
                let _ = intake.run(token).await;
            }
        }));
        let stock = StockOptions {
            max_intake_lag: goods_opts.max_intake_lag,
            check_every: Duration::from_millis(200),
            ..StockOptions::default()
        };
        tasks.push(tokio::spawn({
            let outbox = outbox.clone();
            let sink = wms_node::sync::taobao_sink(&client, &outbox, &bus, &alerts, &clock, &stock);
            let token = token.clone();
            async move { outbox.run(sink, token).await }
        }));
        tasks.push(tokio::spawn({
            let feed = StockFeed::new(
                store.clone(),
                outbox.clone(),
                bus.clone(),
                clock.clone(),
                stock.clone(),
            );
            let token = token.clone();
            async move {
                let _ = feed.run(token).await;
            }
        }));
        // The carrier list, as the node fetches it at start-up.
        let companies = client
            .logistics_companies_get(None)
            .await
            .unwrap_or_else(|e| panic!("carriers: {e}"));
        let carriers: Vec<wms::carriers::Carrier> = companies
            .into_iter()
            .filter_map(|c| {
                Some(wms::carriers::Carrier {
                    name: c.name.clone().unwrap_or_default(),
                    code: c.code?,
                    reg_mail_no: c.reg_mail_no,
                })
            })
            .collect();
        wms_node::sync::carriers::replace(&store, carriers)
            .await
            .unwrap_or_else(|e| panic!("carriers: {e}"));
        let waybill = WaybillOptions {
            shop: ShopId::main(),
            cp_code: Some("YTO".into()),
            branch_code: "SIM-01".into(),
            template_url: "http://cloudprint.cainiao.com/template/standard/101".into(),
            order_channels_type: "TB".into(),
            need_encrypt: true,
            sender: wms_node::taobao::api::WaybillParty {
                name: "模拟仓".into(),
                mobile: Some("13800000000".into()),
                phone: None,
                address: wms_node::taobao::api::WaybillAddress {
                    province: "浙江省".into(),
                    city: Some("杭州市".into()),
                    district: None,
                    town: None,
                    detail: "仓前街道 1 号".into(),
                },
            },
            merge_orders: goods_opts.merge_orders,
        };
        let reconciler = Reconciler::new(
            client.clone(),
            store.clone(),
            outbox.admin(),
            alerts.clone(),
            clock.clone(),
            goods_opts.reconcile.clone(),
        );
        let goods = GoodsAdmin::new(
            store.clone(),
            outbox.clone(),
            ShopId::main(),
            goods_opts.merge_orders,
            goods_opts.max_intake_lag,
            bus.clone(),
            alerts.clone(),
            clock.clone(),
        )
        .with_waybills(Arc::new(wms_node::sync::waybill::Issuer {
            client: client.clone(),
            store: store.clone(),
            bus: bus.clone(),
            alerts: alerts.clone(),
            clock: clock.clone(),
            opts: waybill,
        }))
        .with_reconcile(Arc::new(wms_node::sync::reconcile::Runner {
            rec: reconciler.clone(),
            state: Default::default(),
        }));
        Sim {
            sb,
            store,
            clock,
            client,
            alerts,
            health,
            bus,
            intake: handle,
            outbox,
            events,
            goods,
            reconciler,
            max_intake_lag: goods_opts.max_intake_lag,
            poll,
            token,
            tasks,
            _dir: dir,
        }
    }

    /// The sandbox's calls of `method` that reached its business logic (code 0 or an error
    /// reply; not those cut off by a transport fault).
    pub fn calls(&self, method: &str) -> Vec<taobao_sandbox::CallRecord> {
        self.sb
            .sandbox()
            .calls(Some(method))
            .into_iter()
            .filter(|c| c.code >= 0)
            .collect()
    }

    /// Waits until the outbox holds nothing and no stock push may go (at most `limit`): a
    /// correction waiting to read while intake lags, or waiting for intake to pass its
    /// reading, does not count.
    pub async fn drained(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let gate = wms_node::sync::stock::gate(
                &self.store,
                &ShopId::main(),
                self.clock.now(),
                self.max_intake_lag,
            );
            let pending = self.outbox.queued(0, 10_000).map(|q| q.len()).unwrap_or(0);
            let due = self
                .store
                .read(|r| wms::stock::due_now(r, ShopId::MAIN, gate))
                .unwrap_or(0);
            let in_flight = self.outbox.status().in_flight;
            if pending == 0 && due == 0 && in_flight == 0 {
                return;
            }
            if std::time::Instant::now() > deadline {
                panic!("not drained: {pending} queued, {due} due, {in_flight} in flight");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Moves both clocks forward.
    pub fn advance(&self, secs: u64) {
        self.sb.sandbox().advance_clock(secs);
        self.clock.advance(secs as i64);
    }

    /// Two polls: intake is current and every listing has had its first figure.
    pub async fn current(&self) {
        self.settle().await;
        self.advance(self.poll.as_secs());
        self.settle().await;
        self.drained(Duration::from_secs(60)).await;
        // A first figure is a correction: it read the shop's figure during that poll and
        // settles once the next has passed the reading.
        self.advance(self.poll.as_secs());
        self.settle().await;
        self.drained(Duration::from_secs(60)).await;
    }

    /// The sandbox's time, epoch ms.
    pub fn sandbox_ms(&self) -> i64 {
        self.sb.sandbox().clock.now_ms()
    }

    /// Waits until intake has done what is due and sleeps until a time still ahead.
    pub async fn settle(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let st = self.intake.status();
            if st.asleep_until.is_some_and(|t| t > self.clock.now()) {
                return;
            }
            if std::time::Instant::now() > deadline {
                panic!("intake did not settle: {st:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The stored order `tid`.
    pub fn order(&self, tid: i64) -> Option<OrderRecord> {
        self.store
            .read(|r| wms::orders::read_order(r, &ShopId::main(), tid as u64))
            .unwrap_or(None)
    }

    /// Moves a stored order on the floor.
    pub async fn move_to(
        &self,
        tid: i64,
        to: wms::LocalState,
    ) -> Result<OrderRecord, wms::WmsError> {
        let now = self.clock.now();
        let bus = self.bus.clone();
        wms::write(&self.store, move |txn| {
            let mut w = Wms::new(txn, &ShopId::main(), now);
            let o = w.move_to(tid as u64, to)?;
            bus.publish_after_commit(ShopId::MAIN, w.finish()?);
            Ok(o)
        })
        .await
    }

    /// Adds a fault (JSON as the admin API takes it).
    pub fn fault(&self, spec: serde_json::Value) {
        let spec = serde_json::from_value(spec).unwrap_or_else(|e| panic!("fault: {e}"));
        self.sb
            .sandbox()
            .add_fault(spec)
            .unwrap_or_else(|e| panic!("fault: {e}"));
    }

    /// The events seen so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops everything.
    pub async fn stop(self) {
        self.token.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let _ = self.store.close().await;
    }
}

/// The intake of the goods-out tests: a poll a minute, an hour back at the first.
pub fn minute_polls() -> IntakeOptions {
    IntakeOptions {
        poll_interval: Duration::from_secs(60),
        lookback: Duration::from_secs(3600),
        ..IntakeOptions::default()
    }
}

/// Goods-out settings of a [`Sim`].
#[derive(Clone)]
pub struct Goods {
    /// `shipping.merge_orders`.
    pub merge_orders: bool,
    /// `stock.max_intake_lag`.
    pub max_intake_lag: Duration,
    /// The client's whole-call timeout.
    pub request_timeout: Duration,
    /// Reconciliation's options.
    pub reconcile: wms_node::sync::reconcile::ReconcileOptions,
    /// `store.max_outbox_bytes` (0: no cap).
    pub outbox_max_bytes: u64,
}

impl Default for Goods {
    fn default() -> Self {
        Goods {
            merge_orders: false,
            max_intake_lag: Duration::from_secs(300),
            request_timeout: Duration::from_secs(5),
            reconcile: Default::default(),
            outbox_max_bytes: 0,
        }
    }
}

/// A paid trade of `num` units of SKU `k`.
pub fn paid(sb: &SandboxHandle, k: usize, num: i64) -> (i64, Vec<i64>) {
    let t = taobao_sandbox::NewTrade {
        orders: vec![taobao_sandbox::NewOrder {
            num_iid: ITEM,
            sku_id: Some(SKUS[k % SKUS.len()].0),
            num,
        }],
        ..taobao_sandbox::NewTrade::default()
    };
    let c = sb
        .sandbox()
        .create_trade(t)
        .unwrap_or_else(|e| panic!("trade: {e}"));
    (c.tid, c.oids)
}

/// Polls (one poll interval at a time) until every trade of `tids` is in `state`.
pub async fn wait_state(sim: &Sim, tids: &[i64], state: wms::LocalState) {
    for _ in 0..60 {
        if tids
            .iter()
            .all(|t| sim.order(*t).is_some_and(|o| o.state == state))
        {
            return;
        }
        sim.advance(sim.poll.as_secs());
        sim.settle().await;
    }
    let states: Vec<_> = tids
        .iter()
        .map(|t| (t, sim.order(*t).map(|o| o.state)))
        .collect();
    panic!("not all {state}: {states:?}");
}

/// A paid trade of the buyer `oaid`: `(k, num)` lines of SKU `k` of [`ITEM`].
pub fn trade(sim: &Sim, oaid: &str, lines: &[(usize, i64)]) -> (i64, Vec<i64>) {
    let t = taobao_sandbox::NewTrade {
        oaid: Some(oaid.into()),
        orders: lines
            .iter()
            .map(|(k, num)| taobao_sandbox::NewOrder {
                num_iid: ITEM,
                sku_id: Some(SKUS[*k].0),
                num: *num,
            })
            .collect(),
        ..taobao_sandbox::NewTrade::default()
    };
    let c = sim
        .sb
        .sandbox()
        .create_trade(t)
        .unwrap_or_else(|e| panic!("trade: {e}"));
    (c.tid, c.oids)
}

/// A ship scan of `tid` (its `oids`, or every line) with YTO number `out_sid`.
pub fn ship(tid: i64, out_sid: &str, oids: &[i64]) -> wms_node::wms::ship::ShipRequest {
    wms_node::wms::ship::ShipRequest {
        tid: tid as u64,
        company_code: "YTO".into(),
        out_sid: out_sid.into(),
        oids: oids.iter().map(|o| *o as u64).collect(),
    }
}

/// `items` items of `per` SKUs each, `start` units each on the platform, imported as the
/// warehouse's SKU master with the same counts. Returns (num_iid, sku_id, code) per listing.
pub async fn catalogue(sim: &Sim, items: usize, per: usize, start: i64) -> Vec<(i64, i64, String)> {
    let mut out = Vec::new();
    let mut csv = String::from("sku,barcode,name,on_hand,num_iid,sku_id\n");
    for i in 0..items {
        let num_iid = 610_000_000_000 + i as i64;
        let skus: Vec<NewSku> = (0..per)
            .map(|j| NewSku {
                sku_id: 4_610_000_000_000 + (i * 100 + j) as i64,
                outer_id: Some(format!("S{i:02}-{j:02}")),
                quantity: start,
                ..NewSku::default()
            })
            .collect();
        for s in &skus {
            let code = s.outer_id.clone().unwrap_or_default();
            csv.push_str(&format!(
                "{code},69{},{code},{start},{num_iid},{}\n",
                s.sku_id, s.sku_id
            ));
            out.push((num_iid, s.sku_id, code));
        }
        sim.sb
            .sandbox()
            .create_item(NewItem {
                num_iid,
                title: format!("商品 {i}"),
                skus,
                ..NewItem::default()
            })
            .unwrap_or_else(|e| panic!("item: {e}"));
    }
    let rows = wms::sku::parse_skus(csv.as_bytes()).unwrap_or_else(|e| panic!("skus: {e:?}"));
    let now = sim.clock.now();
    wms::write(&sim.store, move |txn| {
        let mut w = Wms::new(txn, &ShopId::main(), now);
        w.import_skus(&rows, &[], false, &wms::Rules::default())?;
        w.finish()?;
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("import: {e}"));
    out
}

/// Posts to the sandbox's admin API over HTTP (as a buyer or the seller in 千牛 would act).
pub async fn admin(sim: &Sim, path: &str, body: serde_json::Value) -> serde_json::Value {
    let r = reqwest::Client::new()
        .post(format!("http://{}/sandbox/{path}", sim.sb.addr()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// A buyer pays `num` units of a listing on Taobao (the platform takes its stock at once).
pub async fn buy(sim: &Sim, num_iid: i64, sku_id: i64, num: i64) -> i64 {
    let v = admin(
        sim,
        "trades",
        serde_json::json!({"orders": [{"num_iid": num_iid, "sku_id": sku_id, "num": num}]}),
    )
    .await;
    v["tid"].as_i64().unwrap()
}
