//! A second "host" on this machine for trying `--dest` without another machine:
//! the tests' SSH test host (network, mount and PID namespaces on a veth pair in
//! 198.19.0.0/16, Debian's openssh-server with a per-run key). Prints the options
//! that reach it and runs until Ctrl-C; everything goes with it. Needs root.
//!
//!     cargo run --example test-host

fn main() -> anyhow::Result<()> {
    let host = migbench::network::test_host::TestHost::start()?;
    println!("test host up at {} (interfaces: {} here, {} there)", host.ip(), host.local_interface(), host.host_interface());
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
