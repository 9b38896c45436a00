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

const ACTION_ISSUE: &str = "Issue";
const ACTION_CHECK: &str = "Check";

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
