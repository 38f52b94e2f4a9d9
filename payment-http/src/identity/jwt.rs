//! `AUTH_MODE=jwt`: the caller presents `Authorization: Bearer <JWT>`, signed by a key of
//! [`JwtSettings::keys_file`] (or HS256 with [`JwtSettings::secret_file`]), issued by
//! [`JwtSettings::issuer`] for [`JwtSettings::audience`], unexpired; the user is the
//! [`JwtSettings::user_claim`] claim, validated as a [`UserId`].
//!
//! `X-User-Id` in this mode: when present it must name the same user as the token, else `403
//! user_mismatch`. Ignoring it silently would let a client believe it acts for another user;
//! forbidding it would break gateways that set it for their own logs.
//!
//! Rotation without restart: a task re-reads the files every [`JwtSettings::reload_interval`]
//! and swaps the key set when the bytes changed and parse; a file that does not parse keeps the
//! previous keys (logged). Requests only read the set in memory, never the file. The task holds
//! a weak reference, so it ends when the last router holding the verifier is dropped.

use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use axum::async_trait;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use payment_core::domain::UserId;

use super::keys::{self, KeyError, VerificationKey};
use super::{single, user_header, Authenticate};
use crate::problem::ApiError;

/// Longest token read, in bytes; a header-sized limit that no honest token reaches.
pub const TOKEN_MAX_BYTES: usize = 8 * 1024;
/// Largest clock skew accepted, in seconds.
pub const LEEWAY_MAX_SECS: u64 = 300;

/// How tokens are verified.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// A JWKS document or PEM public keys (RS256, ES256, EdDSA).
    pub keys_file: Option<PathBuf>,
    /// An HS256 shared secret (at least 32 bytes), alone in its file.
    pub secret_file: Option<PathBuf>,
    /// The required `iss`.
    pub issuer: String,
    /// The required `aud` (one of the token's audiences).
    pub audience: String,
    /// The claim holding the user id (`sub` by default); a string or an integer.
    pub user_claim: String,
    /// Clock skew accepted on `exp` and `nbf`, at most [`LEEWAY_MAX_SECS`].
    pub leeway: Duration,
    /// How often the key files are re-read.
    pub reload_interval: Duration,
}

impl JwtSettings {
    /// Settings with the defaults: `sub`, 30 s of leeway, keys re-read every 5 s.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            keys_file: None,
            secret_file: None,
            issuer: issuer.into(),
            audience: audience.into(),
            user_claim: "sub".into(),
            leeway: Duration::from_secs(30),
            reload_interval: Duration::from_secs(5),
        }
    }
}

/// The bytes the key set was parsed from, to tell a changed file from an unchanged one.
type Sources = (Option<Vec<u8>>, Option<Vec<u8>>);

struct Loaded {
    sources: Sources,
    keys: Arc<Vec<VerificationKey>>,
}

/// The `Authorization: Bearer` verifier; see the module documentation.
pub struct JwtBearer {
    settings: JwtSettings,
    loaded: RwLock<Arc<Loaded>>,
}

impl JwtBearer {
    /// Loads the keys (refusing to start without a usable one) and, when called inside a Tokio
    /// runtime, starts re-reading them every [`JwtSettings::reload_interval`].
    pub fn start(settings: JwtSettings) -> Result<Arc<Self>, KeyError> {
        let mut settings = settings;
        settings.leeway = settings.leeway.min(Duration::from_secs(LEEWAY_MAX_SECS));
        let sources = read_sources(&settings)?;
        let keys = parse_sources(&settings, &sources)?;
        tracing::info!(keys = keys.len(), "JWT verification keys loaded");
        let verifier =
            Arc::new(Self { settings, loaded: RwLock::new(Arc::new(Loaded { sources, keys: Arc::new(keys) })) });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reload(Arc::downgrade(&verifier)));
        }
        Ok(verifier)
    }

    /// Re-reads the files once; `Ok(true)` when the key set changed.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let sources = read_sources(&self.settings)?;
        if self.current().sources == sources {
            return Ok(false);
        }
        let keys = parse_sources(&self.settings, &sources)?;
        let count = keys.len();
        if let Ok(mut loaded) = self.loaded.write() {
            *loaded = Arc::new(Loaded { sources, keys: Arc::new(keys) });
        }
        tracing::info!(keys = count, "JWT verification keys reloaded");
        Ok(true)
    }

    fn current(&self) -> Arc<Loaded> {
        // A poisoned lock still holds a whole key set: the writer only swaps an `Arc`.
        match self.loaded.read() {
            Ok(loaded) => loaded.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::InvalidToken("malformed token"))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA | Algorithm::HS256) {
            return Err(ApiError::InvalidToken("algorithm not accepted"));
        }
        let loaded = self.current();
        let by_kid = |key: &&VerificationKey| match (&header.kid, &key.kid) {
            (Some(wanted), Some(kid)) => wanted == kid,
            _ => true,
        };
        let candidates: Vec<&VerificationKey> =
            loaded.keys.iter().filter(|key| key.algorithm == header.alg).filter(by_kid).collect();
        if candidates.is_empty() {
            return Err(ApiError::InvalidToken("no key for this token"));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        let mut refusal = ApiError::InvalidToken("signature does not verify");
        for candidate in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &candidate.key, &validation)
            {
                Ok(data) => return self.user_of(&data.claims),
                // Another key may have signed it; any other failure is the token's, whatever the key.
                Err(error) if matches!(error.kind(), ErrorKind::InvalidSignature) => {}
                Err(error) => {
                    refusal = ApiError::InvalidToken(match error.kind() {
                        ErrorKind::ExpiredSignature => "token expired",
                        ErrorKind::ImmatureSignature => "token not yet valid",
                        ErrorKind::InvalidIssuer => "wrong issuer",
                        ErrorKind::InvalidAudience => "wrong audience",
                        ErrorKind::MissingRequiredClaim(_) => "a required claim (exp, iss, aud) is missing",
                        _ => "malformed token",
                    });
                    break;
                }
            }
        }
        Err(refusal)
    }

    fn user_of(&self, claims: &serde_json::Map<String, serde_json::Value>) -> Result<UserId, ApiError> {
        let text = match claims.get(&self.settings.user_claim) {
            Some(serde_json::Value::String(text)) => text.clone(),
            Some(serde_json::Value::Number(number)) => number.to_string(),
            _ => return Err(ApiError::InvalidToken("the user claim is missing")),
        };
        UserId::new(&text).map_err(|_| ApiError::InvalidToken("the user claim is not a valid user id"))
    }
}

#[async_trait]
impl Authenticate for JwtBearer {
    async fn authenticate(&self, parts: &Parts) -> Result<UserId, ApiError> {
        let value = single(parts, AUTHORIZATION.as_str())
            .map_err(|()| ApiError::InvalidToken("Authorization sent more than once"))?
            .ok_or(ApiError::MissingToken)?;
        if value.len() > TOKEN_MAX_BYTES {
            return Err(ApiError::InvalidToken("token too long"));
        }
        let text = value.to_str().map_err(|_| ApiError::InvalidToken("malformed token"))?;
        let token = match text.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(ApiError::MissingToken),
        };
        let user = self.verify(token).inspect_err(|error| tracing::debug!(%error, "bearer token refused"))?;
        match user_header(parts)? {
            Some(claimed) if claimed != user => Err(ApiError::UserMismatch),
            _ => Ok(user),
        }
    }
}

fn read_sources(settings: &JwtSettings) -> Result<Sources, KeyError> {
    let keys = settings.keys_file.as_deref().map(keys::read_bounded).transpose()?;
    let secret = settings.secret_file.as_deref().map(keys::read_bounded).transpose()?;
    Ok((keys, secret))
}

fn parse_sources(settings: &JwtSettings, sources: &Sources) -> Result<Vec<VerificationKey>, KeyError> {
    let mut all = Vec::new();
    if let (Some(path), Some(bytes)) = (&settings.keys_file, &sources.0) {
        all.extend(keys::parse_public_keys(path, bytes)?);
    }
    if let (Some(path), Some(bytes)) = (&settings.secret_file, &sources.1) {
        all.push(keys::parse_secret(path, bytes)?);
    }
    if all.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(all)
}

/// Re-reads the key files until the verifier is dropped.
async fn reload(verifier: Weak<JwtBearer>) {
    loop {
        let Some(interval) = verifier.upgrade().map(|v| v.settings.reload_interval) else { return };
        tokio::time::sleep(interval).await;
        let Some(strong) = verifier.upgrade() else { return };
        // Small files, but still blocking I/O: off the async workers.
        let outcome = tokio::task::spawn_blocking(move || strong.reload()).await;
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "JWT keys not reloaded; the previous keys stay in use"),
            Err(error) => tracing::warn!(%error, "JWT key reload task failed; the previous keys stay in use"),
        }
    }
}
