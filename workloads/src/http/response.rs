//! What the server answers: a status and a body, encoded as one buffer.

use std::borrow::Cow;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Ok = 200,
    BadRequest = 400,
    NotFound = 404,
    MethodNotAllowed = 405,
    LengthRequired = 411,
    ContentTooLarge = 413,
    HeaderFieldsTooLarge = 431,
    ServiceUnavailable = 503,
    VersionNotSupported = 505,
}

impl Status {
    fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::LengthRequired => "Length Required",
            Status::ContentTooLarge => "Content Too Large",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }

    /// After these the request's framing is unknown (or the server is full), so
    /// the connection cannot carry another request.
    pub(super) fn closes(self) -> bool {
        !matches!(self, Status::Ok | Status::NotFound | Status::MethodNotAllowed)
    }
}

pub(super) struct Response {
    pub(super) status: Status,
    content_type: &'static str,
    body: Cow<'static, [u8]>,
}

impl Response {
    pub(super) fn ok(content_type: &'static str, body: impl Into<Cow<'static, [u8]>>) -> Response {
        Response { status: Status::Ok, content_type, body: body.into() }
    }

    pub(super) fn error(status: Status) -> Response {
        let body = format!("{} {}\n", status as u16, status.reason());
        Response { status, content_type: "text/plain", body: body.into_bytes().into() }
    }

    /// The response as sent: one buffer, so it leaves in one write (and, with
    /// TCP_NODELAY, one segment when small).
    pub(super) fn encode(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(192 + self.body.len());
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
            self.status as u16,
            self.status.reason(),
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        );
        if self.status == Status::MethodNotAllowed {
            out.extend_from_slice(b"Allow: GET, HEAD\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}
