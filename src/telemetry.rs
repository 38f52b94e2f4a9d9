//! Trace export: OpenTelemetry over OTLP (HTTP/protobuf) when the standard variables ask for it,
//! nothing at all when they do not — no exporter, no background thread, no span ids spent.
//!
//! Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set
//! and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise. The SDK and
//! the exporter read the other `OTEL_*` variables themselves (headers, timeout, sampler, batch
//! queue; `docs/running.md` lists them). The provider is also the global one, through which the
//! Kafka consumer records each command's "apply command" span (see
//! `payment_kafka::trace_context`). A broken configuration (an endpoint that is not a URL) is
//! logged and the service runs without export: traces are worth less than payments.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The service name reported when `OTEL_SERVICE_NAME` does not set one.
pub const SERVICE_NAME: &str = "payment-service";

/// The OTLP pipeline while export is on; [`TraceExport::shutdown`] flushes what is queued.
pub struct TraceExport {
    provider: SdkTracerProvider,
}

/// Whether the environment asks for trace export (see the module documentation).
pub fn export_requested(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|value| !value.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true"));
    let no_exporter = var("OTEL_TRACES_EXPORTER").is_some_and(|value| value.trim().eq_ignore_ascii_case("none"));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) && !disabled && !no_exporter
}

impl TraceExport {
    /// The OTLP pipeline if the environment asks for one, with the `tracing` layer that feeds it;
    /// `None` (and no thread started) otherwise. Call before the runtime's work starts.
    pub fn from_env<S>() -> Option<(Self, impl Layer<S>)>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        if !export_requested(|name| std::env::var(name).ok()) {
            return None;
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
            Ok(exporter) => exporter,
            Err(error) => {
                // No subscriber yet: this goes to stderr as the logs would.
                eprintln!("cannot export traces ({error}); the service runs without trace export");
                return None;
            }
        };
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(SERVICE_NAME);
        }
        let provider =
            SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(SERVICE_NAME));
        Some((Self { provider }, layer))
    }

    /// Sends the spans still queued and stops the exporter's thread.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "trace export did not shut down cleanly; the last spans may be lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::export_requested;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string())
    }

    #[test]
    fn export_follows_the_standard_variables() {
        assert!(!export_requested(env(&[])));
        assert!(!export_requested(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(export_requested(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")])));
        assert!(export_requested(env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")])));
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert!(!export_requested(env(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")])));
        assert!(!export_requested(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])));
        assert!(export_requested(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "otlp")])));
    }
}
