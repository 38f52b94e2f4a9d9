//! The payment service binary. `cargo run` runs it with no configuration on an
//! in-memory store and an embedded Kafka-protocol broker; `--help` lists every setting.

use clap::Parser;
use payment_service::{run, Settings};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    match run(Settings::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "payment service failed");
            std::process::ExitCode::FAILURE
        }
    }
}
