//! The load generator's HTTP/1.1 client: one TCP connection, GET requests written
//! into a buffer the connection keeps, responses read into another and framed by
//! their `Content-Length` (or the connection's close). No URL parsing, header map
//! or connection pool per request: what a request costs the harness is a write,
//! a read and a scan of the response head, as in `wrk`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest response the client reads: far above the guest's largest (a 4 KiB
/// value or the static page), below anything that would strain the harness.
const MAX_RESPONSE: usize = 64 << 20;

/// Why a request got no (complete) response: the keys of the error counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Refused,
    Reset,
    Aborted,
    Unreachable,
    /// The connection closed before the response was complete.
    Closed,
    /// The response could not be read as HTTP/1.x with a known length.
    Body,
    Io,
}

impl Failure {
    pub fn kind(self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::Reset => "reset",
            Failure::Aborted => "aborted",
            Failure::Unreachable => "unreachable",
            Failure::Closed => "closed",
            Failure::Body => "body",
            Failure::Io => "io",
        }
    }

    pub fn of(e: &io::Error) -> Failure {
        use io::ErrorKind::*;
        match e.kind() {
            ConnectionRefused => Failure::Refused,
            ConnectionReset => Failure::Reset,
            ConnectionAborted => Failure::Aborted,
            HostUnreachable | NetworkUnreachable => Failure::Unreachable,
            UnexpectedEof | BrokenPipe => Failure::Closed,
            _ => Failure::Io,
        }
    }
}

/// The largest response head read; a longer one is not HTTP from our server.
const MAX_HEAD: usize = 64 * 1024;

/// One keep-alive (or single-use) connection to the target.
pub struct Conn {
    stream: TcpStream,
    /// The request being written (reused: no allocation per request).
    out: Vec<u8>,
    /// Bytes read and not yet used.
    buf: Vec<u8>,
    /// Whether the server may take another request on this connection.
    pub reusable: bool,
    /// When its last response was read (the caller's clock reading: `used_at`).
    last_used: Instant,
}

/// A connection idle for less than this is taken as open without asking the kernel.
const FRESH: Duration = Duration::from_millis(100);

/// A response's status, once its whole body has arrived.
pub struct Answer {
    pub status: u16,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn, Failure> {
        let stream = TcpStream::connect(addr).await.map_err(|e| Failure::of(&e))?;
        stream.set_nodelay(true).map_err(|e| Failure::of(&e))?;
        Ok(Conn { stream, out: Vec::with_capacity(256), buf: Vec::with_capacity(4096), reusable: true, last_used: Instant::now() })
    }

    /// Sends `GET path` (with `Connection: close` when `close`) and reads the whole
    /// response.
    pub async fn get(&mut self, host: &str, path: &str, close: bool) -> Result<Answer, Failure> {
        self.out.clear();
        self.out.extend_from_slice(b"GET ");
        self.out.extend_from_slice(path.as_bytes());
        self.out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        self.out.extend_from_slice(host.as_bytes());
        self.out.extend_from_slice(if close { b"\r\nConnection: close\r\n\r\n" as &[u8] } else { b"\r\n\r\n" });
        self.reusable = false;
        self.stream.write_all(&self.out).await.map_err(|e| Failure::of(&e))?;
        // The answer cannot be here yet: forget the stale "readable" so the first
        // read waits for epoll's word instead of failing with EAGAIN (a syscall per
        // request saved). An answer already arrived still wakes it: the driver
        // re-marks the socket readable from epoll's edge when it next turns, which
        // on the generator's single-threaded runtimes is only after this task yields.
        if self.buf.is_empty() {
            let _ = self.stream.try_io(tokio::io::Interest::READABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
        }
        self.read_response().await
    }

    /// Notes when its last response was read: the generator reads the clock then
    /// anyway, and a clock reading less per request is worth having.
    pub fn used_at(&mut self, t: Instant) {
        self.last_used = t;
    }

    /// Whether a kept connection can carry another request at `now`: not closed by
    /// the server while it sat idle (nothing to read on it, not even the end).
    pub fn open(&self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last_used) < FRESH {
            return true;
        }
        let mut byte = 0u8;
        // SAFETY: a one-byte buffer we own, on the stream's own descriptor.
        let n = unsafe { libc::recv(self.stream.as_raw_fd(), (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }

    async fn fill(&mut self) -> Result<usize, Failure> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        self.stream.read_buf(&mut self.buf).await.map_err(|e| Failure::of(&e))
    }

    async fn read_response(&mut self) -> Result<Answer, Failure> {
        let (head_len, head) = loop {
            if let Some(found) = parse_head(&self.buf)? {
                break found;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Failure::Body);
            }
            if self.fill().await? == 0 {
                return Err(Failure::Closed);
            }
        };
        if head.chunked {
            // The guest's server never sends chunked responses.
            return Err(Failure::Body);
        }
        match head.length {
            Some(len) => {
                // A length no answer of the guest's can have (a garbled head, from a
                // guest whose memory broke) is a bad body, not a wait for ever.
                let total = head_len.checked_add(len).filter(|t| *t <= MAX_RESPONSE).ok_or(Failure::Body)?;
                while self.buf.len() < total {
                    if self.fill().await? == 0 {
                        return Err(Failure::Closed);
                    }
                }
                self.buf.drain(..total);
                self.reusable = !head.close;
            }
            None => {
                // No length: the body ends with the connection.
                while self.fill().await? != 0 {}
                self.buf.clear();
            }
        }
        Ok(Answer { status: head.status })
    }
}

/// What the response head says about the response.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    length: Option<usize>,
    chunked: bool,
    close: bool,
}

/// The most header lines a response head may have (the guest's server sends 3 or 4).
const MAX_HEADERS: usize = 64;

/// Reads a response head from the start of `buf` with `httparse` (hyper's parser):
/// Ok(None) while it is not all here, else where it ends (after its blank line)
/// and what it says; an error if the bytes are not an HTTP/1.x response head.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Failure::Body),
    };
    let status = r.code.ok_or(Failure::Body)?;
    let mut h = Head { status, length: None, chunked: false, close: r.version == Some(0) };
    for header in r.headers.iter() {
        let value = || std::str::from_utf8(header.value).map(str::trim).map_err(|_| Failure::Body);
        if header.name.eq_ignore_ascii_case("content-length") {
            h.length = Some(value()?.parse().map_err(|_| Failure::Body)?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            h.chunked = value()?.to_ascii_lowercase().contains("chunked");
        } else if header.name.eq_ignore_ascii_case("connection") {
            for option in value()?.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    h.close = true;
                } else if option.eq_ignore_ascii_case("keep-alive") {
                    h.close = false;
                }
            }
        }
    }
    // 1xx, 204 and 304 have no body.
    if (100..200).contains(&status) || status == 204 || status == 304 {
        h.length = Some(0);
    }
    Ok(Some((len, h)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_are_read() {
        let head = |b: &[u8]| parse_head(b).unwrap().unwrap().1;
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1043\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(h, Head { status: 200, length: Some(1043), chunked: false, close: false });
        let h = head(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\n");
        assert_eq!(h, Head { status: 503, length: Some(4), chunked: false, close: true });
        let h = head(b"HTTP/1.0 200 OK\r\n\r\n");
        assert_eq!(h, Head { status: 200, length: None, chunked: false, close: true });
        assert!(head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").chunked);
        assert_eq!(head(b"HTTP/1.1 304 Not Modified\r\n\r\n").length, Some(0));
        // A header the client does not read may be any bytes.
        assert_eq!(head(b"HTTP/1.1 200 OK\r\nServer: caf\xe9\r\nContent-Length: 2\r\n\r\n").length, Some(2));
        for bad in [&b"SSH-2.0-OpenSSH\r\n\r\n"[..], b"HTTP/1.1 abc OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n"] {
            assert_eq!(parse_head(bad), Err(Failure::Body), "{}", String::from_utf8_lossy(bad));
        }
        // Where the head ends, body or not; a head not yet complete is waited for.
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n\r\nbody").unwrap().unwrap().0, 19);
        for partial in [&b"HTTP/1.1 200 OK\r\n"[..], b"HTTP/1.1 200 OK\r\nContent-Len", b"HTT"] {
            assert_eq!(parse_head(partial), Ok(None));
        }
    }

    /// A server that answers each request with the next of `answers`, each written
    /// in pieces of `piece` bytes with a pause between them.
    async fn serve(answers: Vec<&'static [u8]>, piece: usize) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            for a in answers {
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut req).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&req[..n]),
                    }
                }
                for chunk in a.chunks(piece) {
                    s.write_all(chunk).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            // Keep the connection until the client is done with it.
            let _ = s.read(&mut req).await;
        });
        addr
    }

    #[tokio::test]
    async fn responses_split_over_reads_are_framed_and_the_connection_reused() {
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let addr = serve(vec![ok, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", ok], 3).await;
        let mut c = Conn::connect(addr).await.unwrap();
        for want in [200, 404, 200] {
            let a = c.get("t", "/", false).await.unwrap_or_else(|f| panic!("{}", f.kind()));
            assert_eq!(a.status, want);
            assert!(c.reusable);
        }
    }

    #[tokio::test]
    async fn an_impossible_length_and_a_body_cut_short_are_failures() {
        let huge: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nx";
        let mut c = Conn::connect(serve(vec![huge], 64).await).await.unwrap();
        assert_eq!(c.get("t", "/", false).await.err(), Some(Failure::Body));
        assert!(!c.reusable);
        let short: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let addr = serve(vec![short], 64).await;
        let mut c = Conn::connect(addr).await.unwrap();
        // The server keeps the connection until the client's next write, then
        // closes it: the body never completes.
        let got = tokio::time::timeout(Duration::from_millis(300), c.get("t", "/", false)).await;
        assert!(got.is_err() || got.unwrap().is_err());
    }

    #[test]
    fn io_errors_have_the_generators_kinds() {
        assert_eq!(Failure::of(&io::Error::from(io::ErrorKind::ConnectionRefused)).kind(), "refused");
        assert_eq!(Failure::of(&io::Error::from(io::ErrorKind::ConnectionReset)).kind(), "reset");
        assert_eq!(Failure::of(&io::Error::from(io::ErrorKind::UnexpectedEof)).kind(), "closed");
        assert_eq!(Failure::of(&io::Error::other("x")).kind(), "io");
    }
}
