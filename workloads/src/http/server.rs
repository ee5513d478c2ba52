//! The accept loop: a thread per connection, up to a limit past which clients
//! are refused. Its tests drive the whole server through a socket.

use super::connection::Connection;
use super::response::{Response, Status};
use super::store::Store;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Connections served at once; more are refused with 503, so a flood of clients
/// cannot exhaust the guest's memory with threads.
const MAX_CONNECTIONS: usize = 512;

/// A connection thread needs little stack (its buffers are on the heap); a
/// small one keeps 512 of them cheap in a small guest.
const CONNECTION_STACK: usize = 256 * 1024;

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
}
