//! The public port's guards, over real TCP: a client that trickles its request head is cut off,
//! an idle keep-alive connection is closed, and a flood beyond the request cap is answered `503
//! overloaded` at once, with no other server error, each one counted in `http_requests_shed_total`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use payment_core::testing::block_on;
use payment_http::edge::{self, EdgeLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Serves `app` with `limits` on a free port until the returned `Notify` fires.
async fn start(app: Router, limits: EdgeLimits) -> (std::net::SocketAddr, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(Notify::new());
    let stopped = stop.clone();
    tokio::spawn(async move { edge::serve(listener, app, limits, async move { stopped.notified().await }).await });
    (addr, stop)
}

fn limits(header_read_ms: u64, idle_ms: u64, requests_max: usize) -> EdgeLimits {
    EdgeLimits {
        header_read_timeout: Duration::from_millis(header_read_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        connections_max: 64,
        requests_max,
    }
}

/// Reads until the server closes the connection (or resets it); the bytes read.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn a_request_head_sent_one_byte_at_a_time_is_cut_off() {
    block_on(async {
        let (addr, stop) = start(Router::new().route("/", get(|| async { "ok" })), limits(300, 60_000, 16)).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let mut closed_after = None;
        for byte in head {
            if stream.write_all(&[*byte]).await.is_err() {
                closed_after = Some(started.elapsed());
                break;
            }
            // Is the server still there? A zero read (or reset) within 100 ms means no.
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => {
                    closed_after = Some(started.elapsed());
                    break;
                }
                Ok(Ok(_)) => {} // hyper may answer 408 before closing
                Err(_) => {}
            }
        }
        let closed_after = closed_after.expect("the server kept a trickling connection open for the whole head");
        assert!(closed_after >= Duration::from_millis(250), "closed only after the timeout: {closed_after:?}");
        assert!(closed_after < Duration::from_secs(3), "closed soon after the timeout: {closed_after:?}");
        stop.notify_one();
    });
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    block_on(async {
        let (addr, stop) = start(Router::new().route("/", get(|| async { "ok" })), limits(30_000, 300, 16)).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        let idle_from = Instant::now();
        let rest = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut stream)).await;
        assert!(rest.is_ok(), "the idle connection was still open after 5 s");
        let idle = idle_from.elapsed();
        assert!(idle >= Duration::from_millis(250), "closed only once idle: {idle:?}");
        stop.notify_one();
    });
}

#[test]
fn requests_over_the_cap_are_shed_with_503_and_nothing_else_fails() {
    // The only test of this binary that records metrics: it owns the global recorder.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().unwrap();
    block_on(async {
        let slow = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let app = edge::shed_load(slow, 4);
        let (addr, stop) = start(app, limits(5_000, 60_000, 4)).await;
        let clients = (0..24).map(|_| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
                String::from_utf8_lossy(&read_to_close(&mut stream).await).into_owned()
            })
        });
        let answers: Vec<String> = futures::future::join_all(clients).await.into_iter().map(Result::unwrap).collect();
        let status = |answer: &String| answer.get(9..12).unwrap_or("???").to_string();
        let ok = answers.iter().filter(|a| status(a) == "200").count();
        let shed: Vec<&String> = answers.iter().filter(|a| status(a) == "503").collect();
        let other: Vec<String> = answers.iter().map(status).filter(|s| s != "200" && s != "503").collect();
        assert!(other.is_empty(), "only 200 and 503: {other:?}");
        assert!(ok >= 4, "the cap's worth went through: {ok}");
        assert!(!shed.is_empty(), "24 at once over a cap of 4 shed some");
        for answer in &shed {
            let lower = answer.to_ascii_lowercase();
            assert!(lower.contains("retry-after: 1"), "{answer}");
            assert!(lower.contains("content-type: application/problem+json"), "{answer}");
            assert!(answer.contains(r#""code":"overloaded""#), "{answer}");
        }
        let counted = format!("http_requests_shed_total {}", shed.len());
        let rendered = metrics.render();
        assert!(
            rendered.lines().any(|line| line == counted),
            "/metrics counts every shed request ({counted}):\n{rendered}"
        );
        stop.notify_one();
    });
}
