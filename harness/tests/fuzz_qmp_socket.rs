//! QMP over a socket: a fake QEMU that misbehaves never hangs the client.
//! How the cases run: `common/fuzz.rs`.

mod common;

use common::fuzz::{config, json_value};
use migbench::qmp::{MigrationInfo, Qmp, QmpError};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// What the fake QEMU sends where a reply is due. `$ID` is the command's id.
#[derive(Debug, Clone)]
enum Chunk {
    /// Anything, newlines included.
    Bytes(Vec<u8>),
    /// A reply cut short (it never has its closing brace).
    Truncated(Index),
    /// A reply to some other command, or with an id of the wrong type.
    WrongId(Value),
    /// A reply without an id.
    NoId,
    /// A line of JSON that is not a message (an array, a number, an object of anything).
    Json(Value),
    /// A line that is not UTF-8.
    NotUtf8(Vec<u8>),
    /// Many events at once.
    Events(usize),
    /// A 1 MiB line: an event with a huge payload, or 1 MiB of non-JSON.
    HugeEvent,
    HugeGarbage,
    /// A reply to the command: `return`, `error`, or neither.
    Return(Value),
    Error(Value),
    Neither,
}

fn chunk() -> impl Strategy<Value = Chunk> {
    let wrong_id = select(vec![json!(0), json!(1), json!(7), json!(u64::MAX), json!(-2), json!(2.5), json!("2"), json!(null), json!([2]), json!({"id": 2})]);
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Chunk::Bytes),
        2 => any::<Index>().prop_map(Chunk::Truncated),
        2 => wrong_id.prop_map(Chunk::WrongId),
        1 => Just(Chunk::NoId),
        // Objects with no id of their own (an id here would answer commands by luck).
        2 => json_value().prop_map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("id");
            }
            Chunk::Json(v)
        }),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|mut b| {
            b.insert(0, 0xff);
            b.retain(|&c| c != b'\n');
            b.push(b'\n');
            Chunk::NotUtf8(b)
        }),
        1 => (0usize..1500).prop_map(Chunk::Events),
        1 => Just(Chunk::HugeEvent),
        1 => Just(Chunk::HugeGarbage),
        1 => json_value().prop_map(Chunk::Return),
        1 => json_value().prop_map(Chunk::Error),
        1 => Just(Chunk::Neither),
    ]
}

fn render(chunks: &[Chunk], id: &Value) -> Vec<Vec<u8>> {
    let line = |v: Value| format!("{v}\r\n").into_bytes();
    chunks
        .iter()
        .map(|c| match c {
            Chunk::Bytes(b) | Chunk::NotUtf8(b) => b.clone(),
            Chunk::Truncated(at) => {
                let full = json!({"return": {"status": "active"}, "id": id}).to_string();
                full.as_bytes()[..at.index(full.len())].to_vec()
            }
            Chunk::WrongId(other) => line(json!({"return": {}, "id": other})),
            Chunk::NoId => line(json!({"return": {}})),
            Chunk::Json(v) => line(v.clone()),
            Chunk::Events(n) => (0..*n)
                .flat_map(|i| line(json!({"event": "FLOOD", "data": {"i": i}, "timestamp": {"seconds": i, "microseconds": 0}})))
                .collect(),
            Chunk::HugeEvent => line(json!({"event": "HUGE", "data": "x".repeat(1 << 20)})),
            Chunk::HugeGarbage => vec![b'x'; 1 << 20],
            Chunk::Return(v) => line(json!({"return": v, "id": id})),
            Chunk::Error(v) => line(json!({"error": {"class": v, "desc": "because"}, "id": id})),
            Chunk::Neither => line(json!({"id": id, "something": true})),
        })
        .collect()
}

/// The messages a QMP client should see in `stream`: lines split at `\n` (one `\r`
/// dropped), the last one too if the stream ended; lines that are not UTF-8 or not
/// JSON are skipped, as are blank ones.
fn messages(stream: &[u8], eof: bool) -> Vec<Value> {
    let mut parts: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let partial = parts.pop().unwrap_or_default();
    if eof && !partial.is_empty() {
        parts.push(partial);
    }
    parts
        .into_iter()
        .filter_map(|l| std::str::from_utf8(l.strip_suffix(b"\r").unwrap_or(l)).ok())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// What a command with `id` should get from `msgs`: the first reply with its id.
fn answer(msgs: &[Value], id: u64) -> Option<Result<Value, (String, String)>> {
    let m = msgs.iter().find(|m| m.get("event").and_then(Value::as_str).is_none() && m.get("id").and_then(Value::as_u64) == Some(id))?;
    Some(if let Some(r) = m.get("return") {
        Ok(r.clone())
    } else if let Some(e) = m.get("error") {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Err((s("class"), s("desc")))
    } else {
        Err(("ProtocolError".into(), String::new()))
    })
}

fn events(msgs: &[Value]) -> usize {
    msgs.iter().filter(|m| m.get("event").and_then(Value::as_str).is_some()).count()
}

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A socket in a fresh directory, and the listener on it.
fn listen() -> (tempfile::TempDir, std::path::PathBuf, tokio::net::UnixListener) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    (dir, path, listener)
}

async fn next_id(lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>>) -> Option<Value> {
    let line = lines.next_line().await.ok()??;
    Some(serde_json::from_str::<Value>(&line).ok()?["id"].clone())
}

/// Greets, answers `qmp_capabilities`, sends `chunks` where the next reply is due,
/// then closes, or (`close` false) ends the line and answers one more command properly.
async fn misbehave(listener: tokio::net::UnixListener, chunks: Vec<Chunk>, close: bool) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let Ok((stream, _)) = listener.accept().await else { return };
    let (rd, mut wr) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(rd).lines();
    let _ = wr.write_all(GREETING).await;
    let Some(id) = next_id(&mut lines).await else { return };
    let _ = wr.write_all(format!("{}\r\n", json!({"return": {}, "id": id})).as_bytes()).await;
    let Some(id) = next_id(&mut lines).await else { return };
    for bytes in render(&chunks, &id) {
        if wr.write_all(&bytes).await.is_err() {
            return;
        }
    }
    if close {
        return;
    }
    let _ = wr.write_all(b"\n").await;
    let Some(id) = next_id(&mut lines).await else { return };
    let _ = wr.write_all(format!("{}\r\n", json!({"return": {"second": true}, "id": id})).as_bytes()).await;
    while let Ok(Some(_)) = lines.next_line().await {}
}

fn check_misbehaving_qemu(chunks: Vec<Chunk>, close: bool) -> Result<(), TestCaseError> {
    // Ids: 1 is qmp_capabilities, 2 the command under test, 3 the one after it.
    let stream: Vec<u8> = render(&chunks, &json!(2)).concat();
    let mut msgs = messages(&stream, close);
    if !close {
        msgs = messages(&[stream, b"\n".to_vec()].concat(), false);
    }
    let want = answer(&msgs, 2);
    // Where no answer comes and the connection stays, the command must time out: keep it short.
    let timeout = if want.is_none() && !close { Duration::from_millis(150) } else { Duration::from_secs(5) };
    runtime().block_on(async {
        let (_dir, path, listener) = listen();
        tokio::spawn(misbehave(listener, chunks, close));
        let q = Qmp::connect(&path, "fuzz", Duration::from_secs(5)).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let t0 = Instant::now();
        let got = q.execute_json_timeout("query-migrate", json!({}), timeout).await;
        prop_assert!(t0.elapsed() <= timeout + Duration::from_secs(1), "took {:?}", t0.elapsed());
        match (&want, &got) {
            (Some(Ok(v)), Ok(r)) => prop_assert_eq!(v, r),
            (Some(Err((class, desc))), Err(e @ QmpError::Command { .. })) => {
                prop_assert_eq!(e.class(), Some(class.as_str()));
                prop_assert!(e.to_string().contains(desc.as_str()), "{e}");
            }
            (None, Err(QmpError::Closed { .. })) if close => {}
            (None, Err(QmpError::Timeout { .. })) if !close => {}
            _ => prop_assert!(false, "expected {want:?}, got {got:?}"),
        }
        if let Ok(v) = &got {
            let _ = MigrationInfo::from_value(v);
        }
        if close {
            // The connection is gone: the client says so (not a timeout).
            let next = q.execute_json_timeout("query-status", json!({}), Duration::from_secs(5)).await;
            prop_assert!(matches!(next, Err(QmpError::Closed { .. })), "{next:?}");
            prop_assert!(q.is_closed());
        } else {
            // Still usable: the next command gets its own reply.
            let next = q.execute_json_timeout("query-status", json!({}), Duration::from_secs(5)).await;
            prop_assert!(matches!(&next, Ok(v) if *v == json!({"second": true})), "{next:?}");
        }
        // Every event was kept, known or not.
        prop_assert_eq!(q.events().len(), events(&msgs));
        Ok(())
    })
}

/// Sends `greeting` at once; then, if `caps` is given and the client asks for
/// capabilities, sends it; then closes, or keeps the connection open and silent.
async fn greet(listener: tokio::net::UnixListener, greeting: Vec<Chunk>, caps: Option<Vec<Chunk>>, close: bool) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let Ok((stream, _)) = listener.accept().await else { return };
    let (rd, mut wr) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(rd).lines();
    for bytes in render(&greeting, &json!(1)) {
        if wr.write_all(&bytes).await.is_err() {
            return;
        }
    }
    if let Some(caps) = caps {
        let Some(id) = next_id(&mut lines).await else { return };
        for bytes in render(&caps, &id) {
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
    }
    if !close {
        while let Ok(Some(_)) = lines.next_line().await {}
    }
}

/// How `Qmp::connect` should end, from what the fake QEMU sends: `greeting` at once,
/// `caps` after a capabilities command, then the end of the stream if `close`.
fn handshake_outcome(greeting: &[u8], caps: Option<&[u8]>, close: bool) -> &'static str {
    // The server waits for a command after the greeting when it has a reply for it.
    let eof = close && caps.is_none();
    let (first, rest) = match greeting.iter().position(|&b| b == b'\n') {
        Some(n) => (&greeting[..n], &greeting[n + 1..]),
        None if eof && !greeting.is_empty() => (greeting, &[][..]),
        None if eof => return "closed",
        None => return "protocol",
    };
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let greeted = std::str::from_utf8(first).ok().and_then(|l| serde_json::from_str::<Value>(l).ok()).is_some_and(|v| v.get("QMP").is_some());
    if !greeted {
        return "protocol";
    }
    let rest = [rest, caps.unwrap_or_default()].concat();
    match answer(&messages(&rest, close), 1) {
        Some(Ok(_)) => "ok",
        Some(Err(_)) => "command",
        None if close => "closed",
        None => "timeout",
    }
}

fn check_handshake(greeting: Vec<Chunk>, caps: Option<Vec<Chunk>>, close: bool) -> Result<(), TestCaseError> {
    let want = handshake_outcome(&render(&greeting, &json!(1)).concat(), caps.as_ref().map(|c| render(c, &json!(1)).concat()).as_deref(), close);
    let no_caps = caps.is_none();
    let timeout = Duration::from_secs(1);
    runtime().block_on(async {
        let (_dir, path, listener) = listen();
        tokio::spawn(greet(listener, greeting, caps, close));
        let t0 = Instant::now();
        let got = Qmp::connect(&path, "fuzz", timeout).await;
        prop_assert!(t0.elapsed() <= timeout + Duration::from_secs(1), "connect took {:?}: {:?}", t0.elapsed(), got.as_ref().err());
        let outcome = match &got {
            Ok(_) => "ok",
            Err(QmpError::Closed { .. }) => "closed",
            Err(QmpError::Protocol { .. }) => "protocol",
            Err(QmpError::Timeout { .. }) => "timeout",
            Err(QmpError::Command { .. }) => "command",
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        // A reply sent before the command, by a server that then closed, may be read,
        // or the command may find the socket closed first: both are right.
        let early = close && no_caps && outcome == "closed" && matches!(want, "ok" | "command");
        prop_assert!(outcome == want || early, "expected {}, got {:?}", want, got.as_ref().err());
        if let Ok(q) = got {
            // Then it is a session like any other: a command gets an answer or an error.
            let t0 = Instant::now();
            let _ = q.execute_json_timeout("query-status", json!({}), Duration::from_millis(100)).await;
            prop_assert!(t0.elapsed() <= Duration::from_millis(1100), "took {:?}", t0.elapsed());
        }
        Ok(())
    })
}

/// A valid greeting first, most of the time: the capabilities step is reached.
fn greeting() -> impl Strategy<Value = Vec<Chunk>> {
    let valid = Chunk::Bytes(GREETING.to_vec());
    prop_oneof![
        3 => prop::collection::vec(chunk(), 0..3).prop_map(move |mut c| {
            c.insert(0, valid.clone());
            c
        }),
        1 => prop::collection::vec(chunk(), 0..3),
        1 => json_value().prop_map(|v| vec![Chunk::Json(v)]),
    ]
}

proptest! {
    #![proptest_config(config(48, 10_000))]

    #[test]
    fn a_misbehaving_qemu_never_hangs_the_client(chunks in prop::collection::vec(chunk(), 0..6), close in any::<bool>()) {
        check_misbehaving_qemu(chunks, close)?;
    }
}

proptest! {
    // Fewer cases: many wait out the second that connect gives a silent QEMU.
    #![proptest_config(config(24, 10_000))]

    #[test]
    fn a_bad_greeting_or_capabilities_reply_never_hangs_connect(
        greeting in greeting(),
        caps in prop::option::of(prop::collection::vec(chunk(), 0..4)),
        close in prop::bool::weighted(0.8),
    ) {
        check_handshake(greeting, caps, close)?;
    }
}
