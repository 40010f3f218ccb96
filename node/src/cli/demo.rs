//! `wms-node demo`: the node, an embedded broker, the in-process Taobao sandbox and
//! simulated scanners and printers, in one process with a temporary data directory.
//!
//! Not built yet: it needs the order intake and the floor (pick tasks over MQTT), which are
//! not built either. Until then it says what it will do and exits 1.

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
        "not filed yet: it comes with order intake and the floor (DESIGN.md, CLI); the \
         store, outbox, Taobao client and sandbox it builds on are done",
    )
}
