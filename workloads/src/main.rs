//! `migbench-guest`: PID 1 of migbench's test VM.
//!
//! As PID 1 it mounts the pseudo file systems, loads the kernel modules the image
//! builder listed, finds the guest channel (a virtio-serial port named
//! `migbench.0`), says `READY` on it and then sends a heartbeat every few
//! milliseconds. The heartbeat's sequence number lives in guest memory, so after a
//! live migration the destination's channel must carry on where the source's
//! stopped: that is how the harness knows the guest really moved and kept running.
//!
//! Run as an ordinary program (not PID 1) it only answers `--version`; the
//! workloads add `run NAME` here so they can be tested on the host.

mod channel;
mod init;
mod work;

fn main() {
    if std::process::id() == 1 {
        init::run_as_pid1();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") | Some("-V") => println!("migbench-guest {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!(
                "migbench-guest {}: this program is the init of migbench's test VM.\n\
                 `migbench setup` builds it into the guest image; it runs there as PID 1.",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
}
