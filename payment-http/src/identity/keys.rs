//! The keys that may sign a caller's token, parsed from files the operator controls.
//!
//! `JWT_KEYS_FILE` holds public keys only: a JWKS document (`{"keys": [...]}`, as an identity
//! provider publishes it) or one or more PEM `PUBLIC KEY` blocks. Each key is bound to exactly one
//! algorithm (RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA), so a token cannot choose how it is
//! checked: the classic confusion of verifying an HS256 token with an RSA public key as the HMAC
//! secret is impossible. HS256 needs the shared secret, which never belongs in a key file that is
//! also published; it is read only from its own `JWT_SECRET_FILE`.

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Largest key file read, in bytes: a JWKS of a few dozen keys is a few tens of KiB.
pub const KEY_FILE_MAX_BYTES: u64 = 1024 * 1024;
/// Most keys kept; a token is tried against at most this many.
pub const KEYS_MAX: usize = 64;
/// Shortest HS256 secret, in bytes: RFC 7518 §3.2 asks for a key as long as the hash (256 bits).
pub const SECRET_MIN_BYTES: usize = 32;

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than `KEY_FILE_MAX_BYTES` (1 MiB).
    #[error("{path} is larger than {KEY_FILE_MAX_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// The file holds something that is not a usable key.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong (never the key material).
        reason: String,
    },
    /// No key at all: every token would be refused.
    #[error("no verification key: set JWT_KEYS_FILE or JWT_SECRET_FILE to a file with at least one key")]
    Empty,
}

/// One key and the only algorithm it verifies.
#[derive(Clone)]
pub(crate) struct VerificationKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// Reads a key file, bounded in size.
pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, KeyError> {
    let shown = path.display().to_string();
    let metadata = std::fs::metadata(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?;
    if metadata.len() > KEY_FILE_MAX_BYTES {
        return Err(KeyError::TooLarge { path: shown });
    }
    std::fs::read(path).map_err(|source| KeyError::Read { path: shown, source })
}

/// The public keys of a JWKS document or of PEM blocks.
pub(crate) fn parse_public_keys(path: &Path, bytes: &[u8]) -> Result<Vec<VerificationKey>, KeyError> {
    let invalid = |reason: String| KeyError::Invalid { path: path.display().to_string(), reason };
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".into()))?;
    let keys =
        if text.trim_start().starts_with('{') { parse_jwks(text, &invalid)? } else { parse_pem(bytes, &invalid)? };
    if keys.len() > KEYS_MAX {
        return Err(invalid(format!("{} keys, at most {KEYS_MAX}", keys.len())));
    }
    Ok(keys)
}

fn parse_jwks(text: &str, invalid: &dyn Fn(String) -> KeyError) -> Result<Vec<VerificationKey>, KeyError> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_str(text).map_err(|e| invalid(format!("not a JWKS document: {e}")))?;
    let mut keys = Vec::new();
    for (index, value) in document.keys.into_iter().enumerate() {
        // One key of a type this crate does not know must not hide the others.
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(error) => {
                tracing::warn!(index, %error, "JWKS key skipped: not a key this service can use");
                continue;
            }
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let algorithm = jwk_algorithm(&jwk).map_err(|reason| invalid(format!("key {index}: {reason}")))?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| invalid(format!("key {index}: {e}")))?;
        keys.push(VerificationKey { kid: jwk.common.key_id.clone(), algorithm, key });
    }
    Ok(keys)
}

/// The one algorithm a JWK verifies: its key type decides, and a declared `alg` must agree.
fn jwk_algorithm(jwk: &Jwk) -> Result<Algorithm, String> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::EllipticCurve(_) => return Err("only the P-256 curve (ES256) is accepted".into()),
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => {
            return Err("a symmetric secret does not belong in a key file; use JWT_SECRET_FILE".into())
        }
    };
    let declared = match jwk.common.key_algorithm {
        None => return Ok(by_type),
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
        Some(other) => return Err(format!("algorithm {other:?} is not accepted (RS256, ES256, EdDSA)")),
    };
    if declared == by_type {
        Ok(by_type)
    } else {
        Err(format!("alg {declared:?} does not match the key type"))
    }
}

fn parse_pem(bytes: &[u8], invalid: &dyn Fn(String) -> KeyError) -> Result<Vec<VerificationKey>, KeyError> {
    let blocks = pem::parse_many(bytes).map_err(|e| invalid(format!("not PEM: {e}")))?;
    let mut keys = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        if block.tag().contains("PRIVATE") {
            return Err(invalid(format!("block {index} is a private key; the service needs the public key only")));
        }
        let one = pem::encode(block);
        let one = one.as_bytes();
        // Each parser checks the key's algorithm identifier, so at most one accepts a block.
        let key = DecodingKey::from_rsa_pem(one)
            .map(|k| (Algorithm::RS256, k))
            .or_else(|_| DecodingKey::from_ec_pem(one).map(|k| (Algorithm::ES256, k)))
            .or_else(|_| DecodingKey::from_ed_pem(one).map(|k| (Algorithm::EdDSA, k)))
            .map_err(|_| invalid(format!("block {index} ({}) is not an RSA, EC or Ed25519 public key", block.tag())))?;
        keys.push(VerificationKey { kid: None, algorithm: key.0, key: key.1 });
    }
    if keys.is_empty() {
        return Err(invalid("no PEM block".into()));
    }
    Ok(keys)
}

/// The HS256 secret of `JWT_SECRET_FILE`: its bytes, less a trailing newline.
pub(crate) fn parse_secret(path: &Path, bytes: &[u8]) -> Result<VerificationKey, KeyError> {
    let secret = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
    if secret.len() < SECRET_MIN_BYTES {
        return Err(KeyError::Invalid {
            path: path.display().to_string(),
            reason: format!("an HS256 secret needs at least {SECRET_MIN_BYTES} bytes"),
        });
    }
    Ok(VerificationKey { kid: None, algorithm: Algorithm::HS256, key: DecodingKey::from_secret(secret) })
}
