//! W3C trace context (`traceparent`, `tracestate`) as a command carries it in and its outcome
//! event carries it out, so the shop's trace continues through the inbox and the outbox instead
//! of stopping at the broker.
//!
//! Parsed by hand: the format is four dash-separated hex fields, and the core must stay free of
//! the OpenTelemetry SDK (the adapters turn a [`TraceContext`] into their span parents). A
//! malformed header is not the command's fault: it is ignored with a debug log and the command is
//! applied without a trace. Only version `00` is understood (the one version there is); a
//! `tracestate` over [`MAX_TRACESTATE_BYTES`] or [`MAX_TRACESTATE_MEMBERS`] is dropped whole
//! rather than cut, since cutting it could leave a vendor a member it did not write.

use std::fmt;

use sha2::{Digest, Sha256};

use super::MessageId;

/// Largest `tracestate` kept, in bytes (W3C asks vendors to propagate at least 512).
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// Most list members a kept `tracestate` has (the W3C limit).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Why a `traceparent` was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceContextError {
    /// Not `00-<32 hex>-<16 hex>-<2 hex>` in lower case.
    #[error("traceparent is not 00-<32 lower-case hex>-<16 lower-case hex>-<2 hex>")]
    Format,
    /// The trace id or the parent id is all zeros, which W3C declares invalid.
    #[error("traceparent has an all-zero trace id or parent id")]
    ZeroId,
}

/// A validated W3C trace context: a trace id, the span it continues from and its flags, plus the
/// vendors' `tracestate`, passed through as received (when within its limits).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
    tracestate: Option<String>,
}

impl TraceContext {
    /// Parses a `traceparent` and keeps `tracestate` if it is within its limits.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Result<Self, TraceContextError> {
        let fields: Vec<&str> = traceparent.trim().split('-').collect();
        let [version, trace_id, parent_id, flags] = fields[..] else {
            return Err(TraceContextError::Format);
        };
        if version != "00" {
            return Err(TraceContextError::Format);
        }
        let trace_id: [u8; 16] = hex(trace_id).ok_or(TraceContextError::Format)?;
        let parent_id: [u8; 8] = hex(parent_id).ok_or(TraceContextError::Format)?;
        let [flags] = hex::<1>(flags).ok_or(TraceContextError::Format)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return Err(TraceContextError::ZeroId);
        }
        Ok(Self { trace_id, parent_id, flags, tracestate: tracestate.and_then(bounded_tracestate) })
    }

    /// The context of a command's headers, or `None` when there is no `traceparent` or it is
    /// malformed (logged at debug: a caller's tracing bug must not cost a payment).
    pub fn from_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Self> {
        let traceparent = traceparent?;
        match Self::parse(traceparent, tracestate) {
            Ok(context) => Some(context),
            Err(error) => {
                tracing::debug!(%error, traceparent, "ignoring a malformed traceparent");
                None
            }
        }
    }

    /// A context built from its parts (e.g. an adapter's current span); `None` for an all-zero id.
    pub fn from_parts(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8, tracestate: Option<&str>) -> Option<Self> {
        (trace_id != [0; 16] && parent_id != [0; 8]).then(|| Self {
            trace_id,
            parent_id,
            flags,
            tracestate: tracestate.and_then(bounded_tracestate),
        })
    }

    /// The span of applying the command `identity` under this context: the same trace, flags and
    /// `tracestate`, and a span id of its own that is a function of the context and the identity,
    /// so the consumer that records the span and the decision that writes the outcome event agree
    /// on it without passing it around, and a replay of the decision gives the same event.
    pub fn apply_span(&self, identity: &MessageId) -> Self {
        let digest = Sha256::new()
            .chain_update(self.trace_id)
            .chain_update(self.parent_id)
            .chain_update(identity.as_str().as_bytes())
            .finalize();
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&digest[..8]);
        if span_id == [0; 8] {
            span_id[7] = 1;
        }
        Self { parent_id: span_id, ..self.clone() }
    }

    /// The trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The id of the span this context continues from (the parent of the next span).
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The trace id as 32 lower-case hex digits, as logs and tracing backends show it.
    pub fn trace_id_hex(&self) -> String {
        to_hex(&self.trace_id)
    }

    /// The parent id as 16 lower-case hex digits.
    pub fn parent_id_hex(&self) -> String {
        to_hex(&self.parent_id)
    }

    /// The `traceparent` header value.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id_hex(), self.parent_id_hex(), self.flags)
    }

    /// The `tracestate` header value, if one was received and kept.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("traceparent", &self.traceparent())
            .field("tracestate", &self.tracestate)
            .finish()
    }
}

fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `tracestate` as received, or `None` when it is empty, over a limit, or not printable ASCII
/// (which no header may carry).
fn bounded_tracestate(tracestate: &str) -> Option<String> {
    let tracestate = tracestate.trim();
    let members = tracestate.split(',').filter(|member| !member.trim().is_empty()).count();
    let printable = tracestate.bytes().all(|byte| (0x20..0x7f).contains(&byte));
    if tracestate.is_empty() || !printable {
        return None;
    }
    if tracestate.len() > MAX_TRACESTATE_BYTES || members > MAX_TRACESTATE_MEMBERS {
        tracing::debug!(
            bytes = tracestate.len(),
            members,
            "dropping a tracestate over {MAX_TRACESTATE_BYTES} bytes or {MAX_TRACESTATE_MEMBERS} members"
        );
        return None;
    }
    Some(tracestate.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let context = TraceContext::parse(PARENT, Some("congo=t61rcWkgMzE")).expect("valid");
        assert_eq!(context.traceparent(), PARENT);
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.parent_id_hex(), "00f067aa0ba902b7");
        assert_eq!(context.flags(), 1);
        assert_eq!(context.tracestate(), Some("congo=t61rcWkgMzE"));
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        let refused = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ];
        for traceparent in refused {
            assert_eq!(TraceContext::parse(traceparent, None), Err(TraceContextError::Format), "{traceparent:?}");
            assert_eq!(TraceContext::from_headers(Some(traceparent), None), None);
        }
        for zero in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        ] {
            assert_eq!(TraceContext::parse(zero, None), Err(TraceContextError::ZeroId), "{zero}");
        }
    }

    #[test]
    fn tracestate_is_bounded() {
        let kept = |state: &str| TraceContext::parse(PARENT, Some(state)).map(|c| c.tracestate().map(str::to_owned));
        let at_limit = (0..MAX_TRACESTATE_MEMBERS).map(|i| format!("v{i}=x")).collect::<Vec<_>>().join(",");
        assert_eq!(kept(&at_limit), Ok(Some(at_limit.clone())));
        assert_eq!(kept(&format!("{at_limit},w=x")), Ok(None), "33 members");
        assert_eq!(
            kept(&format!("a={}", "x".repeat(MAX_TRACESTATE_BYTES - 2))).map(|s| s.map(|s| s.len())),
            Ok(Some(512))
        );
        assert_eq!(kept(&format!("a={}", "x".repeat(MAX_TRACESTATE_BYTES - 1))), Ok(None), "513 bytes");
        assert_eq!(kept("a=\u{e9}"), Ok(None), "not ASCII");
        assert_eq!(kept(""), Ok(None));
    }

    #[test]
    fn the_apply_span_continues_the_trace_with_a_span_of_its_own() {
        let context = TraceContext::parse(PARENT, Some("a=b")).expect("valid");
        let first = MessageId::new("m-1").expect("id");
        let span = context.apply_span(&first);
        assert_eq!(span.trace_id(), context.trace_id());
        assert_ne!(span.parent_id(), context.parent_id());
        assert_eq!((span.flags(), span.tracestate()), (1, Some("a=b")));
        assert_eq!(span, context.apply_span(&first), "a function of context and identity");
        assert_ne!(span, context.apply_span(&MessageId::new("m-2").expect("id")));
    }
}
