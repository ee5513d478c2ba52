//! A second "host" on this machine for trying `--dest` without another machine:
//! the tests' SSH test host (network, mount and PID namespaces on a veth pair in
//! 198.19.0.0/16, Debian's openssh-server with a per-run key). Prints the options
//! that reach it and runs until Ctrl-C; everything goes with it. Needs root.
//!
//!     cargo run --example test-host [-- --delay-line] [--second-link]
//!
//! With `--delay-line` the link is a pair of tap devices joined by a delay line in
//! this process (`network::delay_line`), which gives a link shape's rtt, jitter and
//! loss on a kernel without netem; migbench finds it by the near interface. With
//! `--second-link` a second veth pair joins the host on a /30 of its own, e.g. for
//! `--migrate-address` apart from the link SSH and the guest's clients use.

use migbench::network::test_host::{TestHost, TestLink};

fn main() -> anyhow::Result<()> {
    let (mut link, mut second) = (TestLink::Veth, false);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--delay-line" => link = TestLink::DelayLine,
            "--second-link" => second = true,
            other => anyhow::bail!("unknown argument {other:?}: the options are --delay-line and --second-link"),
        }
    }
    let mut host = TestHost::start_with(link)?;
    println!("test host up at {} (interfaces: {} here, {} there)", host.ip(), host.local_interface(), host.host_interface());
    if second {
        let a = host.add_veth_link()?;
        let (here, there) = a.interfaces();
        println!("  a second link: the host at {} (interfaces: {here} here, {there} there)", a.host());
    }
    if link == TestLink::DelayLine {
        let name = migbench::network::delay_line::socket_name(host.local_interface());
        println!("  its link is a delay line, controlled on the abstract socket @{name}");
    }
    println!(
        "  --dest {} --ssh-key {} --ssh-option UserKnownHostsFile={}",
        host.url(),
        host.key().display(),
        host.known_hosts().display()
    );
    println!("Ctrl-C ends it.");
    let (tx, rx) = std::sync::mpsc::channel();
    ctrlc_wait(tx);
    let _ = rx.recv();
    drop(host);
    Ok(())
}

/// Sends on `tx` at SIGINT or SIGTERM.
fn ctrlc_wait(tx: std::sync::mpsc::Sender<()>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    std::thread::spawn(move || {
        rt.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        let _ = tx.send(());
    });
}
