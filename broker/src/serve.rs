//! `rivulet serve`: parse the configuration, start a [`Node`](crate::node::Node), serve until
//! SIGTERM/Ctrl-C or until the actor tree fails, then shut down cleanly.
//!
//! All start-up wiring lives in [`crate::node`], which a Rust program can embed; this module is
//! only what a process adds around it: the tracing subscriber, the system allocator's tuning,
//! the tokio runtime, figment configuration and signals. (The global allocator is installed in
//! `main.rs`.)

use std::process::ExitCode;

use tracing::{error, info};

use crate::config::{Config, ServeArgs};
use crate::node::NodeBuilder;

/// Entry point of `rivulet serve`.
pub fn main(args: ServeArgs) -> ExitCode {
    init_tracing();
    crate::alloc::tune_system_allocator();
    let cfg = match Config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,fjall=warn,lsm_tree=warn,openraft=warn,ractor_cluster=warn",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs a node until a signal arrives or the actor tree fails.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let mut node = NodeBuilder::new(cfg).start().await?;
    tokio::select! {
        _ = wait_for_signal() => info!("signal received; shutting down"),
        _ = node.failed() => error!("shutting down after the actor tree failed"),
    }
    node.shutdown().await?;
    Ok(())
}
