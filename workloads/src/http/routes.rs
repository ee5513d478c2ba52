//! What each path answers.

use super::page::PAGE;
use super::request::Request;
use super::response::{Response, Status};
use super::store::Store;

pub(super) fn route(request: &Request, store: &Store) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        return Response::error(Status::MethodNotAllowed);
    }
    let path = request.target.split('?').next().unwrap_or_default();
    match path {
        "/" => Response::ok("text/html", PAGE.as_bytes()),
        "/health" => Response::ok("text/plain", &b"ok"[..]),
        _ => match path.strip_prefix("/kv/").and_then(parse_key) {
            // HEAD touches too: its Content-Length must be the GET's.
            Some(key) => kv(store, key),
            None => Response::error(Status::NotFound),
        },
    }
}

/// A key is plain decimal digits (no sign) that fit a u64.
fn parse_key(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn kv(store: &Store, key: u64) -> Response {
    let (version, checksum) = store.touch(key);
    let body = format!("{{\"key\":{key},\"version\":{version},\"checksum\":{checksum}}}");
    Response::ok("application/json", body.into_bytes())
}
