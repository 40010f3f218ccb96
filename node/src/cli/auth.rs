//! `wms-node auth`: authorise the node for a Taobao shop (OAuth 2.0) and show the state of
//! that authorisation. Never prints a token, a code's exchange result or the app secret.
//!
//! | command            | does                                                              |
//! |--------------------|-------------------------------------------------------------------|
//! | `url`              | prints the authorize URL (with a fresh random `state`)           |
//! | `exchange CODE`    | trades the code from the redirect for tokens and stores them     |
//! | `login`            | listens for the redirect locally, prints the URL, does both      |
//! | `status`           | shop, expiry and whether the node can refresh by itself          |
//! | `refresh`          | refreshes now (normally automatic)                                |
//!
//! Tokens live in the node's store, which only one process may open. While the node runs,
//! `exchange`, `login`, `status` and `refresh` go through its admin API (`[http] listen`,
//! see [`wms_node::taobao::admin`]): the node trades the code and resumes delivery at once.
//! When no node answers there, they open the store themselves.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use wms_node::config::Config;
use wms_node::ops::alert::Alerts;
use wms_node::outbox::admin::ClientError;
use wms_node::status::i18n::{Lang, Msg, pad, width};
use wms_node::store::{OpenError, Store};
use wms_node::taobao::admin::AuthClient;
use wms_node::taobao::login::receive_redirect;
use wms_node::taobao::oauth::{OAuthClient, OAuthError};
use wms_node::taobao::setup;
use wms_node::taobao::tokens::{RedbTokenStore, TokenManager, TokenStatus, TokenStore};

/// What to do about a refused code.
const CODE_HINT: &str = "codes are single-use and expire after about 30 minutes; get a new one \
                         with `wms-node auth login` (or `auth url`)";

/// What to do when the node cannot refresh.
const REAUTH_HINT: &str = "run `wms-node auth login` to authorise again";

/// Where `auth login` listens when neither the config nor `--redirect-uri` names a callback.
const DEFAULT_LOGIN_REDIRECT: &str = "http://127.0.0.1:8765/callback";

/// `wms-node auth` options.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuthCommand,
}

/// `wms-node auth` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Print the URL at which the shop owner authorizes the node.
    Url {
        /// The callback registered for the app (default: `taobao.redirect_uri`).
        #[arg(long, value_name = "URI")]
        redirect_uri: Option<String>,
    },
    /// Trade an authorization code (the `code` of the redirect) for tokens and store them.
    Exchange {
        /// The `code` from the redirect.
        code: String,
        /// The callback the code was issued for (default: `taobao.redirect_uri`).
        #[arg(long, value_name = "URI")]
        redirect_uri: Option<String>,
    },
    /// Authorize interactively: print the URL, catch the redirect locally, store the token.
    Login {
        /// The callback to ask for; it must be registered for the app. Default:
        /// `taobao.redirect_uri`, else http://127.0.0.1:8765/callback. Port 0 picks a free
        /// port.
        #[arg(long, value_name = "URI")]
        redirect_uri: Option<String>,
        /// Listen here instead of the callback's own host and port (e.g. `0.0.0.0:8765`
        /// when the browser runs on another machine).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// How long to wait for the redirect.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Show the shop, expiry and whether the token can be refreshed (never the token).
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Refresh the access token now (the node also does this by itself ahead of expiry).
    Refresh,
}

/// Runs an auth command.
pub fn run(args: AuthArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(args, config))
}

async fn run_async(args: AuthArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let t = &config.taobao;
    let lang = config.node.language;
    match args.command {
        AuthCommand::Url { redirect_uri } => {
            let Some(redirect) = redirect_uri.or_else(|| t.redirect_uri.clone()) else {
                return usage(
                    "no callback: set taobao.redirect_uri or pass --redirect-uri \
                     (the URI registered for the app in the Taobao Open Platform console)",
                );
            };
            let oauth = oauth_client(config, Some(redirect))?;
            let state = OAuthClient::new_state();
            outln!("{}", oauth.authorize_url(&state));
            eprintln!(
                "Open the URL as the shop's owner and approve. Taobao then redirects to the \
                 callback with ?code=…&state={state}; run `wms-node auth exchange CODE` with \
                 that code within 30 minutes (check that state matches)."
            );
            Ok(ExitCode::SUCCESS)
        }
        AuthCommand::Exchange { code, redirect_uri } => {
            let Some(redirect) = redirect_uri.or_else(|| t.redirect_uri.clone()) else {
                return usage("no callback: set taobao.redirect_uri or pass --redirect-uri");
            };
            if let Some(node) = running_node(config).await? {
                if let Err(why) = node_callback(config, &redirect) {
                    return usage(&why);
                }
                return node_answer(
                    node.exchange(&code, Some(redirect)).await,
                    false,
                    CODE_HINT,
                    lang,
                );
            }
            let store = open_store(config)?;
            let oauth = oauth_client(config, Some(redirect))?;
            let tokens = match oauth.exchange(&code).await {
                Ok(t) => t,
                Err(e) => return grant_failed(e),
            };
            let manager = manager(config, store.clone())?;
            manager
                .install(tokens)
                .await
                .context("cannot store the tokens")?;
            print_status(manager.status().await.ok().flatten(), false, lang);
            close(store).await;
            Ok(ExitCode::SUCCESS)
        }
        AuthCommand::Login {
            redirect_uri,
            listen,
            timeout,
        } => login(config, redirect_uri, listen, timeout).await,
        AuthCommand::Status { json } => {
            let status = match running_node(config).await? {
                Some(node) => node.state().await?.status,
                None => {
                    let store = open_store(config)?;
                    let tokens = RedbTokenStore::new(store.clone());
                    let status = tokens
                        .load()
                        .context("cannot read the tokens")?
                        .map(|t| t.status(chrono::Utc::now()));
                    close(store).await;
                    status
                }
            };
            let code = if status.as_ref().is_some_and(|s| !s.expired) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
            print_status(status, json, lang);
            Ok(code)
        }
        AuthCommand::Refresh => {
            if let Some(node) = running_node(config).await? {
                return node_answer(node.refresh().await, false, REAUTH_HINT, lang);
            }
            let store = open_store(config)?;
            let manager = manager(config, store.clone())?;
            let r = manager.refresh_now().await;
            close(store).await;
            match r {
                Ok(status) => {
                    print_status(Some(status), false, lang);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    eprintln!("hint: {REAUTH_HINT}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// A running node trades only codes for its configured callback: say so before anyone is
/// asked to approve anything.
fn node_callback(config: &Config, redirect: &str) -> Result<(), String> {
    wms_node::taobao::admin::check_callback(
        config.taobao.redirect_uri.as_deref().unwrap_or(""),
        Some(redirect),
    )
    .map_err(|why| format!("{why} (the node is running: {})", config.admin_url()))
}

async fn login(
    config: &Config,
    redirect_uri: Option<String>,
    listen: Option<SocketAddr>,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let lang = config.node.language;
    let redirect = redirect_uri
        .or_else(|| config.taobao.redirect_uri.clone())
        .unwrap_or_else(|| DEFAULT_LOGIN_REDIRECT.to_owned());
    let bind = match listen {
        Some(addr) => addr,
        None => match loopback_addr(&redirect) {
            Ok(addr) => addr,
            Err(why) => return usage(&why),
        },
    };
    // Decide where the tokens go before asking anyone to click: the running node, or the
    // store opened here (and held, so that nothing else takes it meanwhile).
    let target = match running_node(config).await? {
        Some(node) => {
            // Port 0 is "any free port", which the node's configured callback cannot be.
            if let Err(why) = node_callback(config, &redirect) {
                return usage(&why);
            }
            Target::Node(node)
        }
        None => Target::Store(open_store(config)?),
    };
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} for the redirect"))?;
    let bound = listener
        .local_addr()
        .context("cannot read the listen address")?;
    // Port 0 in the callback means "any free port": put the one we got into it.
    let redirect = with_port_if_zero(&redirect, bound.port());
    let oauth = oauth_client(config, Some(redirect.clone()))?;
    let state = OAuthClient::new_state();
    outln!("{}\n", lang.t(Msg::AuthLoginOpen));
    outln!("  {}\n", oauth.authorize_url(&state));
    let wait = humantime::format_duration(timeout);
    outln!(
        "{}",
        lang.f(Msg::AuthLoginWaiting, &[&wait, &redirect, &bound])
    );
    let code = match receive_redirect(listener, &state, timeout).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if let Target::Store(store) = target {
                close(store).await;
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let store = match target {
        Target::Node(node) => {
            return node_answer(
                node.exchange(&code, Some(redirect)).await,
                true,
                CODE_HINT,
                lang,
            );
        }
        Target::Store(store) => store,
    };
    let tokens = match oauth.exchange(&code).await {
        Ok(t) => t,
        Err(e) => {
            close(store).await;
            return grant_failed(e);
        }
    };
    let manager = manager(config, store.clone())?;
    manager
        .install(tokens)
        .await
        .context("cannot store the tokens")?;
    outln!("{}", lang.t(Msg::AuthAuthorised));
    print_status(manager.status().await.ok().flatten(), false, lang);
    close(store).await;
    Ok(ExitCode::SUCCESS)
}

/// Where `auth login` stores what it gets.
enum Target {
    /// The running node trades the code.
    Node(AuthClient),
    /// This process does, into the store it holds.
    Store(Store),
}

/// The running node's admin API, if a node answers at `[http] listen`.
async fn running_node(config: &Config) -> anyhow::Result<Option<AuthClient>> {
    let url = config.admin_url();
    let node = AuthClient::new(&url)?;
    match node.state().await {
        Ok(_) => Ok(Some(node)),
        Err(ClientError::Unreachable { .. }) => Ok(None),
        Err(e) => Err(anyhow::anyhow!(
            "something answers at {url} ([http] listen), but not as this version of \
             wms-node: {e}"
        )),
    }
}

/// Prints what the running node answered; a refused grant gets the same hint as here.
fn node_answer(
    answer: Result<wms_node::taobao::admin::AuthState, ClientError>,
    login: bool,
    hint: &str,
    lang: Lang,
) -> anyhow::Result<ExitCode> {
    match answer {
        Ok(state) => {
            if login {
                outln!("{}", lang.t(Msg::AuthAuthorised));
            }
            print_status(state.status, false, lang);
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Api {
            status: 400,
            message,
        }) => {
            eprintln!("error: {message}");
            eprintln!("hint: {hint}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `http://127.0.0.1:0/cb` → `http://127.0.0.1:<port>/cb`; other callbacks unchanged.
fn with_port_if_zero(redirect: &str, port: u16) -> String {
    match reqwest::Url::parse(redirect) {
        Ok(mut url) if url.port() == Some(0) => {
            if url.set_port(Some(port)).is_ok() {
                url.into()
            } else {
                redirect.to_owned()
            }
        }
        _ => redirect.to_owned(),
    }
}

/// The socket address of a loopback callback (`http://127.0.0.1:8765/cb`).
fn loopback_addr(redirect: &str) -> Result<SocketAddr, String> {
    let url = reqwest::Url::parse(redirect)
        .map_err(|e| format!("the callback {redirect:?} is not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "`auth login` serves plain http on this machine, but the callback is {redirect}; \
             pass --redirect-uri http://127.0.0.1:PORT/… (registered for the app), or use \
             `auth url` and `auth exchange CODE`"
        ));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let host = url.host_str().unwrap_or("");
    let ip: Option<std::net::IpAddr> = if host.eq_ignore_ascii_case("localhost") {
        Some(std::net::Ipv4Addr::LOCALHOST.into())
    } else {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok()
            .filter(std::net::IpAddr::is_loopback)
    };
    let Some(ip) = ip else {
        return Err(format!(
            "the callback {redirect} is not on this machine; pass --listen ADDR to listen \
             where it points (e.g. --listen 0.0.0.0:{port}), or use `auth url` and \
             `auth exchange CODE`"
        ));
    };
    Ok(SocketAddr::new(ip, port))
}

fn oauth_client(config: &Config, redirect: Option<String>) -> anyhow::Result<OAuthClient> {
    OAuthClient::new(config.taobao.oauth_options(redirect))
        .context("cannot set up the OAuth client (check taobao.oauth_url, app_key, app_secret)")
}

fn manager(config: &Config, store: Store) -> anyhow::Result<Arc<TokenManager>> {
    let m = setup::token_manager(&config.taobao.oauth_options(None), store, Alerts::new())
        .context("cannot set up the token manager")?;
    Ok(Arc::new(m))
}

fn open_store(config: &Config) -> anyhow::Result<Store> {
    let opts = config.store_options();
    let path = opts.path.clone();
    match Store::open(opts, Alerts::new()) {
        Ok(s) => Ok(s),
        Err(OpenError::InUse { .. }) => Err(anyhow::anyhow!(
            "the node is running and holds {}; stop it (e.g. `systemctl stop wms-node`), run \
             this command, then start it again (queued shipments and stock updates are kept)",
            path.display()
        )),
        Err(e) => Err(e).context("cannot open the store"),
    }
}

async fn close(store: Store) {
    if let Err(e) = store.close().await {
        eprintln!("warning: closing the store: {e}");
    }
}

fn usage(message: &str) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(super::EXIT_USAGE))
}

fn grant_failed(e: OAuthError) -> anyhow::Result<ExitCode> {
    eprintln!("error: {e}");
    if !e.is_retryable() {
        eprintln!("hint: {CODE_HINT}");
    }
    Ok(ExitCode::FAILURE)
}

fn gmt8(at: chrono::DateTime<chrono::Utc>) -> String {
    format!("{} (GMT+8)", wms_node::taobao::time::format(at))
}

fn left(at: chrono::DateTime<chrono::Utc>, lang: Lang) -> String {
    let d = at - chrono::Utc::now();
    if d <= chrono::Duration::zero() {
        return lang.t(Msg::AuthExpired).into();
    }
    let secs = u64::try_from(d.num_seconds()).unwrap_or(0);
    let d = Duration::from_secs(secs - secs % 60);
    let d = match lang {
        Lang::En => humantime::format_duration(d).to_string(),
        Lang::Zh => lang.age(d),
    };
    lang.f(Msg::AuthExpiresIn, &[&d])
}

fn print_status(status: Option<TokenStatus>, json: bool, lang: Lang) {
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&status).unwrap_or_else(|_| "null".into())
        );
        return;
    }
    let t = |m| lang.t(m);
    let Some(s) = status else {
        outln!("{}", t(Msg::AuthNot));
        return;
    };
    let labels = [
        Msg::AuthShop,
        Msg::AuthSource,
        Msg::AuthExpires,
        Msg::AuthRefresh,
    ];
    // The values line up after the widest label, in terminal columns.
    let w = labels.iter().map(|&m| width(t(m))).max().unwrap_or(0) + 2;
    let row = |m: Msg, value: &str| outln!("{}{value}", pad(t(m), w));
    let shop = s.shop_nick.as_deref().unwrap_or(t(Msg::AuthUnknownShop));
    match &s.user_id {
        Some(id) => row(Msg::AuthShop, &lang.f(Msg::AuthSellerId, &[&shop, id])),
        None => row(Msg::AuthShop, shop),
    }
    row(Msg::AuthSource, &s.origin.to_string());
    match s.expires_at {
        Some(at) => row(
            Msg::AuthExpires,
            &format!("{} — {}", gmt8(at), left(at, lang)),
        ),
        None => row(Msg::AuthExpires, t(Msg::AuthExpiresUnknown)),
    }
    match (s.refreshable, s.refresh_expires_at) {
        (true, Some(at)) => row(
            Msg::AuthRefresh,
            &lang.f(Msg::AuthRefreshUntil, &[&gmt8(at)]),
        ),
        (true, None) => row(Msg::AuthRefresh, t(Msg::AuthRefreshAuto)),
        (false, _) => row(Msg::AuthRefresh, t(Msg::AuthRefreshNo)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_callback_gives_the_listen_address() {
        assert_eq!(
            loopback_addr("http://127.0.0.1:8765/callback").ok(),
            Some(SocketAddr::from(([127, 0, 0, 1], 8765)))
        );
        assert_eq!(
            loopback_addr("http://localhost:9000/cb").ok(),
            Some(SocketAddr::from(([127, 0, 0, 1], 9000)))
        );
        assert!(loopback_addr("https://127.0.0.1:8765/cb").is_err());
        assert!(
            loopback_addr("http://relay.example.com/cb").is_err_and(|e| e.contains("--listen"))
        );
        assert!(loopback_addr("not a url").is_err());
    }

    #[test]
    fn port_zero_in_the_callback_becomes_the_bound_port() {
        assert_eq!(
            with_port_if_zero("http://127.0.0.1:0/cb?x=1", 4321),
            "http://127.0.0.1:4321/cb?x=1"
        );
        assert_eq!(
            with_port_if_zero("http://127.0.0.1:80/cb", 4321),
            "http://127.0.0.1:80/cb"
        );
    }
}
