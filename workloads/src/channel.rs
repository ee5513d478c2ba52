//! The guest end of the guest channel: the virtio-serial port named `migbench.0`.
//! The guest writes its messages to it and reads the harness's orders from it.

use crate::console::console;
use migbench_guest::protocol::{Message, PORT_NAME};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shared by the heartbeat and the order handler: a line is written whole under
/// the lock, so their messages never interleave.
pub struct Channel {
    port: Mutex<(File, u64)>,
    /// A second handle for reading orders (the port opens only once).
    orders: File,
}

impl Channel {
    /// Finds the port by its name in sysfs and opens its device node, waiting for
    /// the driver and devtmpfs to create them.
    pub fn open(wait: Duration) -> Result<Channel, String> {
        let deadline = Instant::now() + wait;
        loop {
            match find_port() {
                Some(dev) => match OpenOptions::new().read(true).write(true).open(&dev).and_then(|p| Ok((p.try_clone()?, p))) {
                    Ok((orders, port)) => return Ok(Channel { port: Mutex::new((port, 0)), orders }),
                    Err(e) if Instant::now() > deadline => return Err(format!("open {}: {e}", dev.display())),
                    Err(_) => {}
                },
                None if Instant::now() > deadline => {
                    return Err(format!("no virtio-serial port named {PORT_NAME} under /sys/class/virtio-ports"));
                }
                None => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one line. A failed write is reported on the console (at most a few
    /// times) and otherwise ignored: the beat goes on, and the harness sees the gap.
    pub fn send(&self, msg: &Message) {
        let line = format!("{msg}\n");
        let mut port = self.port.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = port.0.write_all(line.as_bytes()) {
            port.1 += 1;
            if port.1 <= 3 {
                console(&format!("migbench-guest: channel write failed: {e}"));
            }
        }
    }

    /// Calls `obey` with each line the harness sends, for ever. While no host is
    /// connected (between a migration's two QEMUs) a read returns at once with
    /// nothing: wait a little and read again.
    pub fn read_orders(&self, mut obey: impl FnMut(&str)) -> ! {
        let mut lines = Lines::default();
        loop {
            lines.next(&self.orders, &mut |line| {
                obey(line);
                false
            });
        }
    }

    /// Reads lines until `take` returns something for one, and returns that (the
    /// lines before it are dropped).
    pub fn wait_for<T>(&self, mut take: impl FnMut(&str) -> Option<T>) -> T {
        let mut lines = Lines::default();
        let mut found = None;
        while found.is_none() {
            lines.next(&self.orders, &mut |line| {
                found = take(line);
                found.is_some()
            });
        }
        found.expect("the loop ends only with a line taken")
    }
}

/// Bytes read from the port, cut into lines.
#[derive(Default)]
struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// One read, then each whole line to `each` until it returns true (done).
    fn next(&mut self, mut port: &File, each: &mut dyn FnMut(&str) -> bool) {
        let mut buf = [0u8; 512];
        match port.read(&mut buf) {
            Ok(n) if n > 0 => self.pending.extend_from_slice(&buf[..n]),
            _ => {
                // The host went away (a migration's switch): half an order from
                // it must not run into the next host's first one.
                self.pending.clear();
                std::thread::sleep(Duration::from_millis(50))
            }
        }
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            if each(String::from_utf8_lossy(&line).trim()) {
                return;
            }
        }
        // A line longer than any order is garbage: drop it rather than grow.
        if self.pending.len() > 4096 {
            self.pending.clear();
        }
    }
}

fn find_port() -> Option<PathBuf> {
    for entry in std::fs::read_dir("/sys/class/virtio-ports").ok()?.flatten() {
        let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim() == PORT_NAME {
            let dev = PathBuf::from("/dev").join(entry.file_name());
            if dev.exists() {
                return Some(dev);
            }
        }
    }
    None
}
