//! The Events certkeeper publishes (SPEC "Events"), built by pure functions and published
//! through the one shared recorder. Notes never contain key material.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};
use tracing::warn;

use crate::context::Context;

pub const ISSUED: &str = "Issued";
pub const RENEWED: &str = "Renewed";
pub const ISSUANCE_FAILED: &str = "IssuanceFailed";
pub const REVOKED: &str = "Revoked";
pub const INVALID_REVOKE_REQUEST: &str = "InvalidRevokeRequest";
pub use crate::certificate::expiry::{EXPIRED, EXPIRING_SOON};

const ACTION_ISSUE: &str = "Issue";
const ACTION_CHECK: &str = "Check";
const ACTION_REVOKE: &str = "Revoke";
const ACTION_CHECK_EXPIRY: &str = "CheckExpiry";

/// Normal `Issued`: the first certificate of a Certificate.
pub fn issued(serial: &str, not_after: Timestamp) -> Event {
    Event {
        type_: EventType::Normal,
        reason: ISSUED.into(),
        note: Some(format!(
            "Issued certificate with serial {serial}, valid until {not_after}"
        )),
        action: ACTION_ISSUE.into(),
        secondary: None,
    }
}

/// Normal `Renewed`: a re-issuance, with the trigger that caused it.
pub fn renewed(trigger_reason: &str, trigger_message: &str, serial: &str, not_after: Timestamp) -> Event {
    Event {
        type_: EventType::Normal,
        reason: RENEWED.into(),
        note: Some(format!(
            "Re-issued certificate ({trigger_reason}: {trigger_message}); new serial {serial}, valid until {not_after}"
        )),
        action: ACTION_ISSUE.into(),
        secondary: None,
    }
}

/// Normal `Revoked`: the certificate with `serial` is revoked (in the issuer's CRL and OCSP
/// answers from now on) and has been replaced.
pub fn revoked(serial: &str, reason: &str, revoked_at: Timestamp) -> Event {
    Event {
        type_: EventType::Normal,
        reason: REVOKED.into(),
        note: Some(format!(
            "Revoked certificate with serial {serial} (reason {reason}, at {revoked_at}); re-issued with a new key"
        )),
        action: ACTION_REVOKE.into(),
        secondary: None,
    }
}

/// Warning `InvalidRevokeRequest`: the revoke annotations cannot be read; nothing is revoked.
pub fn invalid_revoke_request(why: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: INVALID_REVOKE_REQUEST.into(),
        note: Some(format!("Nothing revoked: {why}")),
        action: ACTION_REVOKE.into(),
        secondary: None,
    }
}

/// Warning `IssuanceFailed`: the cause and when the next attempt is.
pub fn issuance_failed(cause: &str, retry_at: Timestamp) -> Event {
    Event {
        type_: EventType::Warning,
        reason: ISSUANCE_FAILED.into(),
        note: Some(format!("{cause}; next attempt at {retry_at}")),
        action: ACTION_ISSUE.into(),
        secondary: None,
    }
}

/// Warning `ExpiringSoon`: remaining validity dropped below `threshold`. The note says whether
/// renewal is overdue (it was due at `renewal_time`) or still to come.
pub fn expiring_soon(
    not_after: Timestamp,
    threshold: &str,
    renewal_time: Option<Timestamp>,
    now: Timestamp,
) -> Event {
    let renewal = match renewal_time {
        Some(at) if at <= now => format!("; renewal was due at {at} and has not succeeded"),
        Some(at) => format!("; renewal is scheduled for {at}"),
        None => String::new(),
    };
    Event {
        type_: EventType::Warning,
        reason: EXPIRING_SOON.into(),
        note: Some(format!(
            "Certificate expires at {not_after}, less than {threshold} from now{renewal}"
        )),
        action: ACTION_CHECK_EXPIRY.into(),
        secondary: None,
    }
}

/// Warning `Expired`: notAfter passed.
pub fn expired(not_after: Timestamp) -> Event {
    Event {
        type_: EventType::Warning,
        reason: EXPIRED.into(),
        note: Some(format!("Certificate expired at {not_after}")),
        action: ACTION_CHECK_EXPIRY.into(),
        secondary: None,
    }
}

/// A Warning whose reason is the Ready condition's (InvalidSpec, IssuerNotFound, …).
pub fn not_ready(reason: &str, message: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(message.into()),
        action: ACTION_CHECK.into(),
        secondary: None,
    }
}

/// Publishes `event` about `regarding`. An Event that cannot be written is logged, never fatal:
/// the status already carries the same facts.
pub async fn publish(ctx: &Context, event: Event, regarding: &ObjectReference) {
    if let Err(error) = ctx.recorder.publish(&event, regarding).await {
        warn!(%error, reason = %event.reason, "could not publish event");
    }
}
