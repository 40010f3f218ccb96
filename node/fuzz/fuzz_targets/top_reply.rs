//! Any bytes as the reply of any TOP method, through exactly what the client does with a
//! reply: `decode::reply` (JSON, either envelope), the method's typed decoding, the error's
//! classification, and a ban recorded in the limiter. Never a panic; a ban is never longer
//! than `MAX_BAN`. The first byte picks the method.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use wms_node::taobao::api::{METHODS, decode_result};
use wms_node::taobao::decode;
use wms_node::taobao::error::{MAX_BAN, ban_seconds};
use wms_node::taobao::limit::{Limiter, RateLimits};
use wms_node::taobao::{Disposition, Fen};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(pick) % METHODS.len()];
    match decode::reply(method, body) {
        Ok((v, _request_id)) => {
            let _ = decode_result(method, v);
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = e.code_label();
            let _ = e.outcome();
            if let Disposition::Retry { after: Some(a) } = e.disposition() {
                assert!(a <= MAX_BAN.max(Duration::from_secs(60)), "{a:?}");
            }
            if let Some(api) = e.api()
                && let Some((scope, after)) = api.ban()
            {
                if let Some(a) = after {
                    assert!(a <= MAX_BAN, "a ban of {a:?}");
                }
                let now = chrono::Utc::now();
                let limiter = Limiter::new(RateLimits::unlimited());
                limiter.ban(scope, after.unwrap_or(Duration::from_secs(1)), now);
                let _ = limiter.check_ban(method, now);
            }
        }
    }
    // The scalar readers on their own.
    if let Ok(s) = std::str::from_utf8(body) {
        let _ = wms_node::taobao::time::parse(s);
        let _ = s.parse::<Fen>();
        let _ = ban_seconds(s);
    }
});
