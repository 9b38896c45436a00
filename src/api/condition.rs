//! Helpers for `metav1.Condition` lists: set a condition without moving its
//! lastTransitionTime unless its status changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The three condition statuses of the Kubernetes API conventions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// A new condition observed at `now` for `generation`.
pub fn condition(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.as_str().to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

/// The condition of `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The status of the Ready condition, as metrics report it: "True", "False", or "Unknown" when
/// there is none yet (or it says Unknown).
pub fn ready_status(conditions: &[Condition]) -> &'static str {
    match find_condition(conditions, "Ready").map(|c| c.status.as_str()) {
        Some("True") => "True",
        Some("False") => "False",
        _ => "Unknown",
    }
}

/// Puts `new` into `conditions`, replacing the one of the same type. The previous
/// lastTransitionTime is kept when the status did not change (API conventions).
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == new.type_) {
        if existing.status == new.status {
            new.last_transition_time = existing.last_transition_time.clone();
        }
        *existing = new;
    } else {
        conditions.push(new);
    }
}
