//! RFC 9457 problem details: the one error shape of the gateway's JSON APIs
//! (the public room API and the internal API).
//!
//! `type` is `about:blank`, so `title` is the HTTP reason phrase and
//! `detail` says what went wrong. When the error is an Arthas refusal, the
//! extension member `code` carries its protocol code (`E006`, ...) and
//! `detail` its exact text, so a relay calling the internal API can send the
//! very error frame the in-process gateway would have produced.
//!
//! The reference directory (`/api/hub`) keeps its own legacy error bodies;
//! see [`crate::directory`].

use hyper::StatusCode;
use protocol::reject::texts;
use protocol::{ErrorCode, Reject};

pub use edge::http::{Problem, PROBLEM_JSON};

/// Refusals as problems and back ([`Problem`] is the shared RFC 9457 type
/// of [`edge::http`]; this is what the gateway's refusals add to it).
pub trait RejectProblem {
    /// The problem for an Arthas refusal, with the status that fits it.
    fn from_reject(reject: &Reject) -> Problem;
    /// The refusal this problem carries, when it carries one.
    fn to_reject(&self) -> Option<Reject>;
}

impl RejectProblem for Problem {
    fn from_reject(reject: &Reject) -> Problem {
        let mut problem = Problem::new(status_of(reject), reject.msg.clone());
        problem.code = Some(reject.code.as_str().to_owned());
        problem
    }

    fn to_reject(&self) -> Option<Reject> {
        let code = ErrorCode::parse(self.code.as_deref()?)?;
        Some(Reject::owned(code, self.detail.clone()))
    }
}

/// The HTTP status for a refusal.
pub fn status_of(reject: &Reject) -> StatusCode {
    if *reject == texts::UNAVAILABLE || *reject == texts::FAILED_TO_CREATE {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match reject.code {
        ErrorCode::RoomNotFound => StatusCode::NOT_FOUND,
        ErrorCode::RoomFull => StatusCode::CONFLICT,
        ErrorCode::RoomExpired => StatusCode::GONE,
        ErrorCode::WrongPassword | ErrorCode::NotOwner => StatusCode::FORBIDDEN,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::NotInRoom
        | ErrorCode::Invalid
        | ErrorCode::HubFull
        | ErrorCode::InvalidListing
        | ErrorCode::MatchDisabled => StatusCode::BAD_REQUEST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_code_and_exact_text() {
        let p = Problem::from_reject(&texts::WRONG_PASSWORD);
        assert_eq!(p.status, 403);
        assert_eq!(p.title, "Forbidden");
        assert_eq!(p.code.as_deref(), Some("E006"));
        assert_eq!(p.detail, "wrong password");
        assert_eq!(p.to_reject(), Some(texts::WRONG_PASSWORD));
    }

    #[test]
    fn statuses_follow_the_meaning_of_the_code() {
        assert_eq!(status_of(&texts::ROOM_NOT_FOUND), StatusCode::NOT_FOUND);
        assert_eq!(status_of(&texts::ROOM_EXPIRED), StatusCode::GONE);
        assert_eq!(
            status_of(&texts::TOO_MANY_GUESSES),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status_of(&texts::UNAVAILABLE),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status_of(&texts::INVALID_TICKET), StatusCode::FORBIDDEN);
        assert_eq!(status_of(&Reject::invalid("bad")), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn an_unknown_code_is_no_refusal() {
        let mut p = Problem::new(StatusCode::BAD_GATEWAY, "x");
        assert_eq!(p.to_reject(), None);
        p.code = Some("Z999".into());
        assert_eq!(p.to_reject(), None);
    }
}
