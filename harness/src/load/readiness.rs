//! Is the guest's HTTP server up? Asked with `reqwest`, an HTTP client that is not
//! ours: the load generator speaks HTTP/1.1 through migbench's own lean client
//! (`load::http1`, chosen for its rate), so a guest server whose answers only that
//! client could read would fail here, before any load is measured against it.

use crate::network::Network;
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What `/health` must answer.
const HEALTH_PATH: &str = "/health";
const HEALTH_BODY: &str = "ok";

/// Waits until the server at `target` answers `GET /health` with 200 and `ok`
/// (inside `network`'s namespace, or this process's own without one), asking every
/// 100 ms, each request bounded by a second. Returns how long it took; the error
/// after `timeout` quotes the last answer or failure.
pub fn wait_until_serving(network: Option<&Network>, target: SocketAddr, timeout: Duration) -> Result<Duration> {
    let job = move || -> Result<Duration> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the readiness check's runtime")?;
        rt.block_on(poll(target, timeout))
    };
    let joined = match network {
        Some(n) => n.spawn("migbench-ready", job)?.join(),
        None => std::thread::Builder::new().name("migbench-ready".into()).spawn(move || Ok(job())).context("starting the readiness check")?.join(),
    };
    match joined {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("the readiness check of {target} panicked"),
    }
}

async fn poll(target: SocketAddr, timeout: Duration) -> Result<Duration> {
    // No proxy from the environment: the guest is on this host's test network,
    // which a proxy cannot reach.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .pool_max_idle_per_host(0)
        .build()
        .context("building the readiness check's HTTP client")?;
    let url = format!("http://{target}{HEALTH_PATH}");
    let start = Instant::now();
    let mut last = String::from("no answer yet");
    while start.elapsed() < timeout {
        match ask(&client, &url).await {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the guest's HTTP server at {target} did not answer GET {HEALTH_PATH} within {} s (last: {last})", timeout.as_secs())
}

/// One `GET /health`; the error says what came back instead of 200 `ok`.
async fn ask(client: &reqwest::Client, url: &str) -> std::result::Result<(), String> {
    let response = client.get(url).send().await.map_err(|e| describe(&e))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| describe(&e))?;
    if status == reqwest::StatusCode::OK && body == HEALTH_BODY {
        Ok(())
    } else {
        Err(format!("status {status}, body {:?}", body.chars().take(80).collect::<String>()))
    }
}

/// reqwest's error with its causes, which name what failed (refused, reset, timed out).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// Serves `answer` to every connection, after reading its request head.
    fn serve(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut buf = [0u8; 1024];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn a_server_answering_ok_is_ready() {
        let addr = serve("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        assert!(wait_until_serving(None, addr, Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn a_wrong_answer_is_not_ready_and_the_error_quotes_it() {
        let addr = serve("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy");
        let e = wait_until_serving(None, addr, Duration::from_millis(400)).unwrap_err().to_string();
        assert!(e.contains("503") && e.contains("busy"), "{e}");
    }

    #[test]
    fn a_closed_port_is_not_ready_and_the_error_says_why() {
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let e = wait_until_serving(None, addr, Duration::from_millis(400)).unwrap_err().to_string();
        assert!(e.contains(&addr.to_string()) && e.to_lowercase().contains("refused"), "{e}");
    }
}
