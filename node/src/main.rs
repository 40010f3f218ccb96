//! The `wms-node` binary: the command line only. Everything it runs lives in the library
//! (`wms_node::…`); see `cli/mod.rs` for the commands and exit codes.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
