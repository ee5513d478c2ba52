//! A port of the test bridge for a guest on another host: a tap on the bridge here,
//! and a TCP listener on this host's address on the link that the far QEMU's NIC
//! (`-netdev stream`) connects to. Frames cross the link as QEMU's stream backend
//! sends them: each one after its length, 4 bytes big-endian. The client on the test
//! network then reaches the guest at its address wherever it runs, and QEMU's
//! self-announce after the switchover tells the bridge the guest is behind this port.

use super::Network;
use anyhow::{Context, Result};
use migbench_guest::netif;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The largest frame accepted from the far end (a jumbo frame and its header).
const MAX_FRAME: usize = 65_536 + 64;

/// One guest's port; dropping it ends the forwarding and removes the tap.
pub struct StreamPort {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    _tap: super::Tap,
}

impl Drop for StreamPort {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept if nobody connected.
        let _ = TcpStream::connect_timeout(&self.addr, std::time::Duration::from_millis(200));
    }
}

impl Network {
    /// Makes tap `name` on the bridge and listens for the far NIC on `bind` (this
    /// host's address on the link), port chosen by the kernel.
    pub fn stream_port(&self, name: &str, bind: IpAddr) -> Result<StreamPort> {
        let tap = self.add_tap(name)?;
        let frames = self.enter(|| netif::open_tap(name))?.with_context(|| format!("opening tap {name} for the far guest's frames"))?;
        let listener = TcpListener::bind((bind, 0)).with_context(|| format!("listening on {bind} for the far guest's NIC"))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::Builder::new().name(format!("migbench-port-{name}")).spawn(move || {
            // One connection: the far QEMU's. Another (the drop's wake-up) ends it.
            let Ok((conn, _)) = listener.accept() else { return };
            if stopping.load(Ordering::Relaxed) {
                return;
            }
            let _ = conn.set_nodelay(true);
            let (Ok(mut up), Ok(mut tap_in)) = (conn.try_clone(), frames.try_clone()) else { return };
            let mut tap_out = frames;
            let mut down = conn;
            let far_gone = Arc::new(AtomicBool::new(false));
            let gone = far_gone.clone();
            // Far NIC → bridge.
            let inbound = std::thread::spawn(move || {
                let mut len = [0u8; 4];
                let mut buf = vec![0u8; MAX_FRAME];
                while up.read_exact(&mut len).is_ok() {
                    let n = u32::from_be_bytes(len) as usize;
                    if n > MAX_FRAME || up.read_exact(&mut buf[..n]).is_err() {
                        break;
                    }
                    let _ = tap_out.write(&buf[..n]);
                }
                gone.store(true, Ordering::Relaxed);
            });
            // Bridge → far NIC.
            let mut buf = vec![0u8; MAX_FRAME];
            while !stopping.load(Ordering::Relaxed) && !far_gone.load(Ordering::Relaxed) {
                // A bounded wait, so a dropped port or a far end gone ends this thread.
                if !readable(&tap_in, 200) {
                    continue;
                }
                let Ok(n) = tap_in.read(&mut buf) else { break };
                let mut framed = Vec::with_capacity(n + 4);
                framed.extend_from_slice(&(n as u32).to_be_bytes());
                framed.extend_from_slice(&buf[..n]);
                if down.write_all(&framed).is_err() {
                    break;
                }
            }
            let _ = down.shutdown(std::net::Shutdown::Both);
            let _ = inbound.join();
        })?;
        Ok(StreamPort { addr, stop, _tap: tap })
    }
}

/// Whether `f` has something to read within `ms` milliseconds.
fn readable(f: &std::fs::File, ms: i32) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the call's duration.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}
