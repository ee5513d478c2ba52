//! The guest end of the guest channel: the virtio-serial port named `migbench.0`.

use crate::init::console;
use migbench_guest::protocol::{Message, PORT_NAME};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Channel {
    port: File,
    failed_writes: u64,
}

impl Channel {
    /// Finds the port by its name in sysfs and opens its device node, waiting for
    /// the driver and devtmpfs to create them.
    pub fn open(wait: Duration) -> Result<Channel, String> {
        let deadline = Instant::now() + wait;
        loop {
            match find_port() {
                Some(dev) => match OpenOptions::new().write(true).open(&dev) {
                    Ok(port) => return Ok(Channel { port, failed_writes: 0 }),
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
    pub fn send(&mut self, msg: &Message) {
        let line = format!("{msg}\n");
        if let Err(e) = self.port.write_all(line.as_bytes()) {
            self.failed_writes += 1;
            if self.failed_writes <= 3 {
                console(&format!("migbench-guest: channel write failed: {e}"));
            }
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
