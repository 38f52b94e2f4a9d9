//! The span of an HTTP request continues the caller's W3C trace: with an in-memory OpenTelemetry
//! exporter as the process's tracing layer, a request with a `traceparent` yields an `http` span
//! in that trace, the child of the caller's span; one without (or with a malformed one) starts a
//! trace of its own, and the request is served the same. One test in this binary: the tracing
//! subscriber is process-wide.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use payment_core::memory::MemoryStore;
use payment_core::testing::block_on;
use payment_core::Payments;
use payment_http::{router, ApiState, Limits};
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[test]
fn the_request_span_is_a_child_of_the_callers_traceparent() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("payment-http-test"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .unwrap_or_else(|e| panic!("the only subscriber of this binary: {e}"));
    block_on(async {
        let app = router(ApiState::new(Payments::new(MemoryStore::default())), Limits::default());
        let create = |user: &str, traceparent: Option<&str>| {
            let mut request = Request::post("/accounts").header("x-user-id", user);
            if let Some(traceparent) = traceparent {
                request = request.header("traceparent", traceparent).header("tracestate", "shop=cart");
            }
            request.body(Body::empty()).unwrap_or_else(|e| panic!("{e}"))
        };
        let traced = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
        let cases = [("u1", Some(traced.as_str())), ("u2", None), ("u3", Some("00-not-a-trace-01"))];
        for (user, traceparent) in cases {
            let response = app.clone().oneshot(create(user, traceparent)).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(response.status(), StatusCode::CREATED, "{user}");
        }
    });
    let spans = exporter.get_finished_spans().unwrap_or_else(|e| panic!("{e}"));
    let http: Vec<_> = spans.iter().filter(|s| s.name == "http").collect();
    assert_eq!(http.len(), 3, "{spans:#?}");
    let caller_trace = TraceId::from_hex(CALLER_TRACE).unwrap_or_else(|e| panic!("{e}"));
    let caller_span = SpanId::from_hex(CALLER_SPAN).unwrap_or_else(|e| panic!("{e}"));
    let traced = http.iter().filter(|s| s.span_context.trace_id() == caller_trace).collect::<Vec<_>>();
    let [traced] = traced[..] else { panic!("one request span in the caller's trace: {http:#?}") };
    assert_eq!((traced.parent_span_id, traced.parent_span_is_remote), (caller_span, true));
    assert_ne!(traced.span_context.span_id(), caller_span);
    let roots: Vec<_> = http.iter().filter(|s| s.span_context.trace_id() != caller_trace).collect();
    assert_eq!(roots.len(), 2, "no traceparent and a malformed one: each a trace of its own");
    assert!(roots.iter().all(|s| s.parent_span_id == SpanId::INVALID), "{roots:#?}");
    assert_ne!(roots[0].span_context.trace_id(), roots[1].span_context.trace_id());
}
