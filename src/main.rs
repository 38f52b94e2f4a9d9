//! The payment service binary: logs, trace export, the process-wide metrics recorder and the signals, around
//! [`payment_service::process::run`]. `cargo run` runs it with no configuration on an in-memory
//! store and an embedded Kafka-protocol broker; `--help` lists every setting. A subcommand
//! (`reconcile`) runs instead of the service.

#![forbid(unsafe_code)]

use std::io::IsTerminal;

use clap::Parser;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use payment_service::telemetry::TraceExport;
use payment_service::{commands, process, LogFormat, Settings};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let settings = Settings::parse();
    let export = init_logs(settings.log_format);
    let status = run(settings).await;
    if let Some(export) = export {
        export.shutdown();
    }
    status
}

async fn run(settings: Settings) -> std::process::ExitCode {
    if let Some(command) = settings.command.clone() {
        // One sentence on stderr and a failure status: an operator's shell, not a log shipper.
        return match commands::run(command, &settings).await {
            Ok(status) => status,
            Err(error) => {
                eprintln!("error: {error}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let metrics = match recorder().and_then(PrometheusBuilder::install_recorder) {
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

/// Histogram buckets for every `*_seconds` histogram: 1 ms to 30 s.
const SECONDS_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Histogram buckets for the messages per batch, up to the largest `BATCH_MAX_MESSAGES`.
const BATCH_MESSAGES_BUCKETS: [f64; 13] =
    [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0];

/// The exporter renders histograms as Prometheus histograms (`_bucket`, `_sum`, `_count`), not
/// as its default summaries: buckets add up across instances (`histogram_quantile` over `sum by
/// (le)`), quantiles of summaries do not, and the dashboards in `deploy/` rely on that.
fn recorder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(payment_kafka::telemetry::BATCH_MESSAGES.into()), &BATCH_MESSAGES_BUCKETS)
}

/// Logs go to stderr (stdout carries only the embedded broker's address, for a person to copy),
/// filtered by `RUST_LOG` (default `info`), coloured only on a terminal: journald, `docker logs`
/// and log shippers get no escape codes. librdkafka's lines come through `tracing` too: the
/// service's clients log through their contexts, and rdkafka's default context logs through the
/// `log` crate, which the subscriber's `tracing-log` bridge forwards. Spans go to OpenTelemetry
/// when the `OTEL_*` variables ask for it ([`TraceExport`]), whose pipeline is returned to be
/// flushed at exit.
fn init_logs(format: LogFormat) -> Option<TraceExport> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines.with_ansi(std::io::stderr().is_terminal()).boxed(),
        // One object a line: timestamp, level, target, and the message with the event's fields at
        // the top level, plus the current span's fields — `trace_id` among them inside a traced
        // span (a command's publication, an HTTP request, a batch).
        LogFormat::Json => lines.json().flatten_event(true).with_current_span(true).with_span_list(false).boxed(),
    };
    let (export, spans) = TraceExport::from_env().unzip();
    tracing_subscriber::registry().with(filter).with(lines).with(spans).init();
    export
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
