//! `migbench agent` itself (the far end of a remote host), spoken to over its
//! stdio as SSH would carry it: it answers each request when it is done, so a
//! slow one does not hold up the others, and every reply carries its request's id.

use migbench::machine::agent::{AgentClient, Request};
use std::io::Write;
use std::time::{Duration, Instant};

fn agent() -> (AgentClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_migbench"));
    cmd.arg("agent");
    let a = AgentClient::start(cmd, &dir.path().join("agent.log"), "this host").unwrap();
    (a, dir)
}

#[test]
fn a_request_waiting_on_the_far_host_does_not_hold_up_the_others() {
    let (a, _dir) = agent();
    let a = std::sync::Arc::new(a);
    let port: u16 = a.ask(&Request::Sink { address: "127.0.0.1".into() }, Duration::from_secs(10)).unwrap();
    // The sink's result comes only once a sender has connected and closed.
    let waiting = {
        let a = a.clone();
        std::thread::spawn(move || a.call(&Request::SinkResult { port }, Duration::from_secs(30)))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiting.is_finished(), "the sink answered before anything was sent");
    // Meanwhile other requests are answered at once, in turn.
    for _ in 0..3 {
        let t0 = Instant::now();
        let ns: u128 = a.ask(&Request::Clock, Duration::from_secs(5)).unwrap_or_else(|e| panic!("a Clock behind a waiting SinkResult: {e:#}"));
        assert!(ns > 0 && t0.elapsed() < Duration::from_secs(5));
    }
    let e = a.call(&Request::Status { name: "nothing".into() }, Duration::from_secs(5)).unwrap_err().to_string();
    assert!(e.contains("no machine named nothing"), "{e}");
    assert!(!waiting.is_finished());
    // Now the sender: the waiting request gets its own answer.
    // (The sink starts its clock at the first read and counts what comes after.)
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&[7u8; 1000]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(&[7u8; 100_000]).unwrap();
    drop(s);
    let got = waiting.join().unwrap().unwrap();
    assert!(got["bytes"].as_u64().is_some_and(|b| b > 0 && b <= 100_000), "{got}");
}
