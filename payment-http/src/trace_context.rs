//! The span of each HTTP request, continuing the caller's W3C trace: a `traceparent` (and
//! `tracestate`) header makes the request's span the child of the caller's span, so a shop's
//! trace runs through its calls to this API. A malformed header is ignored (logged at debug), as
//! for Kafka commands. The span's `trace_id` field names the trace, so every log line of the
//! request (JSON logs print the current span's fields) can be found from the caller's trace;
//! `span_id` names the request's own span when an OpenTelemetry layer is installed.

use axum::http::Request;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use payment_core::domain::TraceContext;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The caller's trace context, if its headers carry a valid one.
pub fn of_request<B>(request: &Request<B>) -> Option<TraceContext> {
    let header = |name: &str| request.headers().get(name).and_then(|value| value.to_str().ok());
    TraceContext::from_headers(header("traceparent"), header("tracestate"))
}

/// The `http` span of `request`: method, URI, request id, and the caller's trace as its parent.
pub fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
    let span = tracing::info_span!(
        "http",
        otel.kind = "server",
        method = %request.method(),
        uri = %request.uri(),
        request_id = %id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let caller = of_request(request);
    if let Some(trace) = &caller {
        // Without an OpenTelemetry layer there is no parent to set; the field still names the trace.
        let _ = span.set_parent(Context::new().with_remote_span_context(remote_span_context(trace)));
    }
    // The trace the span is in: the caller's, or a new one when the caller sent none.
    let own = span.context().span().span_context().clone();
    if own.is_valid() {
        span.record("trace_id", own.trace_id().to_string());
        span.record("span_id", own.span_id().to_string());
    } else if let Some(trace) = &caller {
        span.record("trace_id", trace.trace_id_hex());
    }
    span
}

fn remote_span_context(trace: &TraceContext) -> SpanContext {
    let state = trace.tracestate().and_then(|state| state.parse::<TraceState>().ok()).unwrap_or_default();
    SpanContext::new(
        TraceId::from_bytes(trace.trace_id()),
        SpanId::from_bytes(trace.parent_id()),
        TraceFlags::new(trace.flags()),
        true,
        state,
    )
}
