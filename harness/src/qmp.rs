//! One QMP session: connect, negotiate, run commands with ids, and keep the event
//! stream, on tokio + serde_json.
//!
//! Tolerance is the point. The `qapi` crate's typed replies follow one QEMU schema
//! (9.1 for qapi 0.15); against Debian 12's QEMU 7.2 its `query-migrate-capabilities`
//! failed on the capability `compress`, `query-dirty-rate` on the missing
//! `calc-time-unit`, and an event it did not know (`MEM_UNPLUG_ERROR`) ended its
//! whole stream. So replies here are `serde_json::Value`s read through lenient
//! structs (unknown fields ignored, every field optional, enums as strings); every
//! event is kept, known or not; and what a QEMU offers is read from its own
//! `query-qmp-schema` ([`Features`]), not guessed from its version. The `qapi`
//! types are used only to serialise the *arguments* of commands whose arguments
//! mean the same on every QEMU we support (optional fields are omitted when unset).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Notify, oneshot};

/// How long a command may take before we give up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket {path}: {source}")]
    Connect { path: String, source: std::io::Error },
    #[error("QMP {label}: the connection closed (QEMU exited?)")]
    Closed { label: String },
    #[error("QMP {label}: `{command}` got no answer within {secs} s")]
    Timeout { label: String, command: String, secs: u64 },
    #[error("QMP {label}: `{command}` failed: {desc} ({class})")]
    Command { label: String, command: String, class: String, desc: String },
    #[error("QMP {label}: protocol error: {detail}")]
    Protocol { label: String, detail: String },
}

impl QmpError {
    /// The error class QEMU gave, for a failed command.
    pub fn class(&self) -> Option<&str> {
        match self {
            QmpError::Command { class, .. } => Some(class),
            _ => None,
        }
    }
}

/// One event with the harness's monotonic time of arrival.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: Value,
    pub at: Instant,
    /// QEMU's own wall-clock timestamp in seconds, if it sent one.
    pub qemu_time: Option<f64>,
}

type Reply = Result<Value, (String, String)>;

struct Shared {
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    events: Mutex<Vec<Event>>,
    events_changed: Notify,
    closed: std::sync::atomic::AtomicBool,
}

pub struct Qmp {
    label: String,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    /// The monitor offered out-of-band execution, and it was enabled.
    oob: bool,
    greeting: Value,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Qmp {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// When `MIGBENCH_QMP_TRACE` names a file, every QMP line sent and received is
/// appended to it (how the test fixtures of real replies were recorded).
fn trace(label: &str, dir: char, line: &str) {
    static FILE: std::sync::OnceLock<Option<Mutex<std::fs::File>>> = std::sync::OnceLock::new();
    let file = FILE.get_or_init(|| {
        let path = std::env::var_os("MIGBENCH_QMP_TRACE").filter(|p| !p.is_empty())?;
        std::fs::File::options().create(true).append(true).open(path).ok().map(Mutex::new)
    });
    if let Some(f) = file {
        let _ = writeln!(f.lock().unwrap(), "{label} {dir} {}", line.trim_end());
    }
}

impl Qmp {
    /// Connects to a QMP unix socket (retrying until `timeout` while QEMU starts),
    /// reads the greeting and leaves capabilities negotiation mode.
    pub async fn connect(path: &Path, label: &str, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(QmpError::Connect { path: path.display().to_string(), source: e });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        Self::handshake(stream, label, deadline).await
    }

    async fn handshake(stream: UnixStream, label: &str, deadline: Instant) -> Result<Qmp, QmpError> {
        // The greeting and the capabilities reply share the deadline (at least a
        // second, however late we connected): a QEMU silent after its greeting must
        // not cost COMMAND_TIMEOUT.
        let deadline = deadline.max(Instant::now() + Duration::from_secs(1));
        let (rd, wr) = stream.into_split();
        let mut lines = BufReader::new(rd).lines();
        let proto = |detail: String| QmpError::Protocol { label: label.into(), detail };
        let left = deadline.saturating_duration_since(Instant::now());
        let first = tokio::time::timeout(left, lines.next_line())
            .await
            .map_err(|_| proto("no greeting from QEMU".into()))?
            .map_err(|e| proto(format!("reading the greeting: {e}")))?
            .ok_or_else(|| QmpError::Closed { label: label.into() })?;
        trace(label, '<', &first);
        let greeting: Value = serde_json::from_str(&first).map_err(|e| proto(format!("greeting is not JSON ({e}): {first}")))?;
        if greeting.get("QMP").is_none() {
            return Err(proto(format!("expected a QMP greeting, got {first}")));
        }
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            events: Mutex::new(Vec::new()),
            events_changed: Notify::new(),
            closed: false.into(),
        });
        let reader = tokio::spawn(read_loop(lines, shared.clone(), label.to_string()));
        let qmp = Qmp {
            label: label.into(),
            writer: tokio::sync::Mutex::new(wr),
            shared,
            next_id: AtomicU64::new(1),
            oob: greeting.pointer("/QMP/capabilities").and_then(Value::as_array).is_some_and(|c| c.iter().any(|c| c == "oob")),
            greeting,
            reader,
        };
        // Out-of-band execution where the monitor offers it (see `execute_oob`).
        let enable = if qmp.oob { json!({"enable": ["oob"]}) } else { json!({}) };
        qmp.execute_json_timeout("qmp_capabilities", enable, deadline.saturating_duration_since(Instant::now())).await?;
        Ok(qmp)
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// QEMU's version as its greeting states it: (major, minor, micro).
    pub fn version(&self) -> Option<(u64, u64, u64)> {
        let v = self.greeting.pointer("/QMP/version/qemu")?;
        Some((v.get("major")?.as_u64()?, v.get("minor")?.as_u64()?, v.get("micro")?.as_u64()?))
    }

    /// Runs a command whose arguments the `qapi` crate serialises correctly.
    pub async fn execute<C: qapi::Command>(&self, cmd: &C) -> Result<Value, QmpError> {
        let args = serde_json::to_value(cmd).map_err(|e| QmpError::Protocol { label: self.label.clone(), detail: e.to_string() })?;
        self.execute_json(C::NAME, args).await
    }

    /// Runs any command with hand-built arguments.
    pub async fn execute_json(&self, name: &str, args: Value) -> Result<Value, QmpError> {
        self.execute_json_timeout(name, args, COMMAND_TIMEOUT).await
    }

    pub async fn execute_json_timeout(&self, name: &str, args: Value, timeout: Duration) -> Result<Value, QmpError> {
        self.send("execute", name, args, timeout).await
    }

    /// Whether this monitor runs commands out of band (see [`Qmp::execute_oob`]).
    pub fn offers_oob(&self) -> bool {
        self.oob
    }

    /// Runs a command out of band (`exec-oob`): QEMU's monitor thread runs it at once,
    /// even while the main thread is blocked, as a post-copy destination's is on a
    /// page still on the source. Only commands the schema marks `allow-oob`
    /// (`migrate-pause`, `migrate-recover`, `yank`).
    pub async fn execute_oob(&self, name: &str, args: Value) -> Result<Value, QmpError> {
        if !self.oob {
            return Err(QmpError::Protocol { label: self.label.clone(), detail: format!("this QEMU's monitor offers no out-of-band execution for {name}") });
        }
        self.send("exec-oob", name, args, COMMAND_TIMEOUT).await
    }

    async fn send(&self, verb: &str, name: &str, args: Value, timeout: Duration) -> Result<Value, QmpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ verb: name, "id": id });
        if args.as_object().is_some_and(|o| !o.is_empty()) {
            msg["arguments"] = args;
        }
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().unwrap().insert(id, tx);
        // Checked after registering: the reader clears `pending` when it sees EOF, so
        // either it drops our sender or we see `closed` here, never neither.
        if self.shared.closed.load(Ordering::SeqCst) {
            self.shared.pending.lock().unwrap().remove(&id);
            return Err(QmpError::Closed { label: self.label.clone() });
        }
        let line = format!("{msg}\n");
        trace(&self.label, '>', &line);
        let sent = async {
            let mut w = self.writer.lock().await;
            w.write_all(line.as_bytes()).await?;
            w.flush().await
        }
        .await;
        if sent.is_err() {
            self.shared.pending.lock().unwrap().remove(&id);
            return Err(QmpError::Closed { label: self.label.clone() });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err((class, desc)))) => {
                Err(QmpError::Command { label: self.label.clone(), command: name.into(), class, desc })
            }
            Ok(Err(_)) => Err(QmpError::Closed { label: self.label.clone() }),
            Err(_) => {
                self.shared.pending.lock().unwrap().remove(&id);
                Err(QmpError::Timeout { label: self.label.clone(), command: name.into(), secs: timeout.as_secs() })
            }
        }
    }

    /// All events received so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.events.lock().unwrap().clone()
    }

    /// The first event named `name` that arrived at or after `since`, waiting up to `timeout`.
    pub async fn wait_event(&self, name: &str, since: Instant, timeout: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.events_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let found = self.shared.events.lock().unwrap().iter().find(|e| e.name == name && e.at >= since).cloned();
            if found.is_some() {
                return found;
            }
            if self.shared.closed.load(Ordering::SeqCst) || tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.shared.events.lock().unwrap().iter().find(|e| e.name == name && e.at >= since).cloned();
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// What this QEMU offers, from `query-qmp-schema`.
    pub async fn features(&self) -> Result<Features, QmpError> {
        let schema = self.execute(&qapi::qmp::query_qmp_schema {}).await?;
        Ok(Features::from_schema(&schema))
    }

    /// `query-migrate`, read leniently.
    pub async fn query_migrate(&self) -> Result<MigrationInfo, QmpError> {
        let v = self.execute(&qapi::qmp::query_migrate {}).await?;
        Ok(MigrationInfo::from_value(&v))
    }

    /// `query-status`'s `status` ("running", "paused", "postmigrate", "inmigrate", …).
    pub async fn run_state(&self) -> Result<String, QmpError> {
        let v = self.execute(&qapi::qmp::query_status {}).await?;
        Ok(v.get("status").and_then(Value::as_str).unwrap_or("unknown").to_string())
    }
}

async fn read_loop(
    mut lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    shared: Arc<Shared>,
    label: String,
) {
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!("QMP {label}: skipping a line that is not UTF-8");
                continue;
            }
            Ok(None) | Err(_) => break,
        };
        let at = Instant::now();
        trace(&label, '<', &line);
        if line.trim().is_empty() {
            continue;
        }
        let msg: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("QMP {label}: ignoring a line that is not JSON ({e}): {line}");
                continue;
            }
        };
        dispatch(&shared, &label, msg, at);
    }
    shared.closed.store(true, Ordering::SeqCst);
    // Dropping the senders tells every waiting command the connection is gone.
    shared.pending.lock().unwrap().clear();
    shared.events_changed.notify_waiters();
}

fn dispatch(shared: &Shared, label: &str, msg: Value, at: Instant) {
    if let Some(name) = msg.get("event").and_then(Value::as_str) {
        let qemu_time = msg.get("timestamp").and_then(|t| {
            Some(t.get("seconds")?.as_f64()? + t.get("microseconds")?.as_f64()? / 1e6)
        });
        let data = msg.get("data").cloned().unwrap_or(Value::Null);
        shared.events.lock().unwrap().push(Event { name: name.to_string(), data, at, qemu_time });
        shared.events_changed.notify_waiters();
        return;
    }
    let Some(id) = msg.get("id").and_then(Value::as_u64) else {
        tracing::debug!("QMP {label}: ignoring a message without id or event: {msg}");
        return;
    };
    let Some(tx) = shared.pending.lock().unwrap().remove(&id) else {
        tracing::debug!("QMP {label}: reply to a command no longer waited for (id {id})");
        return;
    };
    let reply = if let Some(ret) = msg.get("return") {
        Ok(ret.clone())
    } else if let Some(err) = msg.get("error") {
        let s = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Err((s("class"), s("desc")))
    } else {
        Err(("ProtocolError".into(), format!("reply has neither return nor error: {msg}")))
    };
    let _ = tx.send(reply);
}

/// What a running QEMU offers for migration, read from its `query-qmp-schema`
/// (type names there are masked, so we walk from the commands to their types).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Features {
    pub commands: BTreeSet<String>,
    pub events: BTreeSet<String>,
    /// Values of MigrationCapability.
    pub capabilities: BTreeSet<String>,
    /// Members of migrate-set-parameters.
    pub parameters: BTreeSet<String>,
    /// `migrate` takes `channels` (QEMU 8.2+/9.x).
    pub migrate_channels: bool,
    /// `calc-dirty-rate` takes `calc-time-unit` (QEMU 8.1+).
    pub calc_time_unit: bool,
    /// Modes of `calc-dirty-rate` (page-sampling, dirty-bitmap, dirty-ring).
    pub dirty_rate_modes: BTreeSet<String>,
    /// Values of `multifd-compression` this build offers (none, zlib, zstd, …).
    pub multifd_compressions: BTreeSet<String>,
}

impl Features {
    pub fn from_schema(schema: &Value) -> Features {
        let entries: HashMap<&str, &Value> = schema
            .as_array()
            .map(|a| a.iter().filter_map(|e| Some((e.get("name")?.as_str()?, e))).collect())
            .unwrap_or_default();
        let meta = |e: &Value, m: &str| e.get("meta-type").and_then(Value::as_str) == Some(m);
        let names_of = |m: &str| -> BTreeSet<String> {
            entries.values().filter(|e| meta(e, m)).filter_map(|e| Some(e.get("name")?.as_str()?.to_string())).collect()
        };
        let members = |ty: &str| -> Vec<(String, String)> {
            entries
                .get(ty)
                .and_then(|e| e.get("members"))
                .and_then(Value::as_array)
                .map(|ms| {
                    ms.iter()
                        .filter_map(|m| {
                            Some((m.get("name")?.as_str()?.to_string(), m.get("type").and_then(Value::as_str).unwrap_or("").to_string()))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let enum_values = |ty: &str| -> BTreeSet<String> {
            let Some(e) = entries.get(ty) else { return BTreeSet::new() };
            if let Some(vs) = e.get("values").and_then(Value::as_array) {
                return vs.iter().filter_map(|v| v.as_str().map(String::from)).collect();
            }
            members(ty).into_iter().map(|(n, _)| n).collect()
        };
        let arg_type = |cmd: &str| -> String {
            entries.get(cmd).and_then(|e| e.get("arg-type")).and_then(Value::as_str).unwrap_or("").to_string()
        };
        let member_type = |ty: &str, name: &str| members(ty).into_iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let element_type = |ty: &str| -> Option<String> {
            Some(entries.get(ty)?.get("element-type")?.as_str()?.to_string())
        };
        let has_member = |cmd: &str, name: &str| members(&arg_type(cmd)).iter().any(|(n, _)| n == name);

        let capabilities = member_type(&arg_type("migrate-set-capabilities"), "capabilities")
            .and_then(|arr| element_type(&arr))
            .and_then(|obj| member_type(&obj, "capability"))
            .map(|en| enum_values(&en))
            .unwrap_or_default();
        let dirty_rate_modes = member_type(&arg_type("calc-dirty-rate"), "mode").map(|en| enum_values(&en)).unwrap_or_default();
        let multifd_compressions =
            member_type(&arg_type("migrate-set-parameters"), "multifd-compression").map(|en| enum_values(&en)).unwrap_or_default();

        Features {
            commands: names_of("command"),
            events: names_of("event"),
            capabilities,
            parameters: members(&arg_type("migrate-set-parameters")).into_iter().map(|(n, _)| n).collect(),
            migrate_channels: has_member("migrate", "channels"),
            calc_time_unit: has_member("calc-dirty-rate", "calc-time-unit"),
            dirty_rate_modes,
            multifd_compressions,
        }
    }

    pub fn has_capability(&self, cap: &str) -> bool {
        self.capabilities.contains(cap)
    }

    pub fn has_parameter(&self, p: &str) -> bool {
        self.parameters.contains(p)
    }
}

/// `query-migrate`'s reply, every field optional and unknown ones ignored.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationInfo {
    pub status: Option<String>,
    pub total_time: Option<u64>,
    pub downtime: Option<u64>,
    pub expected_downtime: Option<u64>,
    pub setup_time: Option<u64>,
    pub ram: Option<RamStats>,
    pub socket_address: Option<Vec<Value>>,
    pub error_desc: Option<String>,
    pub postcopy_blocktime: Option<u64>,
    /// Mean remote page-fault latency on the destination, ns (QEMU 10.1+).
    pub postcopy_latency: Option<u64>,
    pub cpu_throttle_percentage: Option<u64>,
    pub xbzrle_cache: Option<XbzrleCacheStats>,
    /// µs the dirty limit held the vCPUs in the last round (QEMU 8.1+, `dirty-limit` on).
    pub dirty_limit_throttle_time_per_round: Option<u64>,
    /// µs a vCPU's dirty ring sat full (QEMU 8.1+, `dirty-limit` on).
    pub dirty_limit_ring_full_time: Option<u64>,
}

/// `xbzrle-cache` of `query-migrate` (present while the `xbzrle` capability is on).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct XbzrleCacheStats {
    pub cache_size: Option<u64>,
    /// Bytes sent as XBZRLE deltas (and overflowed pages sent whole).
    pub bytes: Option<u64>,
    /// Pages sent as deltas: re-sent pages the cache held.
    pub pages: Option<u64>,
    pub cache_miss: Option<u64>,
    pub cache_miss_rate: Option<f64>,
    pub encoding_rate: Option<f64>,
    /// Pages whose delta was larger than the page: sent whole.
    pub overflow: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct RamStats {
    pub transferred: Option<u64>,
    pub remaining: Option<u64>,
    pub total: Option<u64>,
    pub duplicate: Option<u64>,
    pub normal: Option<u64>,
    pub normal_bytes: Option<u64>,
    pub dirty_pages_rate: Option<u64>,
    pub mbps: Option<f64>,
    pub dirty_sync_count: Option<u64>,
    pub postcopy_requests: Option<u64>,
    pub page_size: Option<u64>,
    pub precopy_bytes: Option<u64>,
    pub downtime_bytes: Option<u64>,
    pub postcopy_bytes: Option<u64>,
    pub multifd_bytes: Option<u64>,
    /// Syncs that waited for pages still being sent from guest memory (zero-copy send).
    pub dirty_sync_missed_zero_copy: Option<u64>,
}

impl MigrationInfo {
    /// Reads a reply leniently: a field of an unexpected type is dropped, not fatal.
    pub fn from_value(v: &Value) -> MigrationInfo {
        if let Ok(info) = serde_json::from_value::<MigrationInfo>(v.clone()) {
            return info;
        }
        // Some field had a surprising type: keep the ones that parse.
        let get = |k: &str| v.get(k).and_then(Value::as_u64);
        MigrationInfo {
            status: v.get("status").and_then(Value::as_str).map(String::from),
            total_time: get("total-time"),
            downtime: get("downtime"),
            expected_downtime: get("expected-downtime"),
            setup_time: get("setup-time"),
            ram: v.get("ram").and_then(|r| serde_json::from_value(r.clone()).ok()),
            socket_address: v.get("socket-address").and_then(Value::as_array).cloned(),
            error_desc: v.get("error-desc").and_then(Value::as_str).map(String::from),
            postcopy_blocktime: get("postcopy-blocktime"),
            postcopy_latency: get("postcopy-latency"),
            cpu_throttle_percentage: get("cpu-throttle-percentage"),
            xbzrle_cache: v.get("xbzrle-cache").and_then(|x| serde_json::from_value(x.clone()).ok()),
            dirty_limit_throttle_time_per_round: get("dirty-limit-throttle-time-per-round"),
            dirty_limit_ring_full_time: get("dirty-limit-ring-full-time"),
        }
    }

    pub fn status(&self) -> &str {
        self.status.as_deref().unwrap_or("none")
    }

    /// The TCP port of the first inet socket address (a destination listening on port 0).
    pub fn inet_port(&self) -> Option<u16> {
        self.socket_address.as_ref()?.iter().find_map(|a| {
            if a.get("type").and_then(Value::as_str) != Some("inet") {
                return None;
            }
            let p = a.get("port")?;
            p.as_str().and_then(|s| s.parse().ok()).or_else(|| p.as_u64().and_then(|n| u16::try_from(n).ok()))
        })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A scripted QMP server on a socketpair, for unit tests of the client.
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::UnixStream;

    pub async fn serve(stream: UnixStream, script: Vec<(&'static str, Vec<String>)>) {
        let (rd, mut wr) = stream.into_split();
        let mut lines = BufReader::new(rd).lines();
        wr.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n").await.unwrap();
        for (expect, replies) in script {
            let Ok(Some(line)) = lines.next_line().await else { return };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            // "exec-oob NAME": the command must come out of band.
            match expect.strip_prefix("exec-oob ") {
                Some(name) => assert_eq!(v["exec-oob"], name, "client sent {line}"),
                None => assert_eq!(v["execute"], expect, "client sent {line}"),
            }
            if expect == "qmp_capabilities" {
                // The greeting offers oob, so the client enables it.
                assert_eq!(v["arguments"]["enable"], serde_json::json!(["oob"]), "client sent {line}");
            }
            let id = v["id"].to_string();
            for r in replies {
                let r = r.replace("$ID", &id);
                if wr.write_all(r.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testing::serve;

    async fn client(script: Vec<(&'static str, Vec<String>)>) -> Qmp {
        let (a, b) = UnixStream::pair().unwrap();
        let mut full = vec![("qmp_capabilities", vec!["{\"return\": {}, \"id\": $ID}\r\n".to_string()])];
        full.extend(script);
        tokio::spawn(serve(b, full));
        Qmp::handshake(a, "test", Instant::now() + Duration::from_secs(5)).await.unwrap()
    }

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qmp-7.2").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[tokio::test]
    async fn replies_are_matched_by_id_and_unknown_events_kept() {
        let q = client(vec![(
            "query-status",
            vec![
                "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 5}, \"event\": \"MEM_UNPLUG_ERROR\", \"data\": {\"device\": \"x\"}}\r\n".into(),
                "not json at all\r\n".into(),
                "{\"return\": {\"status\": \"running\", \"running\": true, \"brand-new\": 1}, \"id\": $ID}\r\n".into(),
                "{\"event\": \"STOP\"}\r\n".into(),
            ],
        )])
        .await;
        assert_eq!(q.version(), Some((7, 2, 22)));
        assert_eq!(q.run_state().await.unwrap(), "running");
        let stop = q.wait_event("STOP", Instant::now() - Duration::from_secs(60), Duration::from_secs(5)).await.unwrap();
        assert_eq!(stop.name, "STOP");
        let names: Vec<_> = q.events().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["MEM_UNPLUG_ERROR", "STOP"]);
        assert_eq!(q.events()[0].qemu_time, Some(1.000005));
    }

    /// `migrate-pause` and `migrate-recover` must reach a destination whose main
    /// thread is blocked on a missing page: they go out of band, matched by id.
    #[tokio::test]
    async fn out_of_band_commands_are_sent_as_exec_oob() {
        let q = client(vec![
            ("exec-oob migrate-pause", vec!["{\"return\": {}, \"id\": $ID}\r\n".into()]),
            (
                "exec-oob migrate-recover",
                vec!["{\"id\": $ID, \"error\": {\"class\": \"GenericError\", \"desc\": \"Migrate recover can only be run when postcopy is paused.\"}}\r\n".into()],
            ),
        ])
        .await;
        assert_eq!(q.execute_oob("migrate-pause", Value::Null).await.unwrap(), json!({}));
        let e = q.execute_oob("migrate-recover", json!({"uri": "tcp:127.0.0.1:4000"})).await.unwrap_err().to_string();
        assert!(e.contains("migrate-recover") && e.contains("only be run when postcopy is paused"), "{e}");
    }

    #[tokio::test]
    async fn command_errors_carry_class_and_description() {
        let q = client(vec![(
            "migrate-set-capabilities",
            vec!["{\"id\": $ID, \"error\": {\"class\": \"GenericError\", \"desc\": \"Capability 'x' not found\"}}\r\n".into()],
        )])
        .await;
        let err = q.execute_json("migrate-set-capabilities", json!({"capabilities": []})).await.unwrap_err();
        assert_eq!(err.class(), Some("GenericError"));
        assert!(err.to_string().contains("Capability 'x' not found"));
    }

    #[tokio::test]
    async fn a_closed_connection_fails_waiting_commands() {
        let q = client(vec![("query-migrate", vec![])]).await;
        let err = q.query_migrate().await.unwrap_err();
        assert!(matches!(err, QmpError::Closed { .. }), "{err}");
        assert!(q.is_closed());
        assert!(matches!(q.run_state().await.unwrap_err(), QmpError::Closed { .. }));
    }

    #[tokio::test]
    async fn garbage_greeting_is_a_protocol_error() {
        let (a, b) = UnixStream::pair().unwrap();
        tokio::spawn(async move {
            let mut b = b;
            b.write_all(b"{\"hello\": 1}\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let err = Qmp::handshake(a, "t", Instant::now() + Duration::from_secs(2)).await.err().unwrap();
        assert!(err.to_string().contains("expected a QMP greeting"), "{err}");
    }

    #[tokio::test]
    async fn a_qemu_silent_after_its_greeting_fails_by_the_deadline() {
        // Found by tests/fuzz_qmp_socket.rs: qmp_capabilities waited COMMAND_TIMEOUT (60 s), not
        // the time given to connect.
        let (a, b) = UnixStream::pair().unwrap();
        tokio::spawn(async move {
            let mut b = b;
            b.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let t0 = Instant::now();
        let err = Qmp::handshake(a, "t", Instant::now() + Duration::from_secs(1)).await.err().unwrap();
        assert!(matches!(err, QmpError::Timeout { .. }), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    }

    #[test]
    fn query_migrate_fixtures_from_qemu_7_2() {
        let active = MigrationInfo::from_value(&serde_json::from_str(&fixture("query-migrate-active.json")).unwrap());
        assert_eq!(active.status(), "active");
        let ram = active.ram.as_ref().unwrap();
        assert!(ram.transferred.unwrap() > 0 && ram.remaining.is_some());
        let done = MigrationInfo::from_value(&serde_json::from_str(&fixture("query-migrate-completed.json")).unwrap());
        assert_eq!(done.status(), "completed");
        assert!(done.total_time.unwrap() > 0);
        assert!(done.downtime.is_some() && done.setup_time.is_some());
        assert!(done.ram.unwrap().dirty_sync_count.unwrap() >= 1);
    }

    #[tokio::test]
    async fn recorded_7_2_events_are_all_kept_in_order() {
        let recorded: Vec<Value> = fixture("events.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let src: Vec<String> = recorded
            .iter()
            .filter(|e| e["side"] == "src")
            .map(|e| {
                let mut e = e.clone();
                e.as_object_mut().unwrap().remove("side");
                format!("{e}\r\n")
            })
            .collect();
        let want: Vec<String> = recorded.iter().filter(|e| e["side"] == "src").map(|e| e["event"].as_str().unwrap().to_string()).collect();
        assert!(want.contains(&"STOP".to_string()) && want.contains(&"MIGRATION_PASS".to_string()));
        let mut replies = src;
        replies.push("{\"return\": {\"status\": \"postmigrate\", \"singlestep\": false, \"running\": false}, \"id\": $ID}\r\n".into());
        let q = client(vec![("query-status", replies)]).await;
        assert_eq!(q.run_state().await.unwrap(), "postmigrate");
        let got: Vec<String> = q.events().into_iter().map(|e| e.name).collect();
        assert_eq!(got, want);
        let stop = q.events().into_iter().find(|e| e.name == "STOP").unwrap();
        assert!(stop.qemu_time.unwrap() > 1.6e9);
    }

    #[test]
    fn query_status_fixture() {
        let v: Value = serde_json::from_str(&fixture("query-status.json")).unwrap();
        let states: Vec<&str> = v.as_array().unwrap().iter().map(|s| s["return"]["status"].as_str().unwrap()).collect();
        assert_eq!(states, ["running", "postmigrate"]);
    }

    #[test]
    fn query_migrate_is_lenient() {
        let v = json!({"status": "weird-new-state", "total-time": "not a number", "ram": {"transferred": 5, "mbps": 1.5, "new": []},
                       "socket-address": [{"type": "inet", "host": "127.0.0.1", "port": "4444"}]});
        let info = MigrationInfo::from_value(&v);
        assert_eq!(info.status(), "weird-new-state");
        assert_eq!(info.total_time, None);
        assert_eq!(info.ram.as_ref().unwrap().transferred, Some(5));
        assert_eq!(info.inet_port(), Some(4444));
        assert_eq!(MigrationInfo::from_value(&json!(null)).status(), "none");
    }

    #[test]
    fn features_from_the_7_2_schema() {
        let schema: Value = serde_json::from_str(&fixture("query-qmp-schema.json")).unwrap();
        let f = Features::from_schema(&schema);
        for cap in ["xbzrle", "auto-converge", "postcopy-ram", "events", "multifd", "compress", "postcopy-blocktime"] {
            assert!(f.has_capability(cap), "7.2 offers {cap}: {:?}", f.capabilities);
        }
        for p in ["max-bandwidth", "downtime-limit", "multifd-channels", "xbzrle-cache-size", "cpu-throttle-initial"] {
            assert!(f.has_parameter(p), "7.2 has parameter {p}");
        }
        assert!(!f.migrate_channels, "channels came after 7.2");
        assert!(!f.calc_time_unit, "calc-time-unit came after 7.2");
        assert!(f.dirty_rate_modes.contains("page-sampling"));
        assert!(f.multifd_compressions.contains("zstd") && f.multifd_compressions.contains("none"), "{:?}", f.multifd_compressions);
        assert!(f.events.contains("MIGRATION") && f.events.contains("RESUME"));
        assert!(f.commands.contains("migrate-incoming"));
    }

    #[test]
    fn features_from_a_newer_schema_shape() {
        // Newer QEMUs list enum members as objects and add arguments 7.2 lacks.
        let schema = json!([
            {"name": "migrate", "meta-type": "command", "arg-type": "1"},
            {"name": "1", "meta-type": "object", "members": [{"name": "uri", "type": "str"}, {"name": "channels", "type": "[2]"}]},
            {"name": "migrate-set-capabilities", "meta-type": "command", "arg-type": "3"},
            {"name": "3", "meta-type": "object", "members": [{"name": "capabilities", "type": "[4]"}]},
            {"name": "[4]", "meta-type": "array", "element-type": "4"},
            {"name": "4", "meta-type": "object", "members": [{"name": "capability", "type": "5"}, {"name": "state", "type": "bool"}]},
            {"name": "5", "meta-type": "enum", "members": [{"name": "events"}, {"name": "mapped-ram"}]},
            {"name": "calc-dirty-rate", "meta-type": "command", "arg-type": "6"},
            {"name": "6", "meta-type": "object", "members": [{"name": "calc-time", "type": "int"}, {"name": "calc-time-unit", "type": "7"}]}
        ]);
        let f = Features::from_schema(&schema);
        assert!(f.migrate_channels && f.calc_time_unit);
        assert_eq!(f.capabilities, BTreeSet::from(["events".to_string(), "mapped-ram".to_string()]));
        assert!(f.parameters.is_empty());
        assert_eq!(Features::from_schema(&json!("garbage")), Features::default());
    }

    #[test]
    fn qapi_arguments_serialize_without_unset_fields() {
        let m = qapi::qmp::migrate { uri: Some("unix:/x".into()), channels: None, detach: None, resume: None };
        assert_eq!(serde_json::to_value(&m).unwrap(), json!({"uri": "unix:/x"}));
        let p = qapi::qmp::migrate_set_parameters(qapi::qmp::MigrateSetParameters {
            max_bandwidth: Some(125_000_000),
            downtime_limit: Some(300),
            ..Default::default()
        });
        assert_eq!(serde_json::to_value(&p).unwrap(), json!({"max-bandwidth": 125_000_000, "downtime-limit": 300}));
    }
}
