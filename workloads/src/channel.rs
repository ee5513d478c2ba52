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
    /// A second handle for reading orders (the port opens only once), with the
    /// bytes read from it and not yet handed out: [`Channel::wait_for`] and then
    /// [`Channel::read_orders`] take lines from the same buffer, so a line that
    /// arrived in the same read as the one `wait_for` took is not lost.
    orders: Mutex<(File, Lines)>,
}

impl Channel {
    /// Finds the port by its name in sysfs and opens its device node, waiting for
    /// the driver and devtmpfs to create them.
    pub fn open(wait: Duration) -> Result<Channel, String> {
        let deadline = Instant::now() + wait;
        loop {
            match find_port() {
                Some(dev) => match OpenOptions::new().read(true).write(true).open(&dev).and_then(|p| Ok((p.try_clone()?, p))) {
                    Ok((orders, port)) => return Ok(Channel { port: Mutex::new((port, 0)), orders: Mutex::new((orders, Lines::default())) }),
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
        let mut orders = self.orders.lock().unwrap_or_else(|p| p.into_inner());
        let (port, lines) = &mut *orders;
        loop {
            lines.next(port, &mut |line| {
                obey(line);
                false
            });
        }
    }

    /// Reads lines until `take` returns something for one, and returns that (the
    /// lines before it are dropped, the ones after it kept for the next reader).
    pub fn wait_for<T>(&self, mut take: impl FnMut(&str) -> Option<T>) -> T {
        let mut orders = self.orders.lock().unwrap_or_else(|p| p.into_inner());
        let (port, lines) = &mut *orders;
        let mut found = None;
        while found.is_none() {
            lines.next(port, &mut |line| {
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
    /// Each whole line already read, then (unless `each` returned true: done) one
    /// read and each whole line of it, to `each` until it returns true.
    fn next(&mut self, mut port: &File, each: &mut dyn FnMut(&str) -> bool) {
        if self.hand_out(each) {
            return;
        }
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
        if self.hand_out(each) {
            return;
        }
        // A line longer than any order is garbage: drop it rather than grow.
        if self.pending.len() > 4096 {
            self.pending.clear();
        }
    }

    /// Each whole line in `pending` to `each`, until it returns true (then true).
    fn hand_out(&mut self, each: &mut dyn FnMut(&str) -> bool) -> bool {
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            if each(String::from_utf8_lossy(&line).trim()) {
                return true;
            }
        }
        false
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A channel whose orders come from a pipe holding `text`, its writing end
    /// closed: reads return what the host sent, then nothing, as a port does when
    /// no host is connected.
    fn channel_reading(text: &str) -> Channel {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into the array it is given.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors are new and owned by nothing else.
        let (orders, mut host) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        host.write_all(text.as_bytes()).unwrap();
        drop(host);
        let out = OpenOptions::new().write(true).open("/dev/null").unwrap();
        Channel { port: Mutex::new((out, 0)), orders: Mutex::new((orders, Lines::default())) }
    }

    /// The lines the order reader's next turn hands out (its read at the pipe's
    /// end returns nothing), and the bytes it keeps after it.
    fn next_turn(channel: &Channel) -> (Vec<String>, Vec<u8>) {
        let mut orders = channel.orders.lock().unwrap();
        let (port, lines) = &mut *orders;
        let mut seen = Vec::new();
        lines.next(port, &mut |l| {
            seen.push(l.to_string());
            false
        });
        (seen, lines.pending.clone())
    }

    #[test]
    fn lines_read_with_the_one_waited_for_go_to_the_next_reader() {
        // One read brings the line waited for and the two after it.
        let channel = channel_reading("noise\nORDERS a=1\nPING 7\nCAP 50\n");
        let got = channel.wait_for(|l| l.strip_prefix("ORDERS ").map(str::to_string));
        assert_eq!(got, "a=1", "the lines before it are dropped");
        // The kept lines come out before the read that finds the pipe at its end.
        assert_eq!(next_turn(&channel).0, ["PING 7", "CAP 50"]);
    }

    #[test]
    fn a_half_line_is_dropped_when_the_host_goes_away() {
        let channel = channel_reading("ORDERS a=1\nPING");
        channel.wait_for(|l| l.strip_prefix("ORDERS ").map(|_| ()));
        let (seen, kept) = next_turn(&channel);
        assert!(seen.is_empty() && kept.is_empty(), "{seen:?} {kept:?}");
    }
}
