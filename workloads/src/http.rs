//! The `http` workload: a small HTTP/1.1 server with an in-memory key/value store
//! behind it, so a migrated guest carries live TCP connections and a web
//! application's memory (each request rewrites one page of it).
//!
//! It is blocking `std::net` with a thread per connection: the guest has few
//! vCPUs and must depend on nothing but `libc`, and a server this small needs no
//! event loop to keep a load generator busy.
//!
//! The guest binary aborts on panic and this server runs in PID 1, so nothing
//! that comes from the network may panic: slices are taken with `get`, numbers
//! are parsed with checks, and a connection that fails just ends.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The port the guest serves on.
pub const PORT: u16 = 80;

/// The size of one value in the [`Store`]: one page.
pub const SLOT_BYTES: usize = 4096;

const SLOT_WORDS: usize = SLOT_BYTES / 8;

/// Connections served at once; more are refused with 503, so a flood of clients
/// cannot exhaust the guest's memory with threads.
const MAX_CONNECTIONS: usize = 512;

/// Limits on what a client may send: the request line and headers, and a body.
const MAX_HEAD: usize = 8 * 1024;
const MAX_BODY: u64 = 1024 * 1024;

/// A keep-alive connection with no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection thread needs little stack (its buffers are on the heap); a
/// small one keeps 512 of them cheap in a small guest.
const CONNECTION_STACK: usize = 256 * 1024;

/// How long, and how much, a closing connection keeps reading what the client
/// still sends, so the close is a FIN rather than a reset that could destroy
/// the response before the client reads it.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_STEP: Duration = Duration::from_millis(500);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One slot's value. Page-aligned and exactly a page, so a touch dirties exactly
/// one page of guest memory. Atomics (plain moves on x86) let the value change
/// behind `&Store` without `unsafe`; it is the slot's lock that keeps a read
/// and rewrite whole.
#[repr(align(4096))]
struct Value([AtomicU64; SLOT_WORDS]);

const _: () = assert!(std::mem::size_of::<Value>() == SLOT_BYTES);

/// The key/value store behind `/kv/<n>`: `slots` values of [`SLOT_BYTES`] each,
/// every one with its own version counter and lock.
pub struct Store {
    values: Vec<Value>,
    /// Slot i's version; its lock also guards `values[i]`. Kept apart from the
    /// values so that they stay page-aligned.
    versions: Vec<Mutex<u64>>,
}

impl Store {
    /// A store of `mib` MiB (256 slots a MiB, at least one slot). Every value is
    /// written now, with non-zero data of its own, so the memory is really
    /// allocated and migration cannot skip it as zero pages.
    pub fn new(mib: u32) -> Store {
        let slots = (mib as usize).saturating_mul(1024 * 1024 / SLOT_BYTES).max(1);
        let values = (0..slots)
            .map(|slot| {
                let seed = seed(slot as u64, 0);
                Value(std::array::from_fn(|i| AtomicU64::new(word(seed, i))))
            })
            .collect();
        let versions = (0..slots).map(|_| Mutex::new(0)).collect();
        Store { values, versions }
    }

    /// How many values the store holds.
    pub fn slots(&self) -> usize {
        self.values.len()
    }

    /// What a web application's request does to its data: reads the whole value
    /// of `key`'s slot (`key` mod `slots`), then rewrites all of it with new data
    /// from `key` and the slot's next version. Returns that version and the new
    /// value's checksum.
    pub fn touch(&self, key: u64) -> (u64, u64) {
        let slot = (key % self.values.len() as u64) as usize;
        let mut version = self.versions[slot].lock().unwrap_or_else(PoisonError::into_inner);
        let value = &self.values[slot];
        std::hint::black_box(checksum(value));
        *version = version.wrapping_add(1);
        let seed = seed(key, *version);
        let mut sum = FNV_OFFSET;
        for (i, w) in value.0.iter().enumerate() {
            let x = word(seed, i);
            w.store(x, Ordering::Relaxed);
            sum = fnv(sum, x);
        }
        (*version, sum)
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn seed(key: u64, version: u64) -> u64 {
    splitmix(splitmix(key) ^ version)
}

/// Word `i` of the value for `seed`: never zero, and different in every slot
/// and version, so no page is a zero page or a copy of another.
fn word(seed: u64, i: usize) -> u64 {
    splitmix(seed.wrapping_add(i as u64)) | 1
}

fn fnv(h: u64, word: u64) -> u64 {
    (h ^ word).wrapping_mul(FNV_PRIME)
}

fn checksum(value: &Value) -> u64 {
    value.0.iter().fold(FNV_OFFSET, |h, w| fnv(h, w.load(Ordering::Relaxed)))
}

/// Serves HTTP on `listener` for ever, a thread per connection, counting every
/// answered request in `served`. Returns only if the listener itself fails.
pub fn serve(listener: TcpListener, store: Arc<Store>, served: &'static AtomicU64) -> io::Result<()> {
    serve_at_most(listener, store, served, MAX_CONNECTIONS)
}

fn serve_at_most(listener: TcpListener, store: Arc<Store>, served: &'static AtomicU64, limit: usize) -> io::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if accept_error_is_fatal(&e) => return Err(e),
            Err(e) => {
                // Out of descriptors or memory: let connections end before trying again.
                if !matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        };
        let Some(claim) = OpenSlot::claim(&open, limit) else {
            refuse(stream, served);
            continue;
        };
        let store = Arc::clone(&store);
        // If no thread can be made, the closure (stream and claim) is dropped:
        // that one client is cut off and the server carries on.
        let _ = std::thread::Builder::new().name("http".into()).stack_size(CONNECTION_STACK).spawn(move || {
            let _claim = claim;
            Connection::new(stream).run(&store, served);
        });
    }
}

/// Errors that mean the listener is unusable, not that one connection failed.
fn accept_error_is_fatal(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP | libc::EFAULT))
}

/// One of the `limit` connections that may be open at once, given back on drop.
struct OpenSlot(Arc<AtomicUsize>);

impl OpenSlot {
    fn claim(open: &Arc<AtomicUsize>, limit: usize) -> Option<OpenSlot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)).ok()?;
        Some(OpenSlot(Arc::clone(open)))
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers 503 on the accepting thread without waiting for the request: it must
/// not block, so it takes only what the client has already sent.
fn refuse(mut stream: TcpStream, served: &AtomicU64) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let reply = Response::error(Status::ServiceUnavailable).encode(false, false);
    if stream.write_all(&reply).is_ok() {
        served.fetch_add(1, Ordering::Relaxed);
    }
    let _ = stream.shutdown(Shutdown::Write);
    if stream.set_nonblocking(true).is_ok() {
        let mut scratch = [0u8; 4096];
        for _ in 0..4 {
            if !matches!(stream.read(&mut scratch), Ok(n) if n > 0) {
                break;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
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
    fn closes(self) -> bool {
        !matches!(self, Status::Ok | Status::NotFound | Status::MethodNotAllowed)
    }
}

struct Response {
    status: Status,
    content_type: &'static str,
    body: Cow<'static, [u8]>,
}

impl Response {
    fn ok(content_type: &'static str, body: impl Into<Cow<'static, [u8]>>) -> Response {
        Response { status: Status::Ok, content_type, body: body.into() }
    }

    fn error(status: Status) -> Response {
        let body = format!("{} {}\n", status as u16, status.reason());
        Response { status, content_type: "text/plain", body: body.into_bytes().into() }
    }

    /// The response as sent: one buffer, so it leaves in one write (and, with
    /// TCP_NODELAY, one segment when small).
    fn encode(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
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

/// What a request asks, once its head has been read and checked.
#[derive(Debug, PartialEq)]
struct Request {
    method: String,
    target: String,
    keep_alive: bool,
    content_length: u64,
}

/// The outcome of waiting for the next request on a connection.
enum Incoming {
    Request(Request),
    /// A request the server answers with this error, then closes.
    Reject(Status),
    /// The client closed (between requests, or part-way through one).
    Closed,
}

struct Connection {
    stream: TcpStream,
    /// Bytes read but not used yet: the rest of a request, or pipelined ones.
    buf: Vec<u8>,
}

impl Connection {
    fn new(stream: TcpStream) -> Connection {
        Connection { stream, buf: Vec::with_capacity(MAX_HEAD) }
    }

    /// Serves requests until the client or an answer closes the connection, or
    /// an I/O error (including the idle timeout) ends it.
    fn run(mut self, store: &Store, served: &AtomicU64) {
        let ready = self.stream.set_nodelay(true).is_ok()
            && self.stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_ok()
            && self.stream.set_write_timeout(Some(IDLE_TIMEOUT)).is_ok();
        if ready && matches!(self.serve_requests(store, served), Ok(true)) {
            self.linger();
        }
    }

    /// Ok(true) when the server chose to close after an answer, Ok(false) when
    /// the client went away.
    fn serve_requests(&mut self, store: &Store, served: &AtomicU64) -> io::Result<bool> {
        loop {
            let request = match self.next_request()? {
                Incoming::Closed => return Ok(false),
                Incoming::Reject(status) => return self.answer(&Response::error(status), false, false, served).map(|_| true),
                Incoming::Request(r) => r,
            };
            if request.content_length > MAX_BODY {
                self.answer(&Response::error(Status::ContentTooLarge), false, false, served)?;
                return Ok(true);
            }
            if !self.skip(request.content_length)? {
                return Ok(false);
            }
            let response = route(&request, store);
            let keep_alive = request.keep_alive && !response.status.closes();
            self.answer(&response, keep_alive, request.method == "HEAD", served)?;
            if !keep_alive {
                return Ok(true);
            }
        }
    }

    fn answer(&mut self, response: &Response, keep_alive: bool, head_only: bool, served: &AtomicU64) -> io::Result<()> {
        self.stream.write_all(&response.encode(keep_alive, head_only))?;
        served.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn next_request(&mut self) -> io::Result<Incoming> {
        let len = loop {
            skip_blank_lines(&mut self.buf);
            match head_end(&self.buf) {
                Some(end) if end > MAX_HEAD => return Ok(Incoming::Reject(Status::HeaderFieldsTooLarge)),
                Some(end) => break end,
                None if self.buf.len() >= MAX_HEAD => return Ok(Incoming::Reject(Status::HeaderFieldsTooLarge)),
                None => {
                    if self.fill()? == 0 {
                        return Ok(Incoming::Closed);
                    }
                }
            }
        };
        let parsed = parse_head(self.buf.get(..len).unwrap_or_default());
        self.buf.drain(..len);
        Ok(match parsed {
            Ok(request) => Incoming::Request(request),
            Err(status) => Incoming::Reject(status),
        })
    }

    /// Reads what the client has sent into `buf`; 0 at the end of its stream.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Discards a `len`-byte body, keeping whatever follows it; false if the
    /// client closed before sending all of it.
    fn skip(&mut self, mut len: u64) -> io::Result<bool> {
        loop {
            let here = len.min(self.buf.len() as u64) as usize;
            self.buf.drain(..here);
            len -= here as u64;
            if len == 0 {
                return Ok(true);
            }
            if self.fill()? == 0 {
                return Ok(false);
            }
        }
    }

    /// Closes after our last answer: sends FIN, then reads (and drops) what the
    /// client still sends for a while, so the answer is not lost to a reset.
    fn linger(mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        if self.stream.set_read_timeout(Some(LINGER_STEP)).is_err() {
            return;
        }
        let until = Instant::now() + LINGER;
        let mut drained = 0u64;
        let mut scratch = [0u8; 4096];
        while Instant::now() < until && drained < MAX_BODY {
            match self.stream.read(&mut scratch) {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n as u64,
            }
        }
    }
}

/// Clients may send empty lines before a request (some do after a body).
fn skip_blank_lines(buf: &mut Vec<u8>) {
    let blank = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    buf.drain(..blank);
}

/// The length of the request head at the start of `buf` (up to and including
/// the empty line that ends it), if it is all there. Lines may end in CRLF or LF.
fn head_end(buf: &[u8]) -> Option<usize> {
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
fn parse_head(head: &[u8]) -> Result<Request, Status> {
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

fn route(request: &Request, store: &Store) -> Response {
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

/// The static page at `/`: about 1 KiB, like a small site's front page.
const PAGE: &str = "<!DOCTYPE html>
<html lang=\"en\">
<head>
<meta charset=\"utf-8\">
<title>migbench guest</title>
<style>body { font-family: sans-serif; max-width: 40em; margin: 2em auto; line-height: 1.4; }</style>
</head>
<body>
<h1>migbench guest</h1>
<p>This page is served from inside a virtual machine that may be live-migrating
between two QEMU processes while you read it. The connection you fetched it over
should survive the move: the guest keeps its TCP state, and only the host under it
changes.</p>
<p>Other paths:</p>
<ul>
<li><code>/kv/N</code> reads and rewrites one 4 KiB value of an in-memory store
and answers with its new version and checksum, as JSON. Every request dirties a
page of guest memory, which the migration must copy again.</li>
<li><code>/health</code> answers <code>ok</code>.</li>
</ul>
<p>Only GET and HEAD are served. Keep-alive and pipelining work; idle connections
close after a minute.</p>
</body>
</html>
";

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    static SERVED: AtomicU64 = AtomicU64::new(0);

    fn server_at_most(limit: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let store = Arc::new(Store::new(1));
        std::thread::spawn(move || serve_at_most(listener, store, &SERVED, limit));
        addr
    }

    fn server() -> SocketAddr {
        server_at_most(MAX_CONNECTIONS)
    }

    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    /// A raw client: writes bytes as given and reads responses by their Content-Length.
    struct Client {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    impl Client {
        fn connect(addr: SocketAddr) -> Client {
            let stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            Client { stream, buf: Vec::new() }
        }

        fn send(&mut self, raw: &str) {
            self.stream.write_all(raw.as_bytes()).unwrap();
        }

        fn read_more(&mut self) -> usize {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).unwrap();
            self.buf.extend_from_slice(&chunk[..n]);
            n
        }

        fn reply(&mut self) -> Reply {
            self.reply_to(false)
        }

        fn reply_to(&mut self, head: bool) -> Reply {
            let end = loop {
                if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                assert!(self.read_more() > 0, "connection closed before a response");
            };
            let text = String::from_utf8(self.buf.drain(..end).collect()).unwrap();
            let mut lines = text.split("\r\n");
            let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
            let headers: Vec<(String, String)> = lines
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (n, v) = l.split_once(':').unwrap();
                    (n.to_string(), v.trim().to_string())
                })
                .collect();
            let mut reply = Reply { status, headers, body: String::new() };
            let len: usize = reply.header("content-length").expect("every response has Content-Length").parse().unwrap();
            let len = if head { 0 } else { len };
            while self.buf.len() < len {
                assert!(self.read_more() > 0, "connection closed inside a body");
            }
            reply.body = String::from_utf8(self.buf.drain(..len).collect()).unwrap();
            reply
        }

        fn get(&mut self, path: &str) -> Reply {
            self.send(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"));
            self.reply()
        }

        /// The server has closed: nothing more arrives, and the read sees the end.
        fn is_closed(&mut self) -> bool {
            self.buf.is_empty() && self.read_more() == 0
        }
    }

    fn json_field(body: &str, name: &str) -> u64 {
        let start = body.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
        body[start..].split([',', '}']).next().unwrap().parse().unwrap()
    }

    #[test]
    fn a_store_of_one_mib_has_256_non_zero_page_aligned_slots() {
        let store = Store::new(1);
        assert_eq!(store.slots(), 256);
        assert!(store.values.iter().all(|v| v.0.iter().all(|w| w.load(Ordering::Relaxed) != 0)));
        assert_eq!(store.values.as_ptr() as usize % 4096, 0);
        // Slot-specific: no two values are the same page.
        let mut sums: Vec<u64> = store.values.iter().map(checksum).collect();
        sums.sort_unstable();
        sums.dedup();
        assert_eq!(sums.len(), 256);
        assert_eq!(Store::new(0).slots(), 1);
    }

    #[test]
    fn touch_bumps_the_version_and_rewrites_the_whole_value() {
        let store = Store::new(1);
        let before = checksum(&store.values[5]);
        let (v1, c1) = store.touch(5);
        assert_eq!((v1, c1), (1, checksum(&store.values[5])));
        assert_ne!(c1, before);
        let (v2, c2) = store.touch(5 + 256);
        assert_eq!(v2, 2, "keys are taken modulo the slots");
        assert_ne!(c2, c1);
        assert!(store.values[5].0.iter().all(|w| w.load(Ordering::Relaxed) != 0));
        assert_eq!(store.touch(6).0, 1);
    }

    #[test]
    fn static_page_and_head() {
        let mut c = Client::connect(server());
        let r = c.get("/");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/html"));
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert!((900..=1300).contains(&r.body.len()), "page is {} bytes", r.body.len());
        assert!(r.body.contains("<html"));
        c.send("HEAD / HTTP/1.1\r\nHost: test\r\n\r\n");
        let h = c.reply_to(true);
        assert_eq!(h.status, 200);
        assert_eq!(h.header("content-length"), Some(r.body.len().to_string().as_str()));
        // No body followed the HEAD answer: the next response starts right away.
        assert_eq!(c.get("/health").body, "ok");
    }

    #[test]
    fn kv_versions_increase_and_checksums_change() {
        let mut c = Client::connect(server());
        let a = c.get("/kv/5");
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-type"), Some("application/json"));
        let b = c.get("/kv/5?fresh=1");
        assert_eq!((json_field(&a.body, "key"), json_field(&a.body, "version")), (5, 1));
        assert_eq!((json_field(&b.body, "key"), json_field(&b.body, "version")), (5, 2));
        assert_ne!(json_field(&a.body, "checksum"), json_field(&b.body, "checksum"));
        let big = c.get("/kv/18446744073709551615");
        assert_eq!(json_field(&big.body, "key"), u64::MAX);
        assert_eq!(json_field(&big.body, "version"), 1);
    }

    #[test]
    fn unknown_paths_and_keys_are_404() {
        let mut c = Client::connect(server());
        for path in ["/nope", "/kv/", "/kv/x", "/kv/-1", "/kv/+1", "/kv/18446744073709551616", "/kv/1/2"] {
            let r = c.get(path);
            assert_eq!(r.status, 404, "{path}");
            assert_eq!(r.header("connection"), Some("keep-alive"), "a 404 keeps the connection");
        }
    }

    #[test]
    fn other_methods_are_405_with_allow() {
        let mut c = Client::connect(server());
        c.send("DELETE /kv/1 HTTP/1.1\r\nHost: test\r\n\r\n");
        let r = c.reply();
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
        // The store was not touched.
        assert_eq!(json_field(&c.get("/kv/1").body, "version"), 1);
    }

    #[test]
    fn garbage_is_400_and_closes() {
        for bad in ["hello\r\n\r\n", "GET /\r\n\r\n", "GET  / HTTP/1.1\r\n\r\n", "GET nope HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nno colon\r\n\r\n", "GET / HTTP/1.1\r\nContent-Length: -3\r\n\r\n"] {
            let mut c = Client::connect(server());
            c.send(bad);
            let r = c.reply();
            assert_eq!(r.status, 400, "{bad:?}");
            assert_eq!(r.header("connection"), Some("close"));
            assert!(c.is_closed(), "{bad:?}");
        }
        let mut c = Client::connect(server());
        c.send("GET / HTTP/2.0\r\n\r\n");
        assert_eq!(c.reply().status, 505);
    }

    #[test]
    fn keep_alive_serves_three_in_a_row() {
        let before = SERVED.load(Ordering::Relaxed);
        let mut c = Client::connect(server());
        for _ in 0..3 {
            let r = c.get("/health");
            assert_eq!((r.status, r.body.as_str()), (200, "ok"));
            assert_eq!(r.header("connection"), Some("keep-alive"));
        }
        // The count goes up just after each answer is written, so it may trail
        // the client by a moment.
        let counted = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            SERVED.load(Ordering::Relaxed) >= before + 3
        });
        assert!(counted);
    }

    #[test]
    fn pipelined_requests_in_one_write() {
        let mut c = Client::connect(server());
        c.send("GET /kv/9 HTTP/1.1\r\nHost: test\r\n\r\nGET /kv/9 HTTP/1.1\r\nHost: test\r\n\r\n");
        assert_eq!(json_field(&c.reply().body, "version"), 1);
        assert_eq!(json_field(&c.reply().body, "version"), 2);
    }

    #[test]
    fn connection_close_closes() {
        let mut c = Client::connect(server());
        // Header names and the option are case-insensitive.
        c.send("GET /health HTTP/1.1\r\nHost: test\r\nconnection: Close\r\n\r\n");
        let r = c.reply();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.is_closed());
    }

    #[test]
    fn http_1_0_closes_unless_asked_to_keep_alive() {
        let mut c = Client::connect(server());
        c.send("GET /health HTTP/1.0\r\n\r\n");
        assert_eq!(c.reply().header("connection"), Some("close"));
        assert!(c.is_closed());
        let mut c = Client::connect(server());
        c.send("GET /health HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert_eq!(c.reply().header("connection"), Some("keep-alive"));
        assert_eq!(c.get("/health").status, 200);
    }

    #[test]
    fn an_oversized_head_is_431() {
        let mut c = Client::connect(server());
        c.send(&format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000)));
        let r = c.reply();
        assert_eq!(r.status, 431);
        assert!(c.is_closed());
    }

    #[test]
    fn a_body_is_skipped_and_the_next_request_parses() {
        let mut c = Client::connect(server());
        c.send("POST /kv/3 HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\r\nhello worldGET /health HTTP/1.1\r\nHost: test\r\n\r\n");
        assert_eq!(c.reply().status, 405);
        assert_eq!(c.reply().body, "ok");
        // A body that arrives in pieces, followed by a request in the same write as its end.
        c.send("GET /health HTTP/1.1\r\nHost: test\r\nContent-Length: 6\r\n\r\nabc");
        std::thread::sleep(Duration::from_millis(50));
        c.send("defGET /kv/3 HTTP/1.1\r\nHost: test\r\n\r\n");
        assert_eq!(c.reply().body, "ok");
        assert_eq!(json_field(&c.reply().body, "version"), 1);
    }

    #[test]
    fn too_big_or_chunked_bodies_are_refused() {
        let mut c = Client::connect(server());
        c.send("POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n");
        assert_eq!(c.reply().status, 413);
        assert!(c.is_closed());
        let mut c = Client::connect(server());
        c.send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(c.reply().status, 411);
        assert!(c.is_closed());
    }

    #[test]
    fn beyond_the_limit_clients_get_503() {
        let addr = server_at_most(1);
        let mut first = Client::connect(addr);
        assert_eq!(first.get("/health").status, 200);
        let mut second = Client::connect(addr);
        let r = second.reply();
        assert_eq!((r.status, r.header("connection")), (503, Some("close")));
        assert!(second.is_closed());
        drop(first);
        // Once the first connection's thread has ended, its place is free again.
        let served = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            health_is_served(addr)
        });
        assert!(served);
    }

    /// One GET /health that tolerates being refused (a 503, or a reset).
    fn health_is_served(addr: SocketAddr) -> bool {
        let Ok(mut stream) = TcpStream::connect(addr) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n");
        let mut reply = [0u8; 64];
        matches!(stream.read(&mut reply), Ok(n) if reply[..n].starts_with(b"HTTP/1.1 200 "))
    }

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
