//! Sessions (OAuth access tokens), authorization codes and refresh tokens.
//!
//! A session is bound to one app key and the sandbox's one seller, and expires. The gateway
//! answers 27 with the real sub-codes (TAOBAO.md §4.4): `invalid-sessionkey` for an unknown
//! token, `sessionkey-not-generated-by-server` for a token issued to another app, and
//! `session-expired` for an expired or revoked one. Codes are single-use and expire; refresh
//! tokens are single-use (rotation) and are only issued when refresh is enabled
//! (`re_expires_in > 0`). A refresh leaves the old access token valid until its own expiry.
//!
//! Tokens are random and never logged.

use crate::secs_ms;
use std::collections::HashMap;

use rand::Rng;

use crate::envelope::TopError;

/// One issued access token.
#[derive(Debug, Clone)]
pub struct Session {
    /// App the token was issued to.
    pub app_key: String,
    /// Expiry, epoch ms.
    pub expires_at_ms: i64,
    /// Revoked by the `expire_tokens` fault.
    pub revoked: bool,
}

/// An authorization code waiting to be exchanged.
#[derive(Debug, Clone)]
pub struct Code {
    /// `client_id` it was issued to.
    pub app_key: String,
    /// `redirect_uri` it was issued for.
    pub redirect_uri: String,
    /// Expiry, epoch ms.
    pub expires_at_ms: i64,
    /// Already exchanged.
    pub used: bool,
}

/// A refresh token.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    /// App it belongs to.
    pub app_key: String,
    /// Expiry, epoch ms.
    pub expires_at_ms: i64,
    /// Already used (rotated).
    pub used: bool,
}

/// Lifetimes, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetimes {
    /// Access token (`expires_in`). Default 1 day.
    pub access_s: u64,
    /// Refresh token (`re_expires_in`); 0 = the app cannot refresh. Default 30 days.
    pub refresh_s: u64,
    /// Authorization code. Default 30 minutes.
    pub code_s: u64,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        TokenLifetimes {
            access_s: 86_400,
            refresh_s: 30 * 86_400,
            code_s: 1_800,
        }
    }
}

/// A freshly issued token pair.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Access token.
    pub access_token: String,
    /// Refresh token (empty when refresh is disabled).
    pub refresh_token: String,
    /// Access lifetime, s.
    pub expires_in: u64,
    /// Refresh lifetime, s (0 = cannot refresh).
    pub re_expires_in: u64,
    /// Issue time, epoch ms.
    pub issued_at_ms: i64,
}

/// Why a grant failed (answered as HTTP 400 `invalid_client`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GrantError(pub String);

/// Store of every token.
#[derive(Debug, Default)]
pub struct Auth {
    sessions: HashMap<String, Session>,
    codes: HashMap<String, Code>,
    refresh: HashMap<String, RefreshToken>,
}

fn token(prefix: &str, len: usize) -> String {
    const HEX: &[u8] = b"0123456789abcdef";
    let mut rng = rand::rng();
    let body: String = (0..len)
        .map(|_| HEX[rng.random_range(0..16)] as char)
        .collect();
    format!("{prefix}{body}")
}

impl Auth {
    /// Registers a token issued outside OAuth (`--session`).
    pub fn pre_issue(&mut self, token: &str, app_key: &str, expires_at_ms: i64) {
        self.sessions.insert(
            token.to_string(),
            Session {
                app_key: app_key.to_string(),
                expires_at_ms,
                revoked: false,
            },
        );
    }

    /// Registers a refresh token issued outside OAuth.
    pub fn pre_issue_refresh(&mut self, token: &str, app_key: &str, expires_at_ms: i64) {
        self.refresh.insert(
            token.to_string(),
            RefreshToken {
                app_key: app_key.to_string(),
                expires_at_ms,
                used: false,
            },
        );
    }

    /// Gateway check 10: the session is known, issued to `app_key` and still valid.
    pub fn check_session(
        &self,
        token: &str,
        app_key: &str,
        seller_id: i64,
        now_ms: i64,
    ) -> Result<(), TopError> {
        let invalid = || TopError::new(27, "Invalid session");
        let s = self
            .sessions
            .get(token)
            .ok_or_else(|| invalid().with_sub("invalid-sessionkey", "SessionKey非法"))?;
        if s.app_key != app_key {
            return Err(invalid().with_sub(
                "sessionkey-not-generated-by-server",
                format!(
                    "RealSession don't belong app and user ! appKey is : {app_key} , user id is : {seller_id}"
                ),
            ));
        }
        if s.revoked || now_ms >= s.expires_at_ms {
            return Err(invalid().with_sub("session-expired", "SessionKey已过期"));
        }
        Ok(())
    }

    /// Issues an authorization code.
    pub fn new_code(
        &mut self,
        app_key: &str,
        redirect_uri: &str,
        now_ms: i64,
        life: TokenLifetimes,
    ) -> String {
        let code = token("", 32);
        self.codes.insert(
            code.clone(),
            Code {
                app_key: app_key.to_string(),
                redirect_uri: redirect_uri.to_string(),
                expires_at_ms: now_ms.saturating_add(secs_ms(life.code_s)),
                used: false,
            },
        );
        code
    }

    fn issue(&mut self, app_key: &str, now_ms: i64, life: TokenLifetimes) -> Issued {
        let access = token("6200", 36);
        self.sessions.insert(
            access.clone(),
            Session {
                app_key: app_key.to_string(),
                expires_at_ms: now_ms.saturating_add(secs_ms(life.access_s)),
                revoked: false,
            },
        );
        let refresh = if life.refresh_s > 0 {
            let r = token("6201", 36);
            self.refresh.insert(
                r.clone(),
                RefreshToken {
                    app_key: app_key.to_string(),
                    expires_at_ms: now_ms.saturating_add(secs_ms(life.refresh_s)),
                    used: false,
                },
            );
            r
        } else {
            // Taobao still returns a refresh_token field for apps that cannot refresh; it is
            // useless there. Ours is not registered, so it always fails.
            token("6202", 36)
        };
        Issued {
            access_token: access,
            refresh_token: refresh,
            expires_in: life.access_s,
            re_expires_in: life.refresh_s,
            issued_at_ms: now_ms,
        }
    }

    /// `grant_type=authorization_code`.
    pub fn exchange_code(
        &mut self,
        code: &str,
        app_key: &str,
        redirect_uri: Option<&str>,
        now_ms: i64,
        life: TokenLifetimes,
    ) -> Result<Issued, GrantError> {
        let c = self.codes.get_mut(code).ok_or_else(|| {
            GrantError(format!(
                "authorize code {code} invalidate,please authorize again."
            ))
        })?;
        if c.used {
            return Err(GrantError(format!(
                "authorize code {code} is used,please authorize again."
            )));
        }
        if now_ms >= c.expires_at_ms {
            return Err(GrantError(format!(
                "authorize code {code} is expired,please authorize again."
            )));
        }
        if c.app_key != app_key {
            return Err(GrantError(
                "authorize code was issued to another client_id".into(),
            ));
        }
        if let Some(r) = redirect_uri
            && r != c.redirect_uri
        {
            return Err(GrantError(
                "redirect_uri does not match the authorize request".into(),
            ));
        }
        c.used = true;
        Ok(self.issue(app_key, now_ms, life))
    }

    /// `grant_type=refresh_token`.
    pub fn refresh(
        &mut self,
        refresh_token: &str,
        app_key: &str,
        now_ms: i64,
        life: TokenLifetimes,
    ) -> Result<Issued, GrantError> {
        let r = self
            .refresh
            .get_mut(refresh_token)
            .ok_or_else(|| GrantError("refresh_token is invalid".into()))?;
        if r.used {
            return Err(GrantError("refresh_token has been used".into()));
        }
        if now_ms >= r.expires_at_ms {
            return Err(GrantError("refresh_token is expired".into()));
        }
        if r.app_key != app_key {
            return Err(GrantError(
                "refresh_token was issued to another client_id".into(),
            ));
        }
        r.used = true;
        Ok(self.issue(app_key, now_ms, life))
    }

    /// The `expire_tokens` fault: every access token stops working now. Refresh tokens survive,
    /// so a client can recover by refreshing.
    pub fn revoke_all_sessions(&mut self) -> usize {
        for s in self.sessions.values_mut() {
            s.revoked = true;
        }
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "12345678";
    const SELLER: i64 = 2_200_000_000_001;

    fn sub(e: TopError) -> String {
        e.sub_code.unwrap_or_default()
    }

    #[test]
    fn sessions_are_bound_to_their_app_and_expire() {
        let mut a = Auth::default();
        a.pre_issue("tok", APP, 1_000);
        assert!(a.check_session("tok", APP, SELLER, 999).is_ok());
        assert_eq!(
            sub(a.check_session("tok", APP, SELLER, 1_000).unwrap_err()),
            "session-expired"
        );
        assert_eq!(
            sub(a.check_session("tok", "other", SELLER, 0).unwrap_err()),
            "sessionkey-not-generated-by-server"
        );
        assert_eq!(
            sub(a.check_session("nope", APP, SELLER, 0).unwrap_err()),
            "invalid-sessionkey"
        );
    }

    #[test]
    fn codes_are_single_use_and_expire() {
        let mut a = Auth::default();
        let life = TokenLifetimes::default();
        let code = a.new_code(APP, "http://cb", 0, life);
        let issued = a
            .exchange_code(&code, APP, Some("http://cb"), 1, life)
            .unwrap();
        assert!(
            a.check_session(&issued.access_token, APP, SELLER, 2)
                .is_ok()
        );
        assert!(a.exchange_code(&code, APP, None, 2, life).is_err());
        let late = a.new_code(APP, "http://cb", 0, life);
        assert!(a.exchange_code(&late, APP, None, 1_800_000, life).is_err());
        let wrong_uri = a.new_code(APP, "http://cb", 0, life);
        assert!(
            a.exchange_code(&wrong_uri, APP, Some("http://evil"), 1, life)
                .is_err()
        );
    }

    #[test]
    fn refresh_tokens_rotate_and_do_not_exist_when_refresh_is_disabled() {
        let mut a = Auth::default();
        let life = TokenLifetimes::default();
        let code = a.new_code(APP, "cb", 0, life);
        let first = a.exchange_code(&code, APP, None, 0, life).unwrap();
        let second = a.refresh(&first.refresh_token, APP, 10, life).unwrap();
        assert_ne!(second.access_token, first.access_token);
        assert!(
            a.refresh(&first.refresh_token, APP, 11, life).is_err(),
            "single use"
        );
        let no_refresh = TokenLifetimes {
            refresh_s: 0,
            ..life
        };
        let code = a.new_code(APP, "cb", 0, no_refresh);
        let fixed = a.exchange_code(&code, APP, None, 0, no_refresh).unwrap();
        assert_eq!(fixed.re_expires_in, 0);
        assert!(a.refresh(&fixed.refresh_token, APP, 1, no_refresh).is_err());
    }

    #[test]
    fn revoking_expires_every_access_token_but_keeps_refresh_tokens() {
        let mut a = Auth::default();
        let life = TokenLifetimes::default();
        let code = a.new_code(APP, "cb", 0, life);
        let t = a.exchange_code(&code, APP, None, 0, life).unwrap();
        a.revoke_all_sessions();
        assert_eq!(
            sub(a
                .check_session(&t.access_token, APP, SELLER, 1)
                .unwrap_err()),
            "session-expired"
        );
        let fresh = a.refresh(&t.refresh_token, APP, 2, life).unwrap();
        assert!(a.check_session(&fresh.access_token, APP, SELLER, 3).is_ok());
    }
}
