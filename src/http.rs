//! The service's HTTP routers: the accounts API and the operations endpoints, and the readiness
//! check that also asks Kafka when the service consumes from it.

use std::sync::Arc;

use axum::Router;
use payment_core::ports::Store;
use payment_http::{ApiState, Limits, ReadinessCheck};
use payment_kafka::KafkaProbe;

/// Kafka's part of readiness: the cluster answers a metadata request (on a blocking thread:
/// librdkafka's call blocks).
pub fn kafka_readiness(kafka: KafkaProbe) -> ReadinessCheck {
    let kafka = Arc::new(kafka);
    Arc::new(move || {
        let kafka = kafka.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || kafka.check()).await.unwrap_or_else(|e| Err(e.to_string()))
        })
    })
}

/// `(accounts, operations)`.
pub fn routers<S: Store>(state: ApiState<S>, limits: Limits) -> (Router, Router) {
    (payment_http::accounts_router(state.clone(), limits), payment_http::operations_router(state, limits))
}

/// The identity `AUTH_MODE` asks for; in `jwt` mode the keys are loaded now (a missing or
/// unusable key refuses the start) and re-read in the background.
pub fn identity(settings: &crate::Settings) -> Result<payment_http::identity::Identity, crate::ServiceError> {
    use payment_http::identity::{GatewayHeader, JwtBearer, JwtSettings};
    match settings.auth_mode {
        crate::settings::AuthMode::Header => {
            tracing::warn!(
                "AUTH_MODE=header: X-User-Id is trusted as is; only a gateway that sets it may reach the HTTP port"
            );
            Ok(Arc::new(GatewayHeader))
        }
        crate::settings::AuthMode::Jwt => {
            let jwt = JwtSettings {
                keys_file: settings.jwt_keys_file.clone(),
                secret_file: settings.jwt_secret_file.clone(),
                user_claim: settings.jwt_user_claim.clone(),
                leeway: std::time::Duration::from_secs(settings.jwt_leeway_secs),
                reload_interval: std::time::Duration::from_millis(settings.jwt_keys_reload_ms),
                ..JwtSettings::new(
                    settings.jwt_issuer.clone().unwrap_or_default(),
                    settings.jwt_audience.clone().unwrap_or_default(),
                )
            };
            if jwt.issuer.is_empty() || jwt.audience.is_empty() {
                return Err(crate::ServiceError::Settings("AUTH_MODE=jwt needs JWT_ISSUER and JWT_AUDIENCE"));
            }
            let verifier = JwtBearer::start(jwt)?;
            tracing::info!("AUTH_MODE=jwt: callers are identified by verified bearer tokens");
            Ok(verifier)
        }
    }
}

/// The public listener's guards, from the settings.
pub fn edge_limits(settings: &crate::Settings) -> payment_http::edge::EdgeLimits {
    use std::time::Duration;
    payment_http::edge::EdgeLimits {
        header_read_timeout: Duration::from_millis(settings.http_header_read_timeout_ms),
        idle_timeout: Duration::from_millis(settings.http_idle_timeout_ms),
        connections_max: settings.http_connections_max,
        requests_max: settings.http_requests_max,
    }
}
