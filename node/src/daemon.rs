//! `run(config, shutdown)`: the task tree and its orderly shutdown.
