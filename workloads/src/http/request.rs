//! Reading a request head: where it ends, its request line and the headers the
//! server acts on. Nothing here may panic on what a client sends.

use super::response::Status;

/// What a request asks, once its head has been read and checked.
#[derive(Debug, PartialEq)]
pub(super) struct Request {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) keep_alive: bool,
    pub(super) content_length: u64,
}

/// Clients may send empty lines before a request (some do after a body).
pub(super) fn skip_blank_lines(buf: &mut Vec<u8>) {
    let blank = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    buf.drain(..blank);
}

/// The length of the request head at the start of `buf` (up to and including
/// the empty line that ends it), if it is all there. Lines may end in CRLF or LF.
pub(super) fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().filter(|&(_, &b)| b == b'\n').find_map(|(i, _)| {
        let rest = buf.get(i + 1..)?;
        if rest.starts_with(b"\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// Reads a request head (request line and headers); the error is the status
/// to answer with.
pub(super) fn parse_head(head: &[u8]) -> Result<Request, Status> {
    let text = std::str::from_utf8(head).map_err(|_| Status::BadRequest)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let (method, target, http11) = parse_request_line(lines.next().unwrap_or_default())?;
    let mut headers = Headers::default();
    for line in lines.take_while(|l| !l.is_empty()) {
        headers.add(line)?;
    }
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        keep_alive: !headers.close && (http11 || headers.keep_alive),
        content_length: headers.content_length.unwrap_or(0),
    })
}

/// `METHOD TARGET HTTP/1.x`: the method, the target and whether it is HTTP/1.1.
fn parse_request_line(line: &str) -> Result<(&str, &str, bool), Status> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Status::BadRequest);
    };
    if !is_token(method) || !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(Status::BadRequest);
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v => match v.strip_prefix("HTTP/").map(str::as_bytes) {
            Some([major, b'.', minor]) if major.is_ascii_digit() && minor.is_ascii_digit() => {
                return Err(Status::VersionNotSupported);
            }
            _ => return Err(Status::BadRequest),
        },
    };
    Ok((method, target, http11))
}

/// An HTTP token (method, header name): visible ASCII but no separators.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The headers the server acts on.
#[derive(Default)]
struct Headers {
    content_length: Option<u64>,
    close: bool,
    keep_alive: bool,
}

impl Headers {
    fn add(&mut self, line: &str) -> Result<(), Status> {
        let (name, value) = line.split_once(':').ok_or(Status::BadRequest)?;
        // A name with spaces, or a line folded onto the previous one, is invalid
        // and would let two parsers disagree on the request.
        if !is_token(name) {
            return Err(Status::BadRequest);
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            let len = parse_content_length(value)?;
            if self.content_length.is_some_and(|seen| seen != len) {
                return Err(Status::BadRequest);
            }
            self.content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only Content-Length bodies are read; a chunked body is refused.
            return Err(Status::LengthRequired);
        } else if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(|o| o.trim_matches([' ', '\t'])) {
                self.close |= option.eq_ignore_ascii_case("close");
                self.keep_alive |= option.eq_ignore_ascii_case("keep-alive");
            }
        }
        Ok(())
    }
}

/// Digits only; a number too big for u64 is still a length, just one over the limit.
fn parse_content_length(value: &str) -> Result<u64, Status> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Status::BadRequest);
    }
    Ok(value.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_input_makes_the_parser_panic() {
        let mut x: u64 = 7;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u8
        };
        let alphabet = b"GET /kv/1 HTTP/1.1\r\n:Content-Length: 99Connection: close\xff\x00";
        for _ in 0..20_000 {
            let len = next() as usize % 80;
            let bytes: Vec<u8> = (0..len).map(|_| alphabet[next() as usize % alphabet.len()]).collect();
            let _ = head_end(&bytes);
            let _ = parse_head(&bytes);
            let mut buf = bytes.clone();
            skip_blank_lines(&mut buf);
        }
    }

    #[test]
    fn parse_head_reads_what_matters() {
        let r = parse_head(b"GET /x?y HTTP/1.1\r\nHOST: a\r\ncontent-length:  12 \r\nConnection: foo, close\r\n\r\n").unwrap();
        assert_eq!(r, Request { method: "GET".into(), target: "/x?y".into(), keep_alive: false, content_length: 12 });
        assert_eq!(parse_head(b"GET / HTTP/1.1\nContent-Length: 1\nContent-Length: 2\n\n"), Err(Status::BadRequest));
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n").unwrap().content_length, u64::MAX);
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n"), Err(Status::BadRequest));
        assert_eq!(head_end(b"GET / HTTP/1.1\nA: b\n\nrest"), Some(21));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}
