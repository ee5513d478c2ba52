//! One client's connection: requests read in turn (keep-alive and pipelining),
//! each routed and answered, and a close that does not lose the last answer.

use super::request::{head_end, parse_head, skip_blank_lines, Request};
use super::response::{Response, Status};
use super::routes::route;
use super::store::Store;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Limits on what a client may send: the request line and headers, and a body.
const MAX_HEAD: usize = 8 * 1024;
const MAX_BODY: u64 = 1024 * 1024;

/// A keep-alive connection with no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long, and how much, a closing connection keeps reading what the client
/// still sends, so the close is a FIN rather than a reset that could destroy
/// the response before the client reads it.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_STEP: Duration = Duration::from_millis(500);

/// The outcome of waiting for the next request on a connection.
enum Incoming {
    Request(Request),
    /// A request the server answers with this error, then closes.
    Reject(Status),
    /// The client closed (between requests, or part-way through one).
    Closed,
}

pub(super) struct Connection {
    stream: TcpStream,
    /// Bytes read but not used yet: the rest of a request, or pipelined ones.
    buf: Vec<u8>,
}

impl Connection {
    pub(super) fn new(stream: TcpStream) -> Connection {
        Connection { stream, buf: Vec::with_capacity(MAX_HEAD) }
    }

    /// Serves requests until the client or an answer closes the connection, or
    /// an I/O error (including the idle timeout) ends it.
    pub(super) fn run(mut self, store: &Store, served: &AtomicU64) {
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
