//! `wms-node demo`: the node, an embedded broker, the in-process Taobao sandbox and
//! simulated scanners and printers, in one process with a temporary data directory.
//!
//! Not wired yet: the lead connects it once the store, outbox, Taobao client and sandbox
//! have landed. Until then it says what it will do and exits 1.

use clap::Args;
use std::process::ExitCode;

/// `wms-node demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {}

/// Runs the demo.
pub fn run(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    super::not_built(
        "demo",
        "start the node with a temporary data directory, an embedded MQTT broker and a \
         simulated Taobao shop (the sandbox) in one process, create and pay a few orders, and \
         let simulated scanners pick, pack and ship them while the status page at \
         http://127.0.0.1:9870/ shows the queue draining to the simulated shop. No config \
         file and no internet needed.",
        "issues 2 and 3 (foundation, Taobao sandbox); the lead wires it when both land",
    )
}
