//! Trace context through the consumer and the publisher, over the real Kafka protocol (the mock
//! cluster) on the in-memory store, with an in-memory OpenTelemetry exporter installed as the
//! process's tracing layer and global tracer: the outcome event continues the command's trace
//! (same trace id, the apply span as parent), and the exported spans link up — the apply span is
//! the child of the shop's span, the publish span the child of the apply span, and the batch span
//! links to every command's context.
//!
//! One test in this binary: the tracing subscriber and the tracer provider are process-wide (the
//! consumer's fetch thread and the runtime's workers all report to them).
//! `cargo test -p payment-kafka --test trace -- --nocapture` prints the trace as a tree (the one
//! in the README).

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use common::{funded, header, json, pay, until, Broker};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use payment_core::testing::block_on;
use payment_core::Payments;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use tracing_subscriber::layer::SubscriberExt;

const SHOP_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SHOP_SPAN: &str = "00f067aa0ba902b7";
const FAILED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn install() -> InMemorySpanExporter {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("payment-kafka-test"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .unwrap_or_else(|e| panic!("the only subscriber of this binary: {e}"));
    exporter
}

fn traceparent_of(event: &OwnedMessage) -> (String, String) {
    let value = header(event, "traceparent").unwrap_or_else(|| panic!("no traceparent on {:?}", json(event)));
    let fields: Vec<&str> = value.split('-').collect();
    assert_eq!((fields.len(), fields[0], fields[3]), (4, "00", "01"), "{value}");
    (fields[1].to_string(), fields[2].to_string())
}

#[test]
fn events_continue_the_command_trace_and_spans_link_up() {
    let exporter = install();
    block_on(async {
        let broker = Broker::start();
        let store = payment_core::memory::MemoryStore::new();
        let payments = Payments::new(store.clone());
        funded(&payments, &["u1".to_string()], "10").await;
        let consumer = broker.spawn_consumer(payments.clone(), broker.consumer_config());
        let publisher = broker.spawn_publisher(store.clone(), broker.publisher_config());

        let producer = broker.producer();
        let send = |(key, payload): (String, String), traceparent: Option<String>| {
            let producer = producer.clone();
            let topic = broker.config.topics.pay_order.clone();
            async move {
                let mut headers = OwnedHeaders::new();
                if let Some(traceparent) = &traceparent {
                    headers = headers
                        .insert(Header { key: "traceparent", value: Some(traceparent) })
                        .insert(Header { key: "tracestate", value: Some("shop=checkout") });
                }
                let record = FutureRecord::to(&topic).key(&key).payload(&payload).headers(headers);
                producer.send(record, std::time::Duration::from_secs(10)).await.unwrap_or_else(|(e, _)| panic!("{e}"));
            }
        };
        send(pay("m-paid", "o-paid", "u1", "4"), Some(format!("00-{SHOP_TRACE}-{SHOP_SPAN}-01"))).await;
        send(pay("m-failed", "o-failed", "u1", "100"), Some(format!("00-{FAILED_TRACE}-b7ad6b7169203331-01"))).await;
        // A malformed traceparent is ignored: the payment still happens, its event has no trace.
        send(pay("m-malformed", "o-malformed", "u1", "1"), Some(format!("00-{SHOP_TRACE}-zz-01"))).await;
        // A redelivery of the first (same identity, same headers) applies nothing and records no
        // second "apply command" span; the last command, behind it on the partition, shows it was read.
        send(pay("m-paid", "o-paid", "u1", "4"), Some(format!("00-{SHOP_TRACE}-{SHOP_SPAN}-01"))).await;
        send(pay("m-last", "o-last", "u1", "1"), None).await;
        until(&store, "three payments and a failure", |s| s.payments.len() == 3 && s.outbox.len() == 4).await;
        let events = broker.published(|seen| seen.len() >= 4).await;
        let by_order: BTreeMap<String, &OwnedMessage> =
            events.iter().map(|e| (json(e)["order_id"].as_str().unwrap_or_default().to_string(), e)).collect();

        let paid = by_order["o-paid"];
        assert_eq!(paid.topic(), "order.paid");
        let (trace_id, apply_span) = traceparent_of(paid);
        assert_eq!(trace_id, SHOP_TRACE, "the event continues the command's trace");
        assert_ne!(apply_span, SHOP_SPAN, "with a span of its own as parent");
        assert_eq!(header(paid, "tracestate"), Some("shop=checkout"), "tracestate passed through");
        let failed = by_order["o-failed"];
        assert_eq!(failed.topic(), "order.payment_failed");
        assert_eq!(traceparent_of(failed).0, FAILED_TRACE);
        let malformed = by_order["o-malformed"];
        assert_eq!((malformed.topic(), header(malformed, "traceparent")), ("order.paid", None));

        consumer.stop().await;
        publisher.stop().await;

        let spans = exporter.get_finished_spans().unwrap_or_else(|e| panic!("{e}"));
        let shop_trace = TraceId::from_hex(SHOP_TRACE).unwrap_or_else(|e| panic!("{e}"));
        let shop_span = SpanId::from_hex(SHOP_SPAN).unwrap_or_else(|e| panic!("{e}"));
        let apply_span = SpanId::from_hex(&apply_span).unwrap_or_else(|e| panic!("{e}"));
        let named = |name: &str, trace: TraceId| -> Vec<&SpanData> {
            spans.iter().filter(|s| s.name == name && s.span_context.trace_id() == trace).collect()
        };
        let [apply] = named("apply command", shop_trace)[..] else {
            panic!("one apply span, the redelivery's none, in {spans:#?}")
        };
        assert_eq!(apply.parent_span_id, shop_span, "the apply span is the child of the shop's span");
        assert_eq!(apply.span_context.span_id(), apply_span, "and the parent the event names");
        let [publish] = named("publish", shop_trace)[..] else { panic!("one publish span in {spans:#?}") };
        assert_eq!(publish.parent_span_id, apply_span, "publishing is a child of applying");
        // The batch that applied the command: the apply span links to it, it links to the shop's span.
        let batch = spans
            .iter()
            .find(|s| {
                s.name == "pay_order_batch"
                    && apply.links.links.iter().any(|l| l.span_context.span_id() == s.span_context.span_id())
            })
            .unwrap_or_else(|| panic!("the apply span links to no batch span: {spans:#?}"));
        assert!(
            batch
                .links
                .links
                .iter()
                .any(|l| (l.span_context.trace_id(), l.span_context.span_id()) == (shop_trace, shop_span)),
            "the batch span links to the command's context"
        );
        assert_ne!(batch.span_context.trace_id(), shop_trace, "a batch is a trace of its own, linked to its commands");
        let [unit] = named("pay_orders", batch.span_context.trace_id())[..] else { panic!("{spans:#?}") };
        assert_eq!(unit.parent_span_id, batch.span_context.span_id(), "the unit of work runs in the batch span");
        for step in ["write", "commit"] {
            let [span] = named(step, batch.span_context.trace_id())[..] else { panic!("one {step} in {spans:#?}") };
            assert_eq!(span.parent_span_id, unit.span_context.span_id(), "{step} is a step of the unit of work");
        }
        // The fetch thread's spans: one per batch handed to the applier, with what it gathered.
        let fetched: Vec<&SpanData> = spans.iter().filter(|s| s.name == "fetch").collect();
        assert!(!fetched.is_empty(), "no fetch span in {spans:#?}");
        let gathered: i64 = fetched
            .iter()
            .flat_map(|s| s.attributes.iter())
            .filter(|kv| kv.key.as_str() == "messages")
            .filter_map(|kv| match kv.value {
                opentelemetry::Value::I64(n) => Some(n),
                _ => None,
            })
            .sum();
        assert!(gathered >= 4, "the fetch spans count the messages handed over: {gathered} in {fetched:#?}");
        println!("{}", tree(&spans, shop_trace, shop_span, batch, paid));
    });
}

/// The spans of the shop's trace and of the batch that applied its command, as a text tree.
fn tree(spans: &[SpanData], trace: TraceId, shop_span: SpanId, batch: &SpanData, event: &OwnedMessage) -> String {
    let mut out = String::new();
    let ms = |s: &SpanData| s.end_time.duration_since(s.start_time).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0);
    let _ = writeln!(out, "trace {trace}");
    let _ = writeln!(out, "└─ (shop) span {shop_span}: the pay.order record's traceparent");
    fn children(spans: &[SpanData], trace: TraceId, parent: SpanId) -> Vec<&SpanData> {
        let mut found: Vec<_> =
            spans.iter().filter(|s| s.span_context.trace_id() == trace && s.parent_span_id == parent).collect();
        found.sort_by_key(|s| s.start_time);
        found
    }
    /// `trace/span` of each span the span links to.
    fn links(span: &SpanData) -> Vec<String> {
        span.links.links.iter().map(|l| format!("{}/{}", l.span_context.trace_id(), l.span_context.span_id())).collect()
    }
    fn walk(
        out: &mut String,
        spans: &[SpanData],
        trace: TraceId,
        parent: SpanId,
        depth: usize,
        ms: &dyn Fn(&SpanData) -> f64,
    ) {
        for span in children(spans, trace, parent) {
            let links = links(span);
            let _ = writeln!(
                out,
                "{}└─ {} span {} ({:?}, {:.1} ms){}",
                "   ".repeat(depth),
                span.name,
                span.span_context.span_id(),
                span.span_kind,
                ms(span),
                if links.is_empty() { String::new() } else { format!(" links → {}", links.join(", ")) }
            );
            walk(out, spans, trace, span.span_context.span_id(), depth + 1, ms);
        }
    }
    walk(&mut out, spans, trace, shop_span, 1, &ms);
    let _ = writeln!(
        out,
        "         └─ event on {}: traceparent {}",
        event.topic(),
        header(event, "traceparent").unwrap_or_default()
    );
    let _ = writeln!(out, "trace {} (the batch)", batch.span_context.trace_id());
    let links = links(batch);
    let _ = writeln!(
        out,
        "└─ {} span {} ({:.1} ms) links → {}",
        batch.name,
        batch.span_context.span_id(),
        ms(batch),
        links.join(", ")
    );
    walk(&mut out, spans, batch.span_context.trace_id(), batch.span_context.span_id(), 1, &ms);
    out
}
