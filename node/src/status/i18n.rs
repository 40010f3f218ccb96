//! The words people read, in English and Chinese: the one catalogue of the status page's
//! and the CLI's human output (`[node] language = "en" | "zh"`, English by default), and of
//! what the floor's scanners and printers show people (`[floor] language`, the node's when
//! absent; keys `Fl…`).
//!
//! Machine output stays in English whatever the language: `/healthz` and `/metrics`, every
//! `--json`, logs, and the health checks' and alerts' own messages (they are logged, and
//! chat notices and scripts match on them).
//!
//! # Adding strings
//!
//! Add one line to the [`catalogue!`] call below: a key in `CamelCase`, the English, the
//! Chinese. Numbered placeholders `{0}`, `{1}` … take the arguments of [`Lang::f`] in any
//! order, so each language keeps its own word order:
//!
//! ```text
//! StockShort => "{0} short of {1}", "{1} 缺货 {0} 件";
//! ```
//!
//! and use it as `lang.t(Msg::Ok)` (fixed text) or `lang.f(Msg::StockShort, &[&n, &sku])`.
//! The tests check that every key has both languages, that both use the same placeholders,
//! and that the Chinese is Chinese. A command gets its language from its config
//! (`config.node.language`), the status page from the node's, the floor from
//! `config.floor_language()`, handed to each of its parts when it starts (the flows, the
//! pipeline's refusals, the labeller, the pause).
//!
//! The Chinese is written for a warehouse lead (订单, 出库, 库存, 告警, 离线) and, for the
//! floor, for pickers and packers on a small screen (拣货, 打包, 库位, 放回, 短拣, 异常台), not
//! machine-translated identifiers: keep it that way, and keep commands, keys and file names in
//! backticks untranslated. The protocol's machine fields (`beep`, reasons, actions, ids, SKU
//! codes, bins) never go through here.

use serde::{Deserialize, Serialize};
use std::fmt::Display;
use std::time::Duration;

/// The language of the status page and the CLI's human output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// English (the default).
    #[default]
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// The text of `m`.
    pub fn t(self, m: Msg) -> &'static str {
        match self {
            Lang::En => m.en(),
            Lang::Zh => m.zh(),
        }
    }

    /// The text of `m` with `{0}`, `{1}` … replaced by `args`.
    pub fn f(self, m: Msg, args: &[&dyn Display]) -> String {
        let text = self.t(m);
        let mut out = String::with_capacity(text.len() + 16 * args.len());
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after
                .find('}')
                .and_then(|close| Some((close, after[..close].parse::<usize>().ok()?)))
                .and_then(|(close, i)| Some((close, args.get(i)?)))
            {
                Some((close, arg)) => {
                    out.push_str(&arg.to_string());
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// The `lang` attribute of an HTML page.
    pub fn html_lang(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// A duration as people say it: "45 s", "3 min", "2 h 5 min", "3 d 4 h" ("3 分钟" …).
    pub fn age(self, d: Duration) -> String {
        let s = d.as_secs();
        let (big, small) = match s {
            0..60 => return self.f(Msg::Seconds, &[&s]),
            60..3600 => return self.f(Msg::Minutes, &[&(s / 60)]),
            3600..86_400 => (
                self.f(Msg::Hours, &[&(s / 3600)]),
                (s % 3600 / 60 > 0).then(|| self.f(Msg::Minutes, &[&(s % 3600 / 60)])),
            ),
            _ => (
                self.f(Msg::Days, &[&(s / 86_400)]),
                (s % 86_400 / 3600 > 0).then(|| self.f(Msg::Hours, &[&(s % 86_400 / 3600)])),
            ),
        };
        match small {
            Some(small) => format!("{big} {small}"),
            None => big,
        }
    }
}

/// Declares [`Msg`]: one line per key, `Key => "English", "中文";`.
macro_rules! catalogue {
    ($($key:ident => $en:literal, $zh:literal;)*) => {
        /// A string of the catalogue (module docs: how to add one).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Msg {
            $($key,)*
        }

        impl Msg {
            /// Every key, in catalogue order.
            pub const ALL: &[Msg] = &[$(Msg::$key,)*];

            /// The English.
            pub fn en(self) -> &'static str {
                match self {
                    $(Msg::$key => $en,)*
                }
            }

            /// The Chinese.
            pub fn zh(self) -> &'static str {
                match self {
                    $(Msg::$key => $zh,)*
                }
            }
        }
    };
}

catalogue! {
    // Durations.
    Seconds => "{0} s", "{0} 秒";
    Minutes => "{0} min", "{0} 分钟";
    Hours => "{0} h", "{0} 小时";
    Days => "{0} d", "{0} 天";
    Ago => "{0} ago", "{0}前";
    ForDuration => "for {0}", "已持续 {0}";
    ListSep => ", ", "、";
    WhenAgo => "{0} ({1} ago)", "{0}（{1}前）";

    // Health and severity words.
    Ok => "ok", "正常";
    Degraded => "degraded", "部分异常";
    Failing => "failing", "故障";
    Critical => "critical", "严重";
    Warning => "warning", "警告";
    Info => "info", "提示";

    // The status page's frame.
    PageAsOf => "as of", "数据时间";
    PageRefreshes => "refreshes every 10 s", "每 10 秒刷新";
    PageVersion => "version", "版本";
    PageUp => "up", "已运行";
    Alerts => "Alerts", "告警";
    NoActiveAlerts => "No active alerts.", "当前没有告警。";
    ColSeverity => "severity", "级别";
    ColAlert => "alert", "告警";
    ColWhatToDo => "what to do", "说明与处理";
    ColSince => "since", "开始";
    ColLastSeen => "last seen", "最近一次";
    ColCount => "count", "次数";
    RecentlyResolved => "Recently resolved", "最近已解除";
    ColWhatItSaid => "what it said", "内容";
    ColResolved => "resolved", "解除";
    ColWasActive => "was active", "持续了";
    Checks => "Checks", "检查";
    NoChecksYet => "No checks reported yet.", "尚无检查结果。";
    ColCheck => "check", "检查项";
    ColStatus => "status", "状态";
    ColDetail => "detail", "详情";
    LostContact => "Lost contact with the node since", "与节点失去联系，自";

    // Health check names.
    CheckStore => "store", "存储";
    CheckOutbox => "outbox", "待发队列";
    CheckTaobao => "Taobao link", "淘宝连接";
    CheckCarriers => "carriers", "快递公司列表";
    CheckIntake => "order intake", "订单拉取";
    CheckAlerts => "alert delivery", "告警推送";

    // Shared words of the sections.
    None_ => "none", "无";
    Unknown => "unknown", "未知";
    NoneSinceStart => "none since start", "启动以来没有";
    NoneYet => "none yet", "暂无";
    RowLink => "link", "连接";
    RowLastSuccess => "last success", "最近成功";
    RowLastFailure => "last failure", "最近失败";
    RecoveredSince => " (recovered since)", "（之后已恢复）";
    FailureAt => "{0}: {1}{2}", "{0}：{1}{2}";
    LinkUp => "up", "正常";
    LinkDown => "down", "中断";
    LinkUnknown => "unknown", "未知";
    RowSize => "size", "大小";
    RowState => "state", "状态";

    // The "Taobao" section.
    SecTaobao => "Taobao", "淘宝";
    NoCallYet => "no call yet", "尚未调用";
    UpSince => "up since {0}", "自 {0} 起正常";
    DownSinceCalls => "down since {0} ({1} calls in a row without a reply)", "自 {0} 起中断（连续 {1} 次调用无应答）";
    RowBan => "ban", "限流封禁";
    BanLeft => "{0}: {1} more", "{0}：还剩 {1}";
    RowShop => "shop", "店铺";
    RowAuthorisation => "authorisation", "授权";
    NotReadYet => "not read yet", "尚未读取";
    NotAuthorised => "not authorised", "未授权";
    NeverAuthorised => "never authorised: run `wms-node auth login`", "从未授权：请运行 `wms-node auth login`";
    AuthRefused => "refused by Taobao: authorise again (`wms-node auth login`)", "淘宝拒绝了授权：请重新授权（`wms-node auth login`）";
    NoExpiryKnown => "no expiry known (a pre-issued session)", "到期时间未知（预置会话）";
    ExpiredAt => "expired {0}", "已于 {0} 过期";
    ExpiresIn => "expires {0} (in {1})", "{0} 到期（还有 {1}）";
    RefreshesItself => "the node refreshes it by itself", "节点会自动续期";
    CannotRefresh => "the node cannot refresh it: authorise again before then", "节点无法自动续期：请在到期前重新授权";
    AuthSummary => "{0}; {1}", "{0}；{1}";

    // The "Store" section.
    SecStore => "Store", "存储";
    Writable => "writable", "可写";
    NotWritableSince => "not writable since {0}: {1}", "自 {0} 起不可写：{1}";
    RowFile => "file", "文件";
    RowFreeDisk => "free disk", "磁盘剩余";

    // The outbox sections.
    SecOutbox => "Outbox", "待发队列（回传淘宝）";
    SecAlertDelivery => "Alert delivery", "告警推送";
    PausedReauthorise => "paused (re-authorize)", "已暂停（需重新授权）";
    DownSinceAttempts => "down since {0}, {1} failed attempts", "自 {0} 起中断，已失败 {1} 次";
    RowPending => "pending", "待发送";
    RowOldest => "oldest", "最早一条已等";
    RowInFlight => "in flight", "发送中";
    RowDeadLetters => "dead letters", "死信（无法投递）";
    SizeOfCap => "{0} of {1} ({2}%)", "{0} / {1}（{2}%）";

    // The "Orders" section.
    SecOrders => "Orders", "订单";
    RowIntakeLag => "intake lag", "拉单延迟";
    IntakeLag => "{0} (everything changed up to {1} is in)", "{0}（{1} 之前的变更均已拉取）";
    NoPullYet => "no pull yet", "尚未拉取";
    RowLastPull => "last pull", "最近拉取";
    PullStopped => "stopped: {0}", "已停止：{0}";
    PullFailed => "failed: {0}", "失败：{0}";
    PullOk => "ok ({0} polls, {1} windows)", "正常（{0} 次轮询，{1} 个时间窗）";
    RowOrdersToday => "orders today ({0})", "今日订单（{0}）";
    RowOrdersByState => "orders by state", "各状态订单";
    RowHeld => "held", "挂起";
    HeldOrders => "{0} orders: {1}", "{0} 单：{1}";
    CountOf => "{0} {1}", "{1} {0}";
    RowCallsToday => "Taobao calls today", "今日淘宝调用";
    CallsOfBudget => "{0} of {1} ({2} %){3}", "{0} / {1}（{2}%）{3}";
    WaitingForTomorrow => "; waiting for tomorrow: {0}", "；等明天再调：{0}";
    NoBudgetSet => "{0} (no budget set)", "{0}（未设上限）";

    // The "Goods out" section.
    SecGoodsOut => "Goods out", "出库";
    CannotReadStore => "cannot read the store: {0}", "无法读取存储：{0}";
    RowShipByRisk => "ship-by risk", "发货时限风险";
    NoneDueWithin => "none due within {0}", "{0}内没有到期的订单";
    Overdue => "{0} overdue", "{0} 单已超时";
    DueWithin => "{0} due within {1}", "{0} 单 {1}内到期";
    OfThemHeld => "{0} of them held", "其中 {0} 单挂起";
    FirstDue => "first: trade {0} by {1}", "最早：订单 {0}，{1} 前";
    PartsSep => "; ", "；";
    RowAwaitingConfirm => "shipped, not yet confirmed by Taobao", "已发出，淘宝尚未确认";
    TradesOldestShipped => "{0} trades; oldest shipped {1}", "{0} 单；最早于 {1} 发出";
    NTrades => "{0} trades", "{0} 单";
    RowStock => "stock", "库存";
    NoSkusInMaster => "no SKUs in the master", "货品主数据为空";
    SkusSummary => "{0} SKUs; {1} with nothing available{2}", "{0} 个 SKU；{1} 个无可售库存{2}";
    SyncStoppedFor => "; sync stopped for {0}", "；{0} 个已停止同步";
    RowLastReconcile => "last reconciliation", "最近对账";
    RecRunningFirst => "running (first run)", "进行中（首次）";
    RecNotYet => "not run yet since the node started", "节点启动后尚未对账";
    RecFinished => "finished {0}: {1}", "{0} 完成：{1}";
    RecFoundKinds => "{0} findings ({1})", "{0} 处差异（{1}）";
    RecCouldNotRun => "; could not run: {0}", "；未能执行：{0}";
    RecRunningAgain => "; running again now", "；正在再次对账";

    // The "Floor" section.
    SecFloor => "Floor", "现场设备";
    RowBroker => "broker", "MQTT 服务器";
    RowSession => "node's MQTT session", "节点的 MQTT 会话";
    Connected => "connected", "已连接";
    NotConnected => "not connected (reconnecting)", "未连接（重连中）";
    RowDevices => "devices", "设备";
    CannotReadRegistry => "cannot read the registry: {0}", "无法读取设备登记：{0}";
    NoDevices => "none registered (`wms-node devices add ID --class scanner`)", "尚未登记设备（`wms-node devices add ID --class scanner`）";
    DevicesOnline => "{0} of {1} online ({2})", "{1} 台中 {0} 台在线（{2}）";
    ClassOnline => "{0} {1} of {2}", "{0} {1}/{2}";
    DevScanner => "scanner", "扫描枪";
    DevPrinter => "printer", "打印机";
    DevGateway => "gateway", "网关";
    RowOffline => "offline", "离线";
    LastSeen => "{0} {1} (last seen {2})", "{0} {1}（最后在线 {2}）";
    NeverSeen => "{0} {1} (never seen)", "{0} {1}（从未上线）";
    AndMore => "and {0} more", "另有 {0} 台";

    // Order states and hold reasons (wms/order.rs), as counted on the page.
    StateNew => "new", "新订单";
    StateReleased => "released", "已下发";
    StatePicking => "picking", "拣货中";
    StatePicked => "picked", "已拣货";
    StateVerified => "verified", "已复核";
    StatePacked => "packed", "已打包";
    StateWeighed => "weighed", "已称重";
    StateLabelled => "labelled", "已打面单";
    StateHandedOver => "handed over", "已交快递";
    StateConsigned => "consigned", "已发货";
    StatePutBack => "put back", "已退回货架";
    StateCancelled => "cancelled", "已取消";
    StateException => "exception", "异常待处理";
    HoldRefund => "refund", "退款";
    HoldTradeClosed => "trade closed", "交易关闭";
    HoldPaidForbidConsign => "shipping forbidden", "平台禁止发货";
    HoldPresaleUnpaid => "pre-sale unpaid", "预售尾款未付";
    HoldUnmappedSku => "unmapped SKU", "SKU 未对应";
    HoldAmbiguousSku => "ambiguous SKU", "SKU 对应不唯一";
    HoldPartialRefund => "partial refund", "部分退款";
    HoldReview => "review", "待审核";
    HoldOperator => "operator", "人工挂起";

    // `wms-node check-config`.
    CliEffectiveConfig => "# Effective configuration from {0} and WMS_NODE__* environment variables.\n# Secrets are shown as \"<redacted>\". The configuration is valid.\n", "# 生效的配置（来自 {0} 和 WMS_NODE__* 环境变量）。\n# 密钥显示为 \"<redacted>\"。配置有效。\n";

    // `wms-node alerts`.
    CliSeverity => "SEVERITY", "级别";
    CliAlert => "ALERT", "告警";
    CliSinceTz => "SINCE ({0})", "开始（{0}）";
    CliFor => "FOR", "持续";
    CliCount => "COUNT", "次数";
    CliMessage => "MESSAGE", "内容";
    CliResolvedAlert => "RESOLVED ALERT", "已解除的告警";
    CliResolvedTz => "RESOLVED ({0})", "解除（{0}）";
    CliLasted => "LASTED", "持续了";
    CliNoResolvedKept => "No resolved alerts kept.", "没有保留的已解除告警。";

    // `wms-node queue`.
    QSeq => "SEQ", "序号";
    QState => "STATE", "状态";
    QKind => "KIND", "类型";
    QAge => "AGE", "已等";
    QTries => "TRIES", "尝试";
    QNext => "NEXT", "下次";
    QSummary => "SUMMARY / LAST ERROR", "摘要 / 最近错误";
    QPending => "PENDING", "待发送";
    QBackingOff => "BACKING OFF", "退避等待";
    QDead => "DEAD", "死信";
    QNoOps => "no ops match", "没有符合条件的记录";
    QCriticalNote => "* critical (never dropped by the byte cap)", "* 关键操作（队列满时也不会丢弃）";
    QMore => "more: --after {0}", "更多：--after {0}";
    QIn => "in {0}", "{0}后";
    QRowPending => "pending", "待发送";
    QRowInFlight => "  in flight", "  发送中";
    QRowBackingOff => "  backing off", "  退避等待";
    QRowDeadLetters => "dead letters", "死信";
    QRowOldest => "oldest pending", "最早待发";
    QRowBytes => "queue bytes", "队列大小";
    QRowQuarantined => "quarantined", "隔离记录";
    QRowStoreFile => "store file", "存储文件";
    QRowStore => "store", "存储";
    QCapOf => "{0} of {1} ({2}%, policy {3})", "{0} / {1}（{2}%，策略 {3}）";
    QAgoAt => "{0} ago ({1})", "{0}前（{1}）";
    QStoreId => "id {0}, schema v{1}", "编号 {0}，结构版本 v{1}";
    // `wms-node orders`.
    OrdNone => "No orders.", "没有订单。";
    OrdTid => "TID", "订单号";
    OrdState => "STATE", "状态";
    OrdTaobaoStatus => "TAOBAO STATUS", "淘宝状态";
    OrdHolds => "HOLDS", "挂起原因";
    OrdShipBy => "SHIP BY", "最晚发货";
    OrdQty => "QTY", "件数";
    OrdLines => "LINES", "商品";
    OrdUnmapped => "(unmapped)", "（未对应）";
    OrdMore => "(more: --before {0})", "（更多：--before {0}）";
    OrdRowTid => "tid", "订单号";
    OrdRowState => "state", "状态";
    OrdRowTaobaoStatus => "taobao status", "淘宝状态";
    OrdRowShipBy => "ship by", "最晚发货";
    OrdRowPaid => "paid", "付款时间";
    OrdRowModified => "modified", "修改时间";
    OrdRowArrived => "arrived", "拉取时间";
    OrdRowRegion => "region", "地区";
    OrdRowReceiver => "receiver", "收件人";
    OrdRowHolds => "holds", "挂起";
    OrdOperatorHold => "operator since {0}: {1}", "人工挂起，自 {0}：{1}";
    OrdHoldSince => "{0} ({1}) since {2}: {3}", "{0}（{1}），自 {2}：{3}";
    OrdOid => "OID", "子订单号";
    OrdMapping => "MAPPING", "对应";
    OrdLineStatus => "STATUS", "状态";
    OrdRefund => "REFUND", "退款";
    OrdOnHold => "order {0} is on hold: {1}", "订单 {0} 已挂起：{1}";
    OrdReleased => "released {0} on order {1}{2}", "已解除订单 {1} 的 {0}{2}";
    OrdOtherHolds => "; other holds remain", "；其他挂起原因仍在";

    // `wms-node stock`.
    StockNoSkus => "No SKUs (wms-node sku import).", "没有 SKU（请先 wms-node sku import）。";
    StockSku => "SKU", "货品编码";
    StockOnHand => "ON HAND", "在库";
    StockReserved => "RESERVED", "已占用";
    StockSafety => "SAFETY", "安全库存";
    StockAvailable => "AVAILABLE", "可售";
    StockSync => "SYNC", "同步";
    StockListings => "LISTINGS (last pushed; still owed)", "商品链接（最近推送；待推送）";
    StockPushedAt => "{0} at {1}", "{1} 推送 {0}";
    StockNever => "never", "从未推送";
    NodeNotRunningStock => "(the node is not running: Taobao hears of it when the node starts)", "（节点未运行：节点启动后再同步给淘宝）";

    // `wms-node ship`.
    ShipShipped => "Package {0} shipped; queued for Taobao:", "包裹 {0} 已出库，待回传淘宝：";
    ShipOp => "  op #{0} tid {1} {2} {3}{4}", "  操作 #{0} 订单 {1} {2} {3}{4}";
    ShipLines => " (lines {0})", "（子订单 {0}）";
    NodeNotRunningShip => "The node is not running: Taobao is told when it starts (`wms-node queue list`).", "节点未运行：节点启动后再回传淘宝（`wms-node queue list`）。";

    // `wms-node waybill`.
    WbPackage => "package", "包裹";
    WbTrades => "trades", "订单";
    WbWaybill => "waybill", "面单号";
    WbPrintJob => "print job", "打印任务";
    WbAskedAs => ", asked as {0}", "，申请时为 {0}";
    WbReprint => ", issued before: reprint", "，此前已取号：补打";
    WbPrintData => "{0} ({1}, {2} bytes of print data, template {3})", "{0}（{1}，打印数据 {2} 字节，模板 {3}）";
    WbShipWith => "Ship it with: wms-node ship {0} --company {1} --waybill {2}", "出库命令：wms-node ship {0} --company {1} --waybill {2}";
    WbVoided => "Voided: the number is cancelled at Cainiao through the outbox; the lines are now package {0} (`wms-node waybill get {1}` asks for a new number).", "已作废：面单号经待发队列在菜鸟取消；这些商品现为包裹 {0}（`wms-node waybill get {1}` 重新取号）。";

    // `wms-node reconcile`.
    RecTitle => "Reconciliation {0} → {1}", "对账 {0} → {1}";
    RecCheck => "CHECK", "核对项";
    RecStatus => "STATUS", "结果";
    RecFindings => "FINDINGS", "差异";
    RecClean => "clean", "一致";
    RecHasFindings => "FINDINGS", "有差异";
    RecNotRun => "NOT RUN", "未执行";
    RecTrade => "trade {0}", "订单 {0}";
    RecSku => "SKU {0}", "货品 {0}";
    RecAllMatch => "Everything matches.", "全部一致。";
    RecFindingsAbove => "Findings above (each raised its alert).", "差异见上（每项都已告警）。";
    RecSomeNotRun => "Some checks could not run; run again when Taobao answers.", "部分核对未能执行；淘宝恢复后请再运行一次。";
    RecProgress => "reconciling", "对账中";

    QQuarantineNote => "\nsome records could not be decoded and were set aside in the quarantine table;\nthe node carries on without them (see the log for their table and key)\n", "\n有记录无法解码，已移入隔离表；\n节点不受影响继续运行（表名和键见日志）\n";

    // `wms-node devices`.
    DevClass => "CLASS", "类型";
    DevId => "ID", "编号";
    DevOnline => "ONLINE", "在线";
    DevFirmware => "FIRMWARE", "固件";
    DevLastSeen => "LAST SEEN", "最后在线";
    DevIsOnline => "online", "在线";
    DevIsOffline => "offline", "离线";
    DevNever => "never", "从未";
    DevNone => "no devices; add one with: wms-node devices add ID --class scanner|printer", "还没有设备；添加设备：wms-node devices add ID --class scanner|printer";
    DevNotRunning => "(the node is not running: online state unknown)", "（节点未运行：在线状态未知）";
    DevRemoved => "removed {0}: its credentials no longer work", "已移除 {0}：它的凭据立即失效";
    DevAdded => "added {0} {1}", "已添加{0} {1}";
    DevUser => "MQTT user name", "MQTT 用户名";
    DevPassword => "MQTT password", "MQTT 密码";
    DevClientId => "MQTT client id", "MQTT 客户端 ID";
    DevTopics => "topics", "主题";
    DevTopicsValue => "{0} (publish), …/cmd (subscribe)", "{0}（发布），…/cmd（订阅）";
    DevPasswordOnce => "The password is shown this once; only its hash is kept. Lost it? Remove the\ndevice and add it again.", "密码只显示这一次，节点只保存它的哈希。丢了？移除设备后重新添加。";
    DevExternalBroker => "External broker: {0} now lists it; reload the broker (systemctl reload mosquitto).", "外部 MQTT 服务器：{0} 已列入该设备；请重新加载（systemctl reload mosquitto）。";

    // `wms-node sku`.
    SkuSku => "SKU", "货品编码";
    SkuBarcode => "BARCODE", "条码";
    SkuOnHand => "ON HAND", "在库";
    SkuLocation => "LOCATION", "库位";
    SkuListings => "LISTINGS", "商品链接";
    SkuName => "NAME", "名称";
    SkuBundle => "BUNDLE", "组合装";
    SkuComponents => "COMPONENTS", "组成";
    SkuNone => "No SKUs yet: `wms-node sku import FILE.csv`.", "还没有货品：`wms-node sku import FILE.csv`。";
    SkuMore => "… ({0} more)", "…（另有 {0} 个）";
    SkuImported => "Imported.", "已导入。";
    SkuDryRun => "Dry run: nothing written. This import would change:", "试运行：未写入任何内容。这次导入将会改动：";
    SkuAdded => "added", "新增";
    SkuChanged => "changed", "修改";
    SkuUnchanged => "unchanged", "未变";
    SkuListingsRow => "listings", "商品链接";
    SkuMoved => "moved: {0}", "改挂：{0}";
    SkuOnHandRow => "on hand", "在库";
    SkuOnHandSet => "set for new SKUs", "新货品的库存已设定";
    SkuIgnored => "ignored", "忽略";
    SkuIgnoredDetail => "counts of SKUs already counted (use the stock commands): {0}", "已盘点货品的数量（请用 stock 命令修改）：{0}";
    SkuIgnoredItem => "{0} file {1}, counted {2}", "{0} 文件 {1}，盘点 {2}";
    SkuReleased => "released", "已放行";
    SkuSyncRead => "Read {0} items with {1} listings: {2} mapped by their merchant code, {3} kept as imported.", "读取了 {0} 个商品、{1} 个链接：{2} 个按商家编码对应，{3} 个保留导入时的对应。";
    SkuSyncUnknown => "{0} listings have a merchant code that is no SKU or bundle (import it): {1}", "{0} 个链接的商家编码不是任何货品或组合装（请导入）：{1}";
    SkuSyncNoCode => "{0} listings have no merchant code (give them one, or map them with `sku import`): {1}", "{0} 个链接没有商家编码（请补上，或用 `sku import` 对应）：{1}";
    SkuSyncStale => "{0} map entries removed: their items are gone from Taobao.", "移除了 {0} 条对应：淘宝上已没有这些商品。";
    SkuSyncReleased => "{0} held orders released.", "放行了 {0} 个挂起的订单。";
    SkuProgress => "reading listings", "读取商品链接";
    SkuProgressItems => "items", "个商品";

    // `wms-node auth`.
    AuthAuthorised => "Authorised.", "已授权。";
    AuthNot => "not authorised: run `wms-node auth login`", "未授权：请运行 `wms-node auth login`";
    AuthShop => "shop:", "店铺：";
    AuthUnknownShop => "(unknown shop)", "（未知店铺）";
    AuthSellerId => "{0} (seller id {1})", "{0}（卖家 ID {1}）";
    AuthSource => "source:", "令牌来源：";
    AuthExpires => "expires:", "令牌到期：";
    AuthExpired => "expired", "已过期";
    AuthExpiresIn => "in {0}", "{0}后";
    AuthExpiresUnknown => "unknown (a pre-issued session)", "未知（预先签发的会话）";
    AuthRefresh => "refresh:", "自动续期：";
    AuthRefreshUntil => "automatic, possible until {0}", "自动，最晚可续到 {0}";
    AuthRefreshAuto => "automatic", "自动";
    AuthRefreshNo => "not possible (the app cannot refresh, or the refresh token expired): run `wms-node auth login` before it expires", "无法续期（应用不能刷新令牌，或刷新令牌已过期）：请在到期前运行 `wms-node auth login` 重新授权";
    AuthLoginOpen => "Open this URL as the shop's owner and approve wms-node:", "请以店铺主账号打开以下网址，并同意授权 wms-node：";
    AuthLoginWaiting => "Waiting up to {0} for Taobao to redirect to {1} (listening on {2}) …", "最多等待 {0}，等淘宝跳转回 {1}（监听 {2}）…";

    // `wms-node ota`.
    OtaRunning => "running", "正在运行";
    OtaPackage => "package", "安装包";
    OtaSlot => "slot {0}", "槽位 {0}";
    OtaDownload => "download", "下载";
    OtaLast => "last", "上次更新";
    OtaStoreCopy => "store copy", "数据库副本";
    OtaKeys => "keys", "签名公钥";
    OtaRunningSlot => "{0} (slot {1}){2}", "{0}（槽位 {1}）{2}";
    OtaRunningPackage => "{0} (package {1}){2}", "{0}（安装包 {1}）{2}";
    OtaRunningNoLauncher => "{0} (not started by the launcher){1}", "{0}（不是由启动器启动的）{1}";
    OtaNotAnswering => "; node not answering", "；节点无响应";
    OtaCommitted => "{0} (committed)", "{0}（已确认）";
    OtaOnTrial => "{0} (on trial, {1} start(s) so far)", "{0}（试运行中，已启动 {1} 次）";
    OtaPrevious => "{0} (previous)", "{0}（上一版本）";
    OtaUnused => "(an unused build)", "（未使用的版本）";
    OtaEmpty => "empty", "空";
    OtaDownloadPartial => "{0}: {1} of {2} MiB on disk (apply again to resume)", "{0}：已下载 {1} / {2} MiB（再次执行 apply 可续传）";
    OtaNoUpdate => "no update yet", "尚未更新过";
    OtaLastInstalled => "{0} installed {1}, waiting for its trial boot", "{0} 已于 {1} 安装，等待试运行启动";
    OtaLastCommitted => "{0} committed {1}", "{0} 已于 {1} 确认";
    OtaLastRolledBack => "{0} ROLLED BACK {1}: {2}", "{0} 已于 {1} 回滚：{2}";
    OtaLastFailed => "{0} FAILED {1}: {2}", "{0} 于 {1} 失败：{2}";
    OtaAnUpdate => "update", "更新";
    OtaStoreCopyKept => "{0} (the store before the last migrating update)", "{0}（上次迁移数据库的更新之前的数据库）";
    OtaNoKeys => "none: every update is refused ([ota] public_keys)", "无：所有更新都会被拒绝（[ota] public_keys）";
    OtaVerified => "signature verified; downloading wms-node {0} ({1} MiB)", "签名校验通过；正在下载 wms-node {0}（{1} MiB）";
    OtaResuming => "resuming at {0} MiB", "从 {0} MiB 处续传";
    OtaProgress => "{0}%  {1} of {2} MiB", "{0}%  已下载 {1} / {2} MiB";
    OtaInterrupted => "interrupted ({0}); resuming in {1} (attempt {2})", "下载中断（{0}）；{1} 后续传（第 {2} 次）";
    OtaChecking => "checking size and SHA-256", "正在校验大小和 SHA-256";
    OtaNothingInstalled => "nothing was installed; the running build is unchanged", "未安装任何内容；正在运行的版本不变";
    OtaInstalled => "installed {0} into slot {1}; it boots on trial at the next start", "已将 {0} 安装到槽位 {1}；下次启动时试运行";
    OtaNoRestart => "not restarting (--no-restart): `systemctl restart wms-node` boots it", "不重启（--no-restart）：`systemctl restart wms-node` 后启动新版本";
    OtaRestarting => "the node restarts into it now; `wms-node ota status` shows whether it was committed", "节点正在重启进入新版本；`wms-node ota status` 显示是否已确认";
    OtaNotRunning => "the node is not running: it boots {0} when it starts (systemctl start wms-node)", "节点未运行：下次启动时运行 {0}（systemctl start wms-node）";
    OtaRestartRefused => "the running node did not restart: {0}", "正在运行的节点没有重启：{0}";
    // The floor: what scanners and printers show people (`[floor] language`, floor/say.rs,
    // flows.rs, holds.rs, labels.rs, pipeline.rs). Short: a scanner's screen is small. Ids,
    // SKU codes, bins and waybill numbers go in as they are.
    FlStep => "{0}: {1} x {2}", "{0}：{2} × {1}";
    FlStepNoBin => "{0} x {1} (no bin on record)", "{1} × {0}（无库位记录）";
    FlPickOrder => "pick order {0}", "拣货订单 {0}";
    FlPutBackOrder => "put back order {0}", "放回订单 {0}";
    FlPackOrder => "pack order {0}", "打包订单 {0}";
    FlTaskPutBack => "put back what was picked for order {0}", "把订单 {0} 已拣的货放回";
    FlTaskPack => "pack order {0}: scan each item", "打包订单 {0}：逐件扫描";
    FlThen => "{0}: {1}", "{0}：{1}";
    FlNothingLeft => "{0}: nothing left", "{0}：已全部完成";
    FlUnitsLeft => "{0}: {1} ({2} units left)", "{0}：{1}（还剩 {2} 件）";
    FlReasonDetail => "{0}: {1}", "{0}：{1}";
    FlModePick => "pick", "拣货";
    FlModePack => "pack", "打包";
    FlModeShip => "ship", "发货";
    FlModeReceive => "receive", "收货";
    FlModeCount => "count", "盘点";
    FlNoTaskShip => "no task needed to ship: scan the waybill number on the parcel", "发货不需要任务：请扫包裹上的运单号";
    FlNoTaskSku => "no task needed to {0}: scan the SKU (with qty)", "{0}不需要任务：请扫货品（带数量）";
    FlStillHold => "you still hold {0}", "你还有任务：{0}";
    FlScanToPack => "scan a picked order to pack it (its number or pick label)", "扫已拣好的订单开始打包（订单号或拣货标签）";
    FlPutBackFirst => "first put back what was picked for held order {0}: {1}", "先放回挂起订单 {0} 已拣的货：{1}";
    FlNoWork => "no work: no order is waiting to be picked", "暂无任务：没有待拣货的订单";
    FlNoTask => "no task: request one first", "没有任务：请先领任务";
    FlOtherMode => "a {0} scan, but you hold {1}: finish it first", "这是{0}扫描，但你还有任务：{1}，请先做完";
    FlOldTask => "old task {0}: you hold {1}", "旧任务 {0}：你当前的任务是 {1}";
    FlOrderGone => "order {0} is gone from this node", "订单 {0} 已不在本节点";
    FlOrderChanged => "order {0} changed: task updated, scan again", "订单 {0} 有变更：任务已更新，请重扫";
    FlPackingOrder => "you are packing order {0}: {1}", "正在打包订单 {0}：{1}";
    FlDoneAlready => "{0} is done already on this task", "{0} 在本任务中已扫完";
    FlWrongItem => "wrong item: {0} is not on order {1}; next: {2}", "错货！下一件：{2}（{0} 不在订单 {1} 中）";
    FlTooMany => "too many: {0} x {1} left", "数量过多：{1} 只剩 {0} 件";
    FlScanOk => "{0} ok; next {1}", "{0} 正确；下一件 {1}";
    FlPicked => "order {0} picked: take it to packing", "订单 {0} 拣货完成：请送去打包";
    FlAllBack => "order {0}: everything is back in its bin", "订单 {0}：已全部放回库位";
    FlShortNoTask => "short for {0}: you hold no such pick task", "短拣 {0}：你没有这个拣货任务";
    FlShortNotOnOrder => "short of {0}: it is not on order {1}", "短拣 {0}：订单 {1} 里没有这个货品";
    FlShortRecorded => "short of {0} recorded: take order {1} to the exception desk", "{0} 短拣已记录：请把订单 {1} 送到异常台";
    FlNoGoods => "the {0} flow is not set up on this node (no outbox): nothing was recorded", "本节点未启用{0}流程（无待发队列）：未记录";
    FlNotSkuReceive => "{0} is no SKU of the master: nothing received", "{0} 不在货品主数据中：未收货";
    FlReceivedBin => "{0} x {1} received: on hand {2}; bin {3}", "已收货 {1} × {0}：在库 {2}；库位 {3}";
    FlReceived => "{0} x {1} received: on hand {2}", "已收货 {1} × {0}：在库 {2}";
    FlCountNeedsQty => "a count needs qty: the units counted in the bin", "盘点要带数量：库位里点到的件数";
    FlNotSkuCount => "{0} is no SKU of the master: nothing counted", "{0} 不在货品主数据中：未盘点";
    FlCountSame => "{0}: {1} counted, as on record", "{0}：盘点 {1} 件，与记录一致";
    FlCountDiff => "{0}: {1} counted ({2} against the record)", "{0}：盘点 {1} 件（与记录相差 {2}）";
    FlWaybillForeign => "waybill {0} is not one this node issued: ship it with wms-node ship", "运单 {0} 不是本节点生成的：请用 wms-node ship 发货";
    FlShippedAlready => "waybill {0} shipped already (package {1})", "运单 {0} 已发货（包裹 {1}）";
    FlNoLiveWaybill => "package {0} has no live waybill", "包裹 {0} 没有有效运单";
    FlPackageEmpty => "package {0} is empty", "包裹 {0} 是空的";
    FlDockHeld => "order {0} is held ({1}): STOP, take it to the exception desk", "停！订单 {0} 已挂起（{1}）：请送到异常台";
    FlShipped => "shipped: order {0} with {1} {2}", "已发货：订单 {0}，{1} {2}";
    FlVoided => "waybill {0} was voided: do not ship this parcel{1}", "运单 {0} 已作废：这个包裹不要发{1}";
    FlNewLabel => "order {0}: scan it at a packing station for a new label", "订单 {0}：到打包台扫描，重新打面单";
    FlNotOrder => "{0} is no order: scan the order first (its number or pick label)", "{0} 不是订单：请先扫订单（订单号或拣货标签）";
    FlNoOrder => "no order {0} on this node", "本节点没有订单 {0}";
    FlNotPicked => "order {0} is {1}: only a picked order is packed", "订单 {0} 当前为{1}：只有已拣货的订单才能打包";
    FlBeingWorked => "order {0} is being worked by {1} ({2})", "订单 {0} 正由 {1} 处理（{2}）";
    FlSharesParcelState => "order {0} shares the parcel of order {1} (same receiver) and is {2}: pick it first", "订单 {0} 与订单 {1} 同收件人同包裹，当前为{2}：请先拣货";
    FlSharesParcelWorked => "order {0} shares the parcel of order {1} (same receiver) and is being worked by {2} ({3})", "订单 {0} 与订单 {1} 同收件人同包裹，正由 {2} 处理（{3}）";
    FlNotInMaster => "order {0}'s lines are not all in the SKU master", "订单 {0} 有货品不在主数据中";
    FlPackMerged => "pack order {0} with {1} other order(s) of the same receiver: {2} units", "打包订单 {0} 及同收件人的另外 {1} 单：共 {2} 件";
    FlPackUnits => "pack order {0}: scan each item ({1} units)", "打包订单 {0}：逐件扫描（共 {1} 件）";
    FlPackedPrints => "order {0} packed: its label prints on {1}", "订单 {0} 打包完成：面单在 {1} 打印";
    FlPackedNoPrinter => "order {0} packed; no printer is paired with this scanner ([[floor.stations]]): print the label with wms-node waybill get {0}", "订单 {0} 打包完成；本扫描枪没有配对打印机（[[floor.stations]]）：请用 wms-node waybill get {0} 打印面单";
    FlPackedBeforeNoPrinter => "order {0} is packed; no printer is paired with this scanner: print with wms-node waybill get {0}", "订单 {0} 已打包；本扫描枪没有配对打印机：请用 wms-node waybill get {0} 打印";
    FlNoParcel => "order {0} has no parcel left to label", "订单 {0} 没有待打面单的包裹";
    FlLabelAgain => "order {0}: label again on {1} (the same waybill)", "订单 {0}：在 {1} 重打面单（运单号不变）";
    FlRefused => "{0}", "未执行：{0}";
    FlHeld => "STOP: order {0} is on hold ({1}): do not pack it", "停！订单 {0} 已挂起（{1}）：不要打包";
    FlPutBackHeld => "STOP: order {0} is on hold ({1}): put its goods back with task {2} ({3})", "停！订单 {0} 已挂起（{1}）：用任务 {2} 把货放回库位（{3}）";
    FlPutBackWasHeld => "STOP: order {0} was on hold: put its goods back with task {1} ({2})", "停！订单 {0} 曾挂起：用任务 {1} 把货放回库位（{2}）";
    FlPutBackAnyScanner => "a scanner asking for pick work gets it", "下一台领拣货任务的扫描枪会领到";
    FlPutBackHasIt => "{0} has it", "已派给 {0}";
    FlHoldPutBack => "STOP: order {0} is on hold ({1}): do not pack it; put what you picked back (a put-back task follows)", "停！订单 {0} 已挂起（{1}）：不要打包；把已拣的货放回（随后下发放回任务）";
    FlHoldStop => "STOP: order {0} is on hold ({1}): leave it and ask for a new task", "停！订单 {0} 已挂起（{1}）：不用拣了，请领新任务";
    FlHoldPack => "STOP: order {0} is on hold ({1}): do not pack it; put its goods back (a put-back task follows){2}", "停！订单 {0} 已挂起（{1}）：不要打包；把货放回（随后下发放回任务）{2}";
    FlHoldOthersStay => "; order {0} stays picked: scan it again to pack it", "；订单 {0} 仍是已拣货：重扫即可打包";
    FlNoLabel => "no label for order {0}: {1}; fix it, then scan the order again to print", "订单 {0} 没有面单：{1}；处理后重扫订单打印";
    FlPrinterSays => "printer {0} says: {1}", "打印机 {0} 报错：{1}";
    FlPrinterSilent => "printer {0} has not answered {1} prints", "打印机 {0} 已 {1} 次没有应答";
    FlLabelPrinted => "label printed for order {0} ({1}): take the parcel to the dock", "订单 {0} 面单已打印（{1}）：请把包裹送到发货区";
    FlLabelSentAgain => "printer {0} did not confirm the label for order {1}: sent again", "打印机 {0} 没有确认订单 {1} 的面单：已重发";
    FlUnknownDevice => "unknown device {0}: register it with wms-node devices add", "未登记的设备 {0}：请用 wms-node devices add 登记";
    FlBadMessage => "{0}", "消息无法使用：{0}";
    FlNotRecorded => "not recorded ({0}); scan again", "未记录（{0}）：请重扫";
    FlPaused => "Gateway updating: wait, keep your scans; they are answered when it is back", "网关升级中：请稍候，扫描会保留，恢复后自动应答";
    FlResumed => "Gateway back: carry on", "网关已恢复：请继续作业";
}

/// The width of `s` in a terminal's columns: Chinese (and other East Asian wide) characters
/// take two, so tables of the CLI line up in both languages.
pub fn width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            let c = c as u32;
            let wide = (0x1100..=0x115F).contains(&c)
                || (0x2E80..=0xA4CF).contains(&c)
                || (0xAC00..=0xD7A3).contains(&c)
                || (0xF900..=0xFAFF).contains(&c)
                || (0xFE30..=0xFE4F).contains(&c)
                || (0xFF00..=0xFF60).contains(&c)
                || (0xFFE0..=0xFFE6).contains(&c);
            if wide { 2 } else { 1 }
        })
        .sum()
}

/// `s` padded with spaces to `w` terminal columns ([`width`]).
pub fn pad(s: &str, w: usize) -> String {
    let mut out = s.to_owned();
    out.extend(std::iter::repeat_n(' ', w.saturating_sub(width(s))));
    out
}

/// `s` right-aligned in `w` terminal columns ([`width`]).
pub fn pad_left(s: &str, w: usize) -> String {
    let mut out: String = std::iter::repeat_n(' ', w.saturating_sub(width(s))).collect();
    out.push_str(s);
    out
}

impl Lang {
    /// An order state or hold reason code (`handed_over`, `unmapped_sku`) as people read it:
    /// in English the code itself (what `--state` and `--json` take), in Chinese its word.
    pub fn order_word(self, code: &str) -> String {
        match (self, Msg::of_order_word(code)) {
            (Lang::Zh, Some(m)) => m.zh().to_owned(),
            _ => code.to_owned(),
        }
    }
}

impl Msg {
    /// The word for an order `state` or hold `reason` as counted in `wms/` (its snake_case
    /// name), if the catalogue has one.
    pub fn of_order_word(word: &str) -> Option<Msg> {
        Some(match word {
            "new" => Msg::StateNew,
            "released" => Msg::StateReleased,
            "picking" => Msg::StatePicking,
            "picked" => Msg::StatePicked,
            "verified" => Msg::StateVerified,
            "packed" => Msg::StatePacked,
            "weighed" => Msg::StateWeighed,
            "labelled" => Msg::StateLabelled,
            "handed_over" => Msg::StateHandedOver,
            "consigned" => Msg::StateConsigned,
            "put_back" => Msg::StatePutBack,
            "cancelled" => Msg::StateCancelled,
            "exception" => Msg::StateException,
            "refund" => Msg::HoldRefund,
            "trade_closed" => Msg::HoldTradeClosed,
            "paid_forbid_consign" => Msg::HoldPaidForbidConsign,
            "presale_unpaid" => Msg::HoldPresaleUnpaid,
            "unmapped_sku" => Msg::HoldUnmappedSku,
            "ambiguous_sku" => Msg::HoldAmbiguousSku,
            "partial_refund" => Msg::HoldPartialRefund,
            "review" => Msg::HoldReview,
            "operator" => Msg::HoldOperator,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholders(s: &str) -> Vec<String> {
        let mut p: Vec<String> = s
            .match_indices('{')
            .filter_map(|(i, _)| {
                let rest = &s[i + 1..];
                let close = rest.find('}')?;
                Some(rest[..close].to_owned())
            })
            .collect();
        p.sort();
        p
    }

    /// Every key has both languages, with the same placeholders, and the Chinese is Chinese
    /// (not English left in place).
    #[test]
    fn every_key_has_english_and_chinese_with_the_same_placeholders() {
        let han = |s: &str| s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
        let mut problems = Vec::new();
        for m in Msg::ALL {
            let (en, zh) = (m.en(), m.zh());
            if en.trim().is_empty() || zh.trim().is_empty() {
                problems.push(format!("{m:?}: empty"));
            }
            if placeholders(en) != placeholders(zh) {
                problems.push(format!("{m:?}: placeholders differ: {en:?} / {zh:?}"));
            }
            for p in placeholders(en) {
                if p.parse::<usize>().is_err() {
                    problems.push(format!("{m:?}: placeholder {{{p}}} is not a number"));
                }
            }
            let only_placeholders = zh
                .split(['{', '}'])
                .enumerate()
                .all(|(i, part)| i % 2 == 1 || !part.chars().any(char::is_alphanumeric));
            if !han(zh) && !only_placeholders {
                problems.push(format!("{m:?}: no Chinese in {zh:?}"));
            }
            if han(en) {
                problems.push(format!("{m:?}: Chinese in the English {en:?}"));
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
        let mut keys: Vec<String> = Msg::ALL.iter().map(|m| format!("{m:?}")).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), Msg::ALL.len());
    }

    #[test]
    fn arguments_go_where_each_language_puts_them() {
        assert_eq!(Lang::En.f(Msg::CountOf, &[&3, &"released"]), "3 released");
        assert_eq!(Lang::Zh.f(Msg::CountOf, &[&3, &"已下发"]), "已下发 3");
        assert_eq!(
            Lang::Zh.f(Msg::ExpiresIn, &[&"2026-12-08 09:00", &"3 天"]),
            "2026-12-08 09:00 到期（还有 3 天）"
        );
        // A missing argument or a brace that is not a placeholder is left as written.
        assert_eq!(Lang::En.f(Msg::CountOf, &[&3]), "3 {1}");
        assert_eq!(Lang::En.f(Msg::PullStopped, &[&"{x}"]), "stopped: {x}");
    }

    #[test]
    fn chinese_takes_two_columns() {
        assert_eq!(width("SEQ"), 3);
        assert_eq!(width("序号"), 4);
        assert_eq!(width("已下发 3，（）"), 14);
        assert_eq!(pad("序号", 6), "序号  ");
        assert_eq!(pad_left("次数", 6), "  次数");
    }

    /// Every order state and hold reason of the domain has its word.
    #[test]
    fn every_order_state_and_hold_reason_has_a_word() {
        use crate::wms::{HoldReason as H, LocalState};
        for s in LocalState::ALL {
            let name = serde_json::to_value(s).unwrap();
            let name = name.as_str().unwrap();
            assert!(Msg::of_order_word(name).is_some(), "state {name}");
        }
        let reasons = [
            H::Refund,
            H::TradeClosed,
            H::PaidForbidConsign,
            H::PresaleUnpaid,
            H::UnmappedSku,
            H::AmbiguousSku,
            H::PartialRefund,
            H::Review,
            H::Operator,
        ];
        for r in reasons {
            // A new reason fails to compile here until it is listed (and given its word).
            match r {
                H::Refund
                | H::TradeClosed
                | H::PaidForbidConsign
                | H::PresaleUnpaid
                | H::UnmappedSku
                | H::AmbiguousSku
                | H::PartialRefund
                | H::Review
                | H::Operator => {}
            }
            assert!(
                Msg::of_order_word(r.as_str()).is_some(),
                "hold {}",
                r.as_str()
            );
        }
    }

    #[test]
    fn ages_read_as_people_say_them_in_both_languages() {
        for (secs, en, zh) in [
            (45, "45 s", "45 秒"),
            (180, "3 min", "3 分钟"),
            (7200, "2 h", "2 小时"),
            (7500, "2 h 5 min", "2 小时 5 分钟"),
            (86_400 * 3 + 3600 * 4, "3 d 4 h", "3 天 4 小时"),
        ] {
            assert_eq!(Lang::En.age(Duration::from_secs(secs)), en);
            assert_eq!(Lang::Zh.age(Duration::from_secs(secs)), zh);
        }
    }

    #[test]
    fn the_config_names_the_language_in_lowercase() {
        #[derive(Deserialize)]
        struct C {
            language: Lang,
        }
        let c: C = toml::from_str("language = \"zh\"").unwrap();
        assert_eq!(c.language, Lang::Zh);
        assert!(toml::from_str::<C>("language = \"fr\"").is_err());
    }
}
