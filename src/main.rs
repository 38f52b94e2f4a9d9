//! The payment service binary: logs, the process-wide metrics recorder and the signals, around
//! [`payment_service::process::run`]. `cargo run` runs it with no configuration on an in-memory
//! store and an embedded Kafka-protocol broker; `--help` lists every setting.

use std::io::IsTerminal;

use clap::Parser;
use payment_service::{process, LogFormat, Settings};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let settings = Settings::parse();
    init_logs(settings.log_format);
    let metrics = match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(handle) => Some(handle),
        Err(error) => {
            tracing::warn!(%error, "cannot install the metrics recorder; /metrics stays empty");
            None
        }
    };
    match process::run(settings, metrics, shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "payment service failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout carries only the embedded broker's address, for a person to copy),
/// filtered by `RUST_LOG` (default `info`), coloured only on a terminal: journald, `docker logs`
/// and log shippers get no escape codes. librdkafka's lines come through `tracing` too: the
/// service's clients log through their contexts, and rdkafka's default context logs through the
/// `log` crate, which the subscriber's `tracing-log` bridge forwards.
fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // One object a line: timestamp, level, target, and the message with the event's fields at
        // the top level, plus the current span's fields.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the service");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
