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
pub const INVALID_RENEW_REQUEST: &str = "InvalidRenewRequest";
pub const INVALID_DISTRUST_REQUEST: &str = "InvalidDistrustRequest";
pub const NOTHING_TO_REVOKE: &str = "NothingToRevoke";
pub const REVOCATION_NOT_PUBLISHED: &str = "RevocationNotPublished";
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

/// Warning `InvalidRenewRequest`: `certkeeper.io/renew-requested-at` is not an RFC 3339 time;
/// nothing is renewed.
pub fn invalid_renew_request(why: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: INVALID_RENEW_REQUEST.into(),
        note: Some(format!("Nothing renewed: {why}")),
        action: ACTION_ISSUE.into(),
        secondary: None,
    }
}

/// Warning `InvalidDistrustRequest` on an issuer: its distrust annotation is not an RFC 3339
/// time; nothing is distrusted.
pub fn invalid_distrust_request(why: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: INVALID_DISTRUST_REQUEST.into(),
        note: Some(format!("Nothing distrusted: {why}")),
        action: "RotateCA".into(),
        secondary: None,
    }
}

/// Warning `NothingToRevoke`: a revoke request came due while the Secret held no certificate
/// to revoke. It is answered; the certificate issued now is not revoked.
pub fn nothing_to_revoke(requested_at: Timestamp, why: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: NOTHING_TO_REVOKE.into(),
        note: Some(format!(
            "Nothing revoked for the request at {requested_at}: {why}; the certificate issued now is not revoked"
        )),
        action: ACTION_REVOKE.into(),
        secondary: None,
    }
}

/// Warning `RevocationNotPublished`: the certificate with `serial` is self-signed, so no CRL or
/// OCSP answer can say it is revoked; it was replaced with a new key, but stays valid until
/// `not_after` for whoever trusts it.
pub fn revocation_not_published(serial: &str, not_after: Timestamp) -> Event {
    Event {
        type_: EventType::Warning,
        reason: REVOCATION_NOT_PUBLISHED.into(),
        note: Some(format!(
            "The certificate with serial {serial} is self-signed: no CRL or OCSP can revoke it. It was \
             replaced with a new key, but whoever trusts it keeps trusting it until {not_after}"
        )),
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

/// Request annotation values already warned about, per object and annotation: a value that
/// cannot be read or acted on gets one Warning Event, however often its object is reconciled
/// (one more after a restart).
#[derive(Debug, Default)]
pub struct WarnedRequests(std::sync::Mutex<std::collections::HashMap<(String, &'static str), String>>);

impl WarnedRequests {
    /// Whether `value` of `annotation` on `object` has not been warned about yet; from now on
    /// it has.
    pub fn first(&self, object: &str, annotation: &'static str, value: &str) -> bool {
        let mut warned = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (object.to_owned(), annotation);
        if warned.get(&key).is_some_and(|v| v == value) {
            return false;
        }
        warned.insert(key, value.to_owned());
        true
    }

    /// Forgets `object`'s `annotation`: it reads fine now, or is gone.
    pub fn forget(&self, object: &str, annotation: &'static str) {
        let mut warned = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !warned.is_empty() {
            warned.remove(&(object.to_owned(), annotation));
        }
    }
}

/// Publishes `event` about `regarding`. An Event that cannot be written is logged, never fatal:
/// the status already carries the same facts.
pub async fn publish(ctx: &Context, event: Event, regarding: &ObjectReference) {
    if let Err(error) = ctx.recorder.publish(&event, regarding).await {
        warn!(%error, reason = %event.reason, "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_value_is_warned_about_once_until_it_changes() {
        let warned = WarnedRequests::default();
        let renew = "certkeeper.io/renew-requested-at";
        assert!(warned.first("Certificate apps/web", renew, "yesterday"));
        assert!(!warned.first("Certificate apps/web", renew, "yesterday"));
        assert!(warned.first("Certificate apps/api", renew, "yesterday"));
        assert!(warned.first("Certificate apps/web", renew, "tomorrow"));
        warned.forget("Certificate apps/web", renew);
        assert!(
            warned.first("Certificate apps/web", renew, "tomorrow"),
            "set again after a fix"
        );
    }
}
