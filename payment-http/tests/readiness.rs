//! `/readyz` answers from the background probe: calling it costs the dependencies nothing, and a
//! failure's cause stays in the log, out of the response.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use payment_core::memory::MemoryStore;
use payment_core::testing::block_on;
use payment_core::Payments;
use payment_http::readiness::{probe_readiness, LastReadiness, ProbeSettings, Verdict};
use payment_http::{router, ApiState, Limits, ReadinessCheck};
use tower::ServiceExt;

#[test]
fn readyz_answers_from_the_last_probe_without_calling_the_check() {
    block_on(async {
        let calls = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (counted, fails) = (calls.clone(), failing.clone());
        let check: ReadinessCheck = Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let fails = fails.load(Ordering::SeqCst);
            Box::pin(async move {
                if fails {
                    Err("broker kafka-internal-7:9092 refused".to_string())
                } else {
                    Ok(())
                }
            })
        });
        let payments = Payments::new(MemoryStore::new());
        let last = LastReadiness::default();
        let state =
            ApiState { readiness: Some(check.clone()), probed: Some(last.clone()), ..ApiState::new(payments.clone()) };
        let app = router(state, Limits::default());
        let readyz = || async {
            let response = app.clone().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        };
        assert_eq!(readyz().await.0, StatusCode::SERVICE_UNAVAILABLE, "not ready before the first probe");

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let settings = ProbeSettings { interval: Duration::from_millis(20), timeout: Duration::from_secs(1) };
        let probe = tokio::spawn(probe_readiness(payments, Some(check), settings, last.clone(), async {
            let _ = stopped.await;
        }));
        while last.get() == Verdict::Unknown {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (status, body) = readyz().await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!body.contains("kafka-internal") && !body.contains("refused"), "no cause in the body: {body}");

        let (before, started) = (calls.load(Ordering::SeqCst), std::time::Instant::now());
        for _ in 0..50 {
            readyz().await;
        }
        // Only the probe calls the check: once per interval, whatever the number of requests.
        let probes = started.elapsed().as_millis() / 20 + 2;
        let made = calls.load(Ordering::SeqCst) - before;
        assert!((made as u128) <= probes && made < 50, "{made} checks for 50 calls to /readyz");

        failing.store(false, Ordering::SeqCst);
        while last.get() != Verdict::Ready {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(readyz().await, (StatusCode::OK, "ready".to_string()));
        let _ = stop.send(());
        probe.await.unwrap();
    });
}
