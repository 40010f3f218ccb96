//! An order as the warehouse keeps it ([`OrderRecord`]), its local state machine
//! ([`LocalState`]), its holds ([`Hold`]) and the rules that decide them ([`Rules`]).
//!
//! Records are postcard-encoded, which stores enum variants by position and fields without
//! names: variants are only ever added at the end, and a new field means a store migration
//! (`store/schema.rs`) that rewrites the records.

use crate::taobao::types::{RefundStatus, TradeStatus};
use serde::{Deserialize, Serialize};

/// Where an order is on the floor (DOMAIN.md §2). Holds are not a state: a held order stays
/// where it was, and the floor refuses its scans until the holds are gone.
///
/// ```text
///  new ─▶ released ─▶ picking ─▶ picked ─▶ verified ─▶ packed ─▶ weighed ─▶ labelled
///   │                    └──────────┴─────────┴──────────┴─────────┴───────────┤
///   │                                  (trade closed: goods back) ─▶ put_back  │
///   └─▶ cancelled (closed before any goods moved)          handed_over ◀───────┘
///                                                              └─▶ consigned
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalState {
    /// Pulled from Taobao, not (yet) released: unpaid, held before release, or closed.
    New,
    /// Released to the floor [ACCEPT].
    Released,
    /// Being picked [PICK].
    Picking,
    /// Picked.
    Picked,
    /// Scan-verified [CHECK].
    Verified,
    /// Packed [PACKAGE].
    Packed,
    /// Weighed [WEIGH].
    Weighed,
    /// Label printed [PRINT].
    Labelled,
    /// Through the ship scan: the parcel left with the carrier [DELIVERED].
    HandedOver,
    /// Taobao accepted the shipment (or shows the trade shipped).
    Consigned,
    /// Closed after goods were picked: they go back to their bins.
    PutBack,
    /// Closed before goods moved; nothing to do.
    Cancelled,
    /// Needs a person (wrong item, damage).
    Exception,
}

impl LocalState {
    /// Every state, in flow order.
    pub const ALL: [LocalState; 13] = [
        LocalState::New,
        LocalState::Released,
        LocalState::Picking,
        LocalState::Picked,
        LocalState::Verified,
        LocalState::Packed,
        LocalState::Weighed,
        LocalState::Labelled,
        LocalState::HandedOver,
        LocalState::Consigned,
        LocalState::PutBack,
        LocalState::Cancelled,
        LocalState::Exception,
    ];

    /// The name in JSON, metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalState::New => "new",
            LocalState::Released => "released",
            LocalState::Picking => "picking",
            LocalState::Picked => "picked",
            LocalState::Verified => "verified",
            LocalState::Packed => "packed",
            LocalState::Weighed => "weighed",
            LocalState::Labelled => "labelled",
            LocalState::HandedOver => "handed_over",
            LocalState::Consigned => "consigned",
            LocalState::PutBack => "put_back",
            LocalState::Cancelled => "cancelled",
            LocalState::Exception => "exception",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s names (`-` for `_` is accepted).
    pub fn parse(s: &str) -> Option<LocalState> {
        let s = s.trim().replace('-', "_");
        LocalState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Goods of this order are in the warehouse's hands but not packed off: a close means a
    /// put-back.
    pub fn goods_in_hand(self) -> bool {
        matches!(
            self,
            LocalState::Picking
                | LocalState::Picked
                | LocalState::Verified
                | LocalState::Packed
                | LocalState::Weighed
                | LocalState::Labelled
                | LocalState::Exception
        )
    }

    /// The parcel is through the ship scan (gone), or Taobao says it shipped.
    pub fn gone(self) -> bool {
        matches!(self, LocalState::HandedOver | LocalState::Consigned)
    }

    /// Nothing more will happen on the floor.
    pub fn is_final(self) -> bool {
        matches!(self, LocalState::Consigned | LocalState::Cancelled)
    }

    /// Position on the main line (side states after it), for "never go back" checks.
    fn rank(self) -> u8 {
        self as u8
    }

    /// Whether the floor may move an order from `self` to `to` (forward on the main line,
    /// or to a side state; never back, never out of `consigned` or `cancelled`).
    pub fn may_move_to(self, to: LocalState) -> bool {
        if self == to || self.is_final() {
            return false;
        }
        match to {
            LocalState::New => false,
            LocalState::PutBack => self.goods_in_hand(),
            LocalState::Cancelled => !self.gone(),
            LocalState::Exception => !self.gone() && self != LocalState::New,
            // From put-back or exception an order may restart from released.
            _ if matches!(self, LocalState::PutBack | LocalState::Exception) => {
                to == LocalState::Released
            }
            _ => to.rank() > self.rank(),
        }
    }
}

impl std::fmt::Display for LocalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an order is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// A line has an open refund (DOMAIN.md §3).
    Refund,
    /// The trade was closed (fully refunded) while goods were in hand or gone.
    TradeClosed,
    /// `PAID_FORBID_CONSIGN`: paid, shipping forbidden by the platform.
    PaidForbidConsign,
    /// A pre-sale trade whose final payment is not in (`step_trade_status`).
    PresaleUnpaid,
    /// A line maps to no SKU (DOMAIN.md §6).
    UnmappedSku,
    /// A line could map to more than one SKU; the node never guesses.
    AmbiguousSku,
    /// Some lines were refunded and partial shipment is off: an operator decides.
    PartialRefund,
    /// The seller's flag or memo asks for a review (configured words and colours).
    Review,
    /// Put on hold by an operator (`wms-node orders hold`).
    Operator,
}

impl HoldReason {
    /// The code in JSON and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::Refund => "refund",
            HoldReason::TradeClosed => "trade_closed",
            HoldReason::PaidForbidConsign => "paid_forbid_consign",
            HoldReason::PresaleUnpaid => "presale_unpaid",
            HoldReason::UnmappedSku => "unmapped_sku",
            HoldReason::AmbiguousSku => "ambiguous_sku",
            HoldReason::PartialRefund => "partial_refund",
            HoldReason::Review => "review",
            HoldReason::Operator => "operator",
        }
    }

    /// Who sets and clears it.
    pub fn source(self) -> HoldSource {
        match self {
            HoldReason::Refund
            | HoldReason::TradeClosed
            | HoldReason::PaidForbidConsign
            | HoldReason::PresaleUnpaid => HoldSource::Taobao,
            HoldReason::UnmappedSku | HoldReason::AmbiguousSku => HoldSource::SkuMap,
            HoldReason::PartialRefund | HoldReason::Review => HoldSource::Rules,
            HoldReason::Operator => HoldSource::Operator,
        }
    }

    /// Whether `orders release` lifts it: the operator's own, and the ones that wait for a
    /// person's decision. The others clear when their cause does (the platform, the map).
    pub fn operator_may_release(self) -> bool {
        matches!(
            self,
            HoldReason::Operator | HoldReason::PartialRefund | HoldReason::Review
        )
    }
}

/// Who put a hold on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldSource {
    /// The platform's state (refund, close, forbidden, pre-sale).
    Taobao,
    /// The SKU map.
    SkuMap,
    /// The node's configured rules.
    Rules,
    /// An operator.
    Operator,
}

impl HoldSource {
    /// The name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldSource::Taobao => "taobao",
            HoldSource::SkuMap => "sku_map",
            HoldSource::Rules => "rules",
            HoldSource::Operator => "operator",
        }
    }
}

/// One hold on an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Why.
    pub reason: HoldReason,
    /// Since when (epoch ms).
    pub since_ms: i64,
    /// For people: which lines and statuses, or the operator's words. Never buyer data.
    pub detail: String,
}

/// How a line maps onto the SKU master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mapping {
    /// One SKU.
    Sku(String),
    /// A bundle, exploded into `(component, qty per bundle)`.
    Bundle {
        /// The bundle's code.
        code: String,
        /// Its components.
        parts: Vec<(String, u32)>,
    },
    /// No SKU matches.
    Unmapped,
    /// More than one reading is possible (says why); the node does not guess.
    Ambiguous(String),
}

impl Mapping {
    /// The code the line sells, if it maps.
    pub fn code(&self) -> Option<&str> {
        match self {
            Mapping::Sku(c) | Mapping::Bundle { code: c, .. } => Some(c),
            Mapping::Unmapped | Mapping::Ambiguous(_) => None,
        }
    }
}

/// One line (sub-order, `oid`) of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// Line id.
    pub oid: u64,
    /// Item.
    pub num_iid: Option<u64>,
    /// SKU of the item, if it has SKUs.
    pub sku_id: Option<u64>,
    /// The item's merchant code.
    pub outer_iid: Option<String>,
    /// The SKU's merchant code.
    pub outer_sku_id: Option<String>,
    /// Title, for people.
    pub title: Option<String>,
    /// SKU properties, for people (`颜色分类:红色;尺码:XL`).
    pub properties: Option<String>,
    /// Quantity.
    pub qty: u32,
    /// The line's platform status.
    pub status: Option<TradeStatus>,
    /// The line's refund state.
    pub refund_status: Option<RefundStatus>,
    /// The line's current refund.
    pub refund_id: Option<u64>,
    /// What it maps to.
    pub mapping: Mapping,
}

impl Line {
    /// Closed on the platform (refunded): it has left the order.
    pub fn is_closed(&self) -> bool {
        matches!(
            self.status,
            Some(TradeStatus::TradeClosed | TradeStatus::TradeClosedByTaobao)
        ) || self.refund_status == Some(RefundStatus::Success)
    }

    /// Shipped on the platform.
    pub fn is_shipped(&self) -> bool {
        matches!(
            self.status,
            Some(
                TradeStatus::WaitBuyerConfirmGoods
                    | TradeStatus::TradeBuyerSigned
                    | TradeStatus::TradeFinished
            )
        )
    }

    /// An open refund stops this line (DOMAIN.md §3: anything but none, closed, refused).
    pub fn refund_blocks(&self) -> bool {
        !self.is_closed()
            && self
                .refund_status
                .as_ref()
                .is_some_and(|r| !r.allows_shipping())
    }
}

/// An order as the warehouse keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// Trade id.
    pub tid: u64,
    /// Local state.
    pub state: LocalState,
    /// The platform's trade status.
    pub taobao_status: TradeStatus,
    /// Trade type (`fixed`, `step`, …).
    pub trade_type: Option<String>,
    /// Pre-sale step.
    pub step_trade_status: Option<String>,
    /// Created on Taobao (epoch ms).
    pub created_ms: Option<i64>,
    /// Paid (epoch ms).
    pub pay_time_ms: Option<i64>,
    /// The platform's `modified` of the version stored (epoch ms): upserts need a newer one.
    pub modified_ms: i64,
    /// Ship-by deadline (DOMAIN.md §9), epoch ms.
    pub ship_by_ms: Option<i64>,
    /// When the node first stored it.
    pub arrived_ms: i64,
    /// When the node last read it in full (`trade.fullinfo.get`).
    pub refreshed_ms: i64,
    /// Receiver id: same OAID = same person and address.
    pub oaid: Option<String>,
    /// Province.
    pub province: Option<String>,
    /// City.
    pub city: Option<String>,
    /// District.
    pub district: Option<String>,
    /// Receiver name masked by the node (first character, then `*`).
    pub receiver: Option<String>,
    /// Seller's flag colour (0 none, 1–5).
    pub seller_flag: u8,
    /// Lines.
    pub lines: Vec<Line>,
    /// Holds, oldest first; empty = free to go.
    pub holds: Vec<Hold>,
    /// Bumped whenever the lines or holds change, so the floor can tell a stale task.
    pub version: u32,
    /// Refunds whose AliGenius feedback was queued (each is reported once).
    pub feedback_for: Vec<u64>,
    /// An operator accepted shipping the lines left after a partial refund.
    pub partial_accepted: bool,
    /// The flag/memo review an operator released (a different one holds again).
    pub review_released: Option<String>,
    /// Taobao shows it shipped although the floor never handed it over.
    pub shipped_elsewhere: bool,
}

impl OrderRecord {
    /// Whether any hold is on.
    pub fn is_held(&self) -> bool {
        !self.holds.is_empty()
    }

    /// Whether it belongs in the open index (not done, or still held).
    pub fn is_open(&self) -> bool {
        !self.state.is_final() || self.is_held()
    }

    /// The reasons of its holds, without repeats.
    pub fn hold_reasons(&self) -> Vec<HoldReason> {
        let mut r: Vec<HoldReason> = self.holds.iter().map(|h| h.reason).collect();
        r.sort();
        r.dedup();
        r
    }
}

/// The rules the operator configures (`[intake]`), applied at every change of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Ship the lines left after a partial refund without asking (DOMAIN.md §3.5).
    pub partial_shipment: bool,
    /// Seller flag colours (1–5) that hold an order for review.
    pub review_flags: Vec<u8>,
    /// Words in the seller's memo that hold an order for review (customer service writes
    /// "hold", "change colour" there).
    pub review_memo_words: Vec<String>,
    /// The shop's default ship-by promise after payment, seconds (DOMAIN.md §9).
    pub default_promise_s: i64,
    /// Queue AliGenius "shipment stopped" feedback (DOMAIN.md §3.7).
    pub ag_feedback: bool,
    /// Released orders of the same receiver (OAID) share one package (DOMAIN.md §4).
    pub merge_orders: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            partial_shipment: false,
            review_flags: Vec::new(),
            review_memo_words: Vec::new(),
            default_promise_s: 48 * 3600,
            ag_feedback: true,
            merge_orders: false,
        }
    }
}

impl Rules {
    /// What of the flag and memo asks for a review, as a key (`flag:1,memo:hold`); `None`
    /// when nothing does. The memo itself is never stored, only the configured words found.
    pub fn review_key(&self, flag: u8, memo: Option<&str>) -> Option<String> {
        let mut parts = Vec::new();
        if self.review_flags.contains(&flag) {
            parts.push(format!("flag:{flag}"));
        }
        if let Some(memo) = memo {
            let lower = memo.to_lowercase();
            for w in &self.review_memo_words {
                if !w.is_empty() && lower.contains(&w.to_lowercase()) {
                    parts.push(format!("memo:{w}"));
                }
            }
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

/// The node's own mask of a receiver name: the first character, then `*` (DOMAIN.md §10).
/// Whatever arrives (masked by the platform or, wrongly, in plain text), what is kept cannot
/// name anyone.
pub fn mask_name(name: &str) -> Option<String> {
    let first = name.trim().chars().next()?;
    Some(format!("{first}*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_move_forward_or_to_a_side_state_never_back() {
        use LocalState::*;
        assert!(New.may_move_to(Released));
        assert!(Released.may_move_to(Picking));
        assert!(Picking.may_move_to(Labelled));
        assert!(Labelled.may_move_to(HandedOver));
        assert!(HandedOver.may_move_to(Consigned));
        assert!(!Picking.may_move_to(Released));
        assert!(!Consigned.may_move_to(Cancelled));
        assert!(!HandedOver.may_move_to(Cancelled));
        assert!(Picked.may_move_to(PutBack));
        assert!(!Released.may_move_to(PutBack));
        assert!(PutBack.may_move_to(Released));
        assert!(!PutBack.may_move_to(Packed));
        assert!(!Cancelled.may_move_to(Released));
        assert!(!New.may_move_to(New));
    }

    #[test]
    fn state_names_round_trip() {
        for s in LocalState::ALL {
            assert_eq!(LocalState::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            LocalState::parse("handed-over"),
            Some(LocalState::HandedOver)
        );
        assert_eq!(LocalState::parse("held"), None);
    }

    #[test]
    fn names_are_masked_to_their_first_character() {
        assert_eq!(mask_name("张三丰").as_deref(), Some("张*"));
        assert_eq!(mask_name(" Alice Smith").as_deref(), Some("A*"));
        assert_eq!(mask_name("陈*平").as_deref(), Some("陈*"));
        assert_eq!(mask_name("  "), None);
    }

    #[test]
    fn review_keys_name_the_flag_and_the_words_found_never_the_memo() {
        let r = Rules {
            review_flags: vec![1],
            review_memo_words: vec!["HOLD".into(), "换色".into()],
            ..Rules::default()
        };
        assert_eq!(r.review_key(0, None), None);
        assert_eq!(r.review_key(1, None).as_deref(), Some("flag:1"));
        assert_eq!(
            r.review_key(2, Some("please hold, call 13912345678"))
                .as_deref(),
            Some("memo:HOLD")
        );
        assert_eq!(
            r.review_key(1, Some("客户要求换色")).as_deref(),
            Some("flag:1,memo:换色")
        );
    }

    #[test]
    fn a_line_with_an_open_refund_blocks_and_a_refunded_one_has_left() {
        let mut l = Line {
            oid: 1,
            num_iid: None,
            sku_id: None,
            outer_iid: None,
            outer_sku_id: None,
            title: None,
            properties: None,
            qty: 1,
            status: Some(TradeStatus::WaitSellerSendGoods),
            refund_status: Some(RefundStatus::WaitSellerAgree),
            refund_id: Some(9),
            mapping: Mapping::Unmapped,
        };
        assert!(l.refund_blocks());
        l.refund_status = Some(RefundStatus::SellerRefuseBuyer);
        assert!(!l.refund_blocks());
        l.refund_status = Some(RefundStatus::Success);
        assert!(l.is_closed() && !l.refund_blocks());
    }
}
