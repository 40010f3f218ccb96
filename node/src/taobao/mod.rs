//! The Taobao Open Platform client: signing, OAuth, typed calls, error classes.
//!
//! # Layout
//!
//! | module       | owns                                                                   |
//! |--------------|------------------------------------------------------------------------|
//! | [`sign`]     | `md5` / `hmac` / `hmac-sha256` signatures (pure)                       |
//! | [`time`]     | the GMT+8 wire dates, whatever the host's zone (pure)                  |
//! | [`decode`]   | lenient JSON: both envelopes, list wrappers, ids, money (pure)         |
//! | [`error`]    | [`TopError`] and its `disposition()` (the retry table)                 |
//! | [`types`]    | Trade, Order, Item, Sku, Refund, Waybill… as Taobao names them         |
//! | [`limit`]    | token buckets per app and per method, code-7 bans per scope            |
//! | [`client`]   | [`TopClient`]: sign, send, classify, log, count                        |
//! | [`api`]      | the typed calls (`trades.sold.increment.get`, `logistics.offline.send`…) |
//! | [`oauth`]    | authorize URL, code exchange, refresh; [`oauth::TokenSet`]             |
//! | [`login`]    | catches the OAuth redirect on a local port (`auth login`)              |
//! | [`tokens`]   | the `tokens` table, [`tokens::TokenManager`] (refresh, alerts)         |
//! | [`setup`]    | `[taobao]` config → client, token manager, seeded session              |
//! | [`outbox`]   | [`outbox::TaobaoOp`] and [`outbox::TaobaoSink`] for the outbox          |
//!
//! Must never log or return in an error: the app secret, the session (access token), refresh
//! tokens, signature inputs, or receiver fields (name, address, phone, mobile).

pub mod admin;
pub mod api;
pub mod budget;
pub mod client;
pub mod decode;
pub mod error;
pub mod limit;
pub mod login;
pub mod oauth;
pub mod outbox;
pub mod setup;
pub mod sign;
pub mod status;
pub mod time;
pub mod tokens;
pub mod types;

pub use client::{ClientOptions, Params, Session, SessionProvider, StaticSession, TopClient};
pub use decode::Fen;
pub use error::{ApiError, BanScope, Disposition, TopError};
pub use sign::SignMethod;
