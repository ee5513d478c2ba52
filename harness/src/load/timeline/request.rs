use serde::{Deserialize, Serialize};

/// One request as the client saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// When the request was meant to go out, ms. Open loop: its slot in the fixed
    /// schedule, so a stall is charged to every request it delays (coordinated
    /// omission corrected); closed loop: when it was sent.
    pub intended_ms: f64,
    /// When it actually went out, ms.
    pub sent_ms: f64,
    /// When the response (or the error) came, ms.
    pub done_ms: f64,
    /// HTTP status; None when there was no response.
    pub status: Option<u16>,
    /// Why there was no (good) response: "timeout", "connect", "reset",
    /// "status 503", …; None when ok.
    pub error: Option<String>,
}

impl Request {
    /// A 2xx status and no error.
    pub fn ok(&self) -> bool {
        self.error.is_none() && matches!(self.status, Some(200..=299))
    }

    /// From the intended send time to the response, ms — so an open-loop request
    /// held up behind a stall carries the stall.
    pub fn latency_ms(&self) -> f64 {
        self.done_ms - self.intended_ms
    }

    /// The key for the error tally; None when the request succeeded.
    pub(super) fn error_kind(&self) -> Option<String> {
        if self.ok() {
            return None;
        }
        Some(match (&self.error, self.status) {
            (Some(e), _) => e.clone(),
            (None, Some(s)) => format!("status {s}"),
            // Not produced by the generator, but a log from elsewhere may have it.
            (None, None) => "no response".to_string(),
        })
    }
}

/// Requests for the tests of everything that reads the request log.
#[cfg(test)]
pub(super) mod testing {
    use super::*;

    /// A request sent on time, answered `latency` ms later (`done_ms` even for failures).
    pub fn req(t: f64, latency: f64, status: Option<u16>, error: Option<&str>) -> Request {
        Request { intended_ms: t, sent_ms: t, done_ms: t + latency, status, error: error.map(String::from) }
    }

    pub fn ok(t: f64, latency: f64) -> Request {
        req(t, latency, Some(200), None)
    }

    pub fn failed(t: f64, error: &str) -> Request {
        req(t, 1.0, None, Some(error))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{failed, ok, req};
    use super::*;

    #[test]
    fn ok_needs_a_2xx_status_and_no_error() {
        assert!(ok(0.0, 1.0).ok());
        assert!(req(0.0, 1.0, Some(204), None).ok());
        assert!(!req(0.0, 1.0, Some(199), None).ok());
        assert!(!req(0.0, 1.0, Some(300), None).ok());
        assert!(!req(0.0, 1.0, Some(503), Some("status 503")).ok());
        assert!(!req(0.0, 1.0, Some(200), Some("body truncated")).ok());
        assert!(!failed(0.0, "timeout").ok());
        // Latency runs from the intended slot, not the send.
        let r = Request { intended_ms: 10.0, sent_ms: 250.0, done_ms: 260.0, status: Some(200), error: None };
        assert_eq!(r.latency_ms(), 250.0);
    }
}
