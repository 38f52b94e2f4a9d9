//! W3C trace context on Kafka records: read from a command's `traceparent`/`tracestate` headers,
//! written on the outcome event, and turned into OpenTelemetry parents and links for the spans
//! of a batch.
//!
//! A batch applies many commands from as many traces at once, so the batch span cannot be the
//! child of all of them: it *links* to each command's context (OpenTelemetry's model for batch
//! consumers), and each command gets a short span of its own, "apply command", the child of the
//! shop's span, whose id is [`TraceContext::apply_span`] — the very id the outcome event names as
//! its parent, so a tracing backend shows shop → apply command → publish → the event's consumer
//! as one trace. Nothing here costs anything when no OpenTelemetry layer or tracer provider is
//! installed: the parents and links are dropped and the global tracer is a no-op.

use std::time::SystemTime;

use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
};
use opentelemetry::{Context, KeyValue};
use payment_core::decide::Outcome;
use payment_core::domain::{Inbound, TraceContext};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header carrying the parent span.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The header carrying the vendors' state.
pub const TRACESTATE_HEADER: &str = "tracestate";

/// The name of the per-command span, as tracing backends show it.
pub const APPLY_COMMAND_SPAN: &str = "apply command";

/// The trace context of a command record, or `None` (a malformed one is logged and ignored).
pub(crate) fn of_record(message: &BorrowedMessage<'_>) -> Option<TraceContext> {
    let header = |name: &str| {
        message.headers().and_then(|headers| {
            headers.iter().find(|h| h.key == name).and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
        })
    };
    TraceContext::from_headers(header(TRACEPARENT_HEADER), header(TRACESTATE_HEADER))
}

/// The headers an outcome event continuing `trace` carries.
pub(crate) fn headers_of(trace: &TraceContext) -> Vec<(&'static str, String)> {
    let mut headers = vec![(TRACEPARENT_HEADER, trace.traceparent())];
    if let Some(state) = trace.tracestate() {
        headers.push((TRACESTATE_HEADER, state.to_owned()));
    }
    headers
}

/// `trace` as an OpenTelemetry span context received from elsewhere.
pub fn remote_span_context(trace: &TraceContext) -> SpanContext {
    let state = trace.tracestate().and_then(|state| state.parse::<TraceState>().ok()).unwrap_or_default();
    SpanContext::new(
        TraceId::from_bytes(trace.trace_id()),
        SpanId::from_bytes(trace.parent_id()),
        TraceFlags::new(trace.flags()),
        true,
        state,
    )
}

/// An OpenTelemetry parent context continuing `trace`.
pub fn parent_context(trace: &TraceContext) -> Context {
    Context::new().with_remote_span_context(remote_span_context(trace))
}

/// Makes `span` a child of `trace` and records its ids in the span's `trace_id` and `span_id`
/// fields (which the JSON log lines inside the span then carry). Call before the span is first
/// entered.
pub(crate) fn continue_in(span: &tracing::Span, trace: &TraceContext) {
    // Without an OpenTelemetry layer there is nothing to parent; the field still names the trace.
    let _ = span.set_parent(parent_context(trace));
    span.record("trace_id", trace.trace_id_hex());
    record_span_id(span);
}

/// Records the span's own OpenTelemetry id in its `span_id` field, when a layer gave it one.
fn record_span_id(span: &tracing::Span) {
    let own = span.context().span().span_context().clone();
    if own.is_valid() {
        span.record("span_id", own.span_id().to_string());
    }
}

/// Links the batch span to the context of each command it applies, and records the batch's own
/// ids (a new trace: the batch belongs to none of its commands' traces) in its `trace_id` and
/// `span_id` fields when an OpenTelemetry layer gave it some.
pub(crate) fn link_commands(batch_span: &tracing::Span, messages: &[Inbound]) {
    for trace in messages.iter().filter_map(|message| message.trace.as_ref()) {
        batch_span.add_link(remote_span_context(trace));
    }
    let own = batch_span.context().span().span_context().clone();
    if own.is_valid() {
        batch_span.record("trace_id", own.trace_id().to_string());
        batch_span.record("span_id", own.span_id().to_string());
    }
}

/// Records, for each traced command of a committed batch, its "apply command" span: the child of
/// the shop's span, with the id its outcome event names as parent, from `started` to now, linked
/// to the batch span. Emitted through the global tracer: a `tracing` span cannot be given the id
/// the decision already chose. A redelivery applied nothing and gets no span: its id would be
/// that of the first delivery's span, recorded when that one was applied.
pub(crate) fn record_apply_spans(
    batch_span: &tracing::Span,
    messages: &[Inbound],
    outcomes: &[Outcome],
    started: SystemTime,
) {
    let tracer = opentelemetry::global::tracer("payment-kafka");
    let batch = batch_span.context().span().span_context().clone();
    let ended = SystemTime::now();
    for (message, outcome) in messages.iter().zip(outcomes) {
        let Some(trace) = &message.trace else { continue };
        if matches!(outcome, Outcome::Redelivered) {
            continue;
        }
        let applied = trace.apply_span(&message.identity);
        let mut builder = tracer
            .span_builder(APPLY_COMMAND_SPAN)
            .with_kind(SpanKind::Consumer)
            .with_start_time(started)
            .with_attributes(vec![
                KeyValue::new("messaging.message.id", message.identity.to_string()),
                KeyValue::new(
                    "messaging.destination.name",
                    message.origin.as_ref().map_or_else(String::new, |o| o.topic.clone()),
                ),
            ]);
        builder.span_id = Some(SpanId::from_bytes(applied.parent_id()));
        if batch.is_valid() {
            builder = builder.with_links(vec![Link::with_context(batch.clone())]);
        }
        let mut span = tracer.build_with_context(builder, &parent_context(trace));
        opentelemetry::trace::Span::end_with_timestamp(&mut span, ended);
    }
}
