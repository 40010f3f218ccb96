//! `taobao-sandbox`: run the TOP emulator as a process.
//!
//! The first line on stdout is always `taobao-sandbox listening on http://HOST:PORT`, so tests
//! can start it on port 0 and read the address. Logs go to stderr (`RUST_LOG` filters them).
//! SIGTERM or Ctrl-C stops it cleanly (exit 0). Exit 2 on bad arguments, 1 when it cannot bind.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use taobao_sandbox::{
    DEFAULT_APP_KEY, DEFAULT_APP_SECRET, DEFAULT_SELLER_ID, DEFAULT_SELLER_NICK, PreIssued,
    SandboxConfig, TokenLifetimes,
};

/// A local emulator of the Taobao Open Platform gateway (/router/rest), its OAuth endpoints
/// (/oauth/authorize, /oauth/token) and an admin API (/sandbox/...). See docs/SANDBOX.md.
#[derive(Debug, Parser)]
#[command(name = "taobao-sandbox", version)]
struct Args {
    /// Address to listen on. Port 0 picks a free port; the bound address is printed on the
    /// first stdout line.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// App key the gateway accepts.
    #[arg(long, default_value = DEFAULT_APP_KEY, env = "TAOBAO_SANDBOX_APP_KEY")]
    app_key: String,
    /// App secret used to verify signatures (default: the one of TAOBAO.md's vectors).
    #[arg(long, default_value = DEFAULT_APP_SECRET, env = "TAOBAO_SANDBOX_APP_SECRET", hide_env_values = true)]
    app_secret: String,
    /// Pre-issue a session (access token) valid for one year, for tests that skip OAuth.
    /// Repeatable.
    #[arg(long = "session", value_name = "TOKEN")]
    sessions: Vec<String>,
    /// Calls per second per (app_key, method) before code 7 "App Call Limited"; 0 = unlimited.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Preload the demo catalogue (4 items, see docs/SANDBOX.md).
    #[arg(long)]
    seed: bool,
    /// Emit numeric ids (tid, oid, num_iid, ...) as JSON strings.
    #[arg(long)]
    ids_as_strings: bool,
    /// Seller nick of the shop.
    #[arg(long, default_value = DEFAULT_SELLER_NICK)]
    seller_nick: String,
    /// Seller id of the shop.
    #[arg(long, default_value_t = DEFAULT_SELLER_ID)]
    seller_id: i64,
    /// Access token lifetime in seconds (OAuth `expires_in`).
    #[arg(long, default_value_t = TokenLifetimes::default().access_s)]
    access_token_s: u64,
    /// Refresh token lifetime in seconds (`re_expires_in`); 0 = tokens cannot be refreshed.
    #[arg(long, default_value_t = TokenLifetimes::default().refresh_s)]
    refresh_token_s: u64,
    /// /oauth/authorize refuses with error=access_denied.
    #[arg(long)]
    oauth_deny: bool,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        eprintln!("taobao-sandbox: --rate must be a number >= 0 (0 = unlimited)");
        return ExitCode::from(2);
    }
    if args.app_key.is_empty() || args.app_secret.is_empty() {
        eprintln!("taobao-sandbox: --app-key and --app-secret must not be empty");
        return ExitCode::from(2);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("taobao-sandbox: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let stop = stop_signal();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("taobao-sandbox: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let cfg = SandboxConfig {
        app_key: args.app_key,
        app_secret: args.app_secret,
        sessions: args.sessions.into_iter().map(PreIssued::new).collect(),
        rate_per_second: (args.rate > 0.0).then_some(args.rate),
        seed_demo_catalogue: args.seed,
        ids_as_strings: args.ids_as_strings,
        seller_nick: args.seller_nick,
        seller_id: args.seller_id,
        token_lifetimes: TokenLifetimes {
            access_s: args.access_token_s,
            refresh_s: args.refresh_token_s,
            ..TokenLifetimes::default()
        },
        oauth_deny: args.oauth_deny,
        ..SandboxConfig::default()
    };
    let handle = match taobao_sandbox::spawn_on(listener, cfg) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("taobao-sandbox: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "taobao-sandbox listening on {}", handle.base_url());
        let _ = out.flush();
    }
    stop.await;
    tracing::info!("shutting down");
    match handle.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("taobao-sandbox: shutdown failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Registers for SIGTERM and SIGINT at once and returns what waits for either. Called before
/// the address is printed: a supervisor or a test may send SIGTERM as soon as it has read the
/// address, and a signal that comes before the registration kills the process instead.
#[cfg(unix)]
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    // SIGTERM from a supervisor or a test harness.
                    _ = term.recv() => {}
                    // Ctrl-C in a terminal.
                    _ = int.recv() => {}
                }
            }
            (Ok(mut term), Err(e)) => {
                tracing::warn!(error = %e, "cannot watch SIGINT; only SIGTERM stops the sandbox");
                term.recv().await;
            }
            (Err(e), Ok(mut int)) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the sandbox");
                int.recv().await;
            }
            (Err(e), Err(_)) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM or SIGINT; kill the sandbox");
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(not(unix))]
fn stop_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
