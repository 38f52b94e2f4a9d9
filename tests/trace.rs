//! Trace context end to end: the real `payment-service` binary (in-memory store) on a
//! Kafka-protocol broker (librdkafka's mock cluster), with JSON logs and OTLP export to a stand-in
//! collector. A shop sends `pay.order` commands with a `traceparent`: the outcome events carry
//! the same trace id and a span of their own; a redelivery publishes nothing; a re-send of a paid
//! order re-publishes the original event in the re-send's trace; a malformed traceparent costs
//! the payment nothing. The spans reach the collector, and the log lines of a traced request
//! carry its trace id.

#[allow(dead_code)] // this binary uses a subset of the harness
mod harness;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{one_at_a_time, Service};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

const PAID_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const FAILED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const RESEND_TRACE: &str = "5c1f2e3d4b5a69788796a5b4c3d2e1f0";
const REDELIVERY_TRACE: &str = "11111111111111111111111111111111";
const HTTP_TRACE: &str = "a3ce929d0e0e47364bf92f3577b34da6";
const SHOP_SPAN: &str = "00f067aa0ba902b7";

/// A stand-in OTLP/HTTP collector: answers every request 200 and keeps the bodies of those to
/// `/v1/traces`.
fn collector() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a collector port");
    let address = format!("http://{}", listener.local_addr().expect("its address"));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buffer = [0u8; 16 * 1024];
            // Headers, then as many body bytes as Content-Length says.
            let complete = |request: &[u8]| -> bool {
                let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
                let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                    .unwrap_or(0usize);
                request.len() >= end + 4 + length
            };
            while !complete(&request) {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            if request.starts_with(b"POST /v1/traces") {
                kept.lock().unwrap_or_else(|p| p.into_inner()).push(request);
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (address, bodies)
}

fn bytes_of(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
}

fn header<'a>(event: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    event.headers()?.iter().find(|h| h.key == name).and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
}

/// `(trace id, parent span id)` of an event's traceparent.
fn traceparent(event: &OwnedMessage) -> Option<(String, String)> {
    let value = header(event, "traceparent")?;
    let fields: Vec<&str> = value.split('-').collect();
    assert_eq!((fields.len(), fields[0]), (4, "00"), "{value}");
    Some((fields[1].to_string(), fields[2].to_string()))
}

async fn send(producer: &FutureProducer, message_id: &str, order: &str, amount: &str, traceparent: Option<String>) {
    let payload =
        format!(r#"{{"message_id":"{message_id}","order_id":"{order}","user_id":"shopper","amount":"{amount}"}}"#);
    let mut headers = OwnedHeaders::new();
    if let Some(traceparent) = &traceparent {
        headers = headers
            .insert(Header { key: "traceparent", value: Some(traceparent) })
            .insert(Header { key: "tracestate", value: Some("shop=checkout") });
    }
    // Keyed by user, as the contract asks: one partition, so the events come out in order.
    let record = FutureRecord::to("pay.order").key("shopper").payload(&payload).headers(headers);
    producer.send(record, Duration::from_secs(10)).await.unwrap_or_else(|(e, _)| panic!("produce: {e}"));
}

#[test]
fn outcome_events_continue_the_command_trace_end_to_end() {
    let _serial = one_at_a_time();
    payment_core::testing::block_on(async {
        let cluster = harness::broker(2);
        let brokers = cluster.bootstrap_servers();
        let (otlp, exported) = collector();
        let env = [
            ("KAFKA_BROKERS", brokers.as_str()),
            ("OUTBOX_POLL_MS", "200"),
            ("KAFKA_FETCH_WAIT_MAX_MS", "10"),
            ("LOG_FORMAT", "json"),
            // tower-http logs each response at debug, inside the request's span.
            ("RUST_LOG", "info,tower_http=debug"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ];
        let service = Service::spawn("trace", &env);
        let http = reqwest::Client::new();
        service.wait_ready(&http, Duration::from_secs(60)).await;
        let created = http.post(format!("{}/accounts", service.base_url)).header("x-user-id", "shopper").send().await;
        assert_eq!(created.expect("create").status(), 201);
        let deposit = http
            .post(format!("{}/accounts/deposit", service.base_url))
            .header("x-user-id", "shopper")
            .header("traceparent", format!("00-{HTTP_TRACE}-{SHOP_SPAN}-01"))
            .header("content-type", "application/json")
            .body(r#"{"amount": "20.00"}"#)
            .send()
            .await
            .expect("deposit");
        assert_eq!(deposit.status(), 200);

        let producer: FutureProducer =
            ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("producer");
        let parent = |trace: &str| Some(format!("00-{trace}-{SHOP_SPAN}-01"));
        send(&producer, "m-paid", "o-paid", "5", parent(PAID_TRACE)).await;
        send(&producer, "m-failed", "o-failed", "500", parent(FAILED_TRACE)).await;
        send(&producer, "m-malformed", "o-malformed", "1", Some(format!("00-{PAID_TRACE}-{SHOP_SPAN}"))).await;
        // The same message again (a redelivery), then a new message for the paid order (a re-send).
        send(&producer, "m-paid", "o-paid", "5", parent(REDELIVERY_TRACE)).await;
        send(&producer, "m-resend", "o-paid", "5", parent(RESEND_TRACE)).await;

        let reader: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "trace-reader")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("reader");
        reader.subscribe(&["order.paid", "order.payment_failed"]).expect("subscribe");
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while events.len() < 4 {
            assert!(Instant::now() < deadline, "got {} events of 4:\n{}", events.len(), service.log_tail());
            if let Ok(Ok(message)) = tokio::time::timeout(Duration::from_millis(500), reader.recv()).await {
                events.push(message.detach());
            }
        }
        let correlated = |id: &str| -> Vec<&OwnedMessage> {
            events.iter().filter(|e| header(e, "correlation-id") == Some(id)).collect()
        };

        let [paid] = correlated("m-paid")[..] else { panic!("one event for m-paid: a redelivery publishes nothing") };
        let (trace, span) = traceparent(paid).expect("order.paid carries a traceparent");
        assert_eq!((paid.topic(), trace.as_str()), ("order.paid", PAID_TRACE), "the command's trace");
        assert_ne!(span, SHOP_SPAN, "a span of its own, the command's span as parent");
        assert_eq!(header(paid, "tracestate"), Some("shop=checkout"));

        let [failed] = correlated("m-failed")[..] else { panic!("one event for m-failed") };
        assert_eq!(failed.topic(), "order.payment_failed");
        assert_eq!(traceparent(failed).map(|t| t.0), Some(FAILED_TRACE.to_string()));

        let [malformed] = correlated("m-malformed")[..] else { panic!("the malformed traceparent cost the payment") };
        assert_eq!((malformed.topic(), traceparent(malformed)), ("order.paid", None));

        let [resent] = correlated("m-resend")[..] else { panic!("one re-published event for m-resend") };
        assert_eq!(header(resent, "event-id"), header(paid, "event-id"), "the original event, re-published");
        let (resent_trace, resent_span) = traceparent(resent).expect("a traceparent");
        assert_eq!(resent_trace, RESEND_TRACE, "in the trace of the command that asked for it");
        assert_ne!(resent_span, span);

        // The spans reach the collector: the shop's trace id is in an OTLP export.
        let deadline = Instant::now() + Duration::from_secs(30);
        let in_export = |trace: &str| {
            let wanted = bytes_of(trace);
            exported.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|b| b.windows(16).any(|w| w == wanted))
        };
        while !(in_export(PAID_TRACE) && in_export(HTTP_TRACE)) {
            assert!(Instant::now() < deadline, "no OTLP export of the traces:\n{}", service.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The request's log lines carry its trace id, and the id of its own span.
        let lines = service.log_lines(&format!(r#""trace_id":"{HTTP_TRACE}""#));
        assert!(!lines.is_empty(), "{}", service.log_tail());
        assert!(lines.iter().all(|line| line.contains(r#""span_id":""#)), "{lines:#?}");
        assert_eq!(service.log_count("panicked"), 0, "{}", service.log_tail());
    });
}
