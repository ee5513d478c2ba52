//! Profiles: an experiment in a TOML file. `[defaults]` sets the variables every
//! cell shares, `[matrix]` lists the values to vary; the cells are every
//! combination of the matrix values, in the order the variables are declared here.
//!
//! ```toml
//! name = "link-speed"
//! description = "Total time vs RAM at three link speeds"
//! repetitions = 3
//! warmup_s = 1.0
//!
//! [defaults]
//! workload = "idle"
//!
//! [matrix]
//! ram_mib = [256, 512, 1024]
//! link = ["100Mbit", "1Gbit", "10Gbit"]
//! ```
//!
//! Unknown keys and values of the wrong type are errors with the file, line and
//! column (from the TOML parser); values out of range name the file, key and value.

use crate::load::spec::{Connection, LoadSpec, MAX_PROBE_HZ, Mode};
use crate::machine::hardware::{Accel, DirtyRateMode, GuestSpec, MAX_RAM_MIB, MAX_VCPUS, MIN_RAM_MIB};
use crate::network::address::GuestNet;
use crate::migration::scenario::{Compression, Fault, LinkSpeed, Scenario, Transport, Tuning, ZeroPageDetection};
use crate::migration::strategy::Strategy;
use crate::host::qemu_versions::QemuWanted;
use anyhow::{Context, Result, bail};
use migbench_guest::orders::Workload;
use crate::network::shape::LinkShape;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Declares the variables a cell has, once, and derives from that list the
/// `[defaults]` table (each optional), the `[matrix]` table (each a list), the
/// resolved `Cell`, and the expansion of a matrix into cells.
macro_rules! cell_variables {
    ($( $(#[$doc:meta])* $name:ident : $ty:ty = $default:expr ),* $(,)?) => {
        /// `[defaults]`: any variable, once.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Defaults { $( #[serde(default)] pub $name: Option<$ty>, )* }

        impl Matrix {
            fn is_empty(&self) -> bool {
                true $( && self.$name.is_none() )*
            }
        }

        impl Defaults {
            /// These values with `top`'s on top of them.
            fn overlaid(&self, top: &Defaults) -> Defaults {
                Defaults { $( $name: top.$name.clone().or_else(|| self.$name.clone()), )* }
            }
        }

        /// `[matrix]`: any variable, as a list of values.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Matrix { $( #[serde(default)] pub $name: Option<Vec<$ty>>, )* }

        /// One cell of the matrix: every variable with its value. A record written
        /// before a variable existed reads it as its default.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct Cell { $( $(#[$doc])* pub $name: $ty, )* }

        impl Cell {
            fn from_defaults(d: &Defaults) -> Cell {
                Cell { $( $name: d.$name.clone().unwrap_or_else(|| $default), )* }
            }
        }

        impl Default for Cell {
            fn default() -> Cell {
                Cell::from_defaults(&Defaults::default())
            }
        }

        /// The names a profile may use, for messages.
        pub const VARIABLES: &[&str] = &[$(stringify!($name)),*];

        fn expand(defaults: &Defaults, matrix: &Matrix) -> Result<Vec<Cell>, String> {
            // Counted before any cell is built: a few long lists multiply to more
            // cells than memory holds.
            let mut sizes = Vec::new();
            $(
                if let Some(values) = &matrix.$name {
                    if values.is_empty() {
                        return Err(format!("[matrix] {} is an empty list: give at least one value or remove it", stringify!($name)));
                    }
                    sizes.push((stringify!($name), values.len()));
                }
            )*
            let count = sizes.iter().fold(1u128, |n, (_, len)| n.saturating_mul(*len as u128));
            if count > MAX_CELLS as u128 {
                let lists: Vec<String> = sizes.iter().map(|(name, len)| format!("{len} {name}")).collect();
                return Err(format!("[matrix] makes {count} cells ({}), more than {MAX_CELLS}: split it into several profiles", lists.join(" × ")));
            }
            let mut cells = vec![Cell::from_defaults(defaults)];
            $(
                if let Some(values) = &matrix.$name {
                    cells = cells
                        .into_iter()
                        .flat_map(|c| values.iter().map(move |v| Cell { $name: v.clone(), ..c.clone() }))
                        .collect();
                }
            )*
            Ok(cells)
        }

        /// The variables whose values differ across the matrix (for labels).
        fn varied(matrix: &Matrix) -> Vec<&'static str> {
            let mut v = Vec::new();
            $( if matrix.$name.as_ref().is_some_and(|l| l.len() > 1) { v.push(stringify!($name)); } )*
            v
        }

        impl Cell {
            /// `name=value` for the named variables.
            pub fn describe(&self, names: &[&str]) -> String {
                let mut parts = Vec::new();
                $( if names.contains(&stringify!($name)) { parts.push(format!("{}={}", stringify!($name), show(&self.$name))); } )*
                parts.join(" ")
            }
        }
    };
}

/// The most cells a profile may have (the shipped ones have up to 144).
pub const MAX_CELLS: usize = 10_000;
/// The most runs (cells × repetitions) a profile may ask for: a sweep plans them all.
pub const MAX_RUNS: u64 = 1_000_000;

fn show<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).map(|v| show_value(&v)).unwrap_or_else(|_| "?".into())
}

/// A cell variable's value as labels write it: strings bare, null as "none".
pub fn show_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "none".into(),
        other => other.to_string(),
    }
}

/// The variables (keys of cells as JSON objects) whose values differ between `cells`.
pub fn varied_keys(cells: &[serde_json::Value]) -> Vec<String> {
    cells
        .first()
        .and_then(|c| c.as_object())
        .map(|o| o.keys().filter(|k| cells.iter().any(|c| c.get(k.as_str()) != o.get(k.as_str()))).cloned().collect())
        .unwrap_or_default()
}

cell_variables! {
    /// Guest RAM, MiB.
    ram_mib: u32 = 256,
    vcpus: u32 = 1,
    /// What the guest runs: idle, burn, memdirty-write:MIB, memdirty-read:MIB.
    workload: Workload = Workload::Idle,
    // The migration variables default to what `migbench migrate` uses (one source).
    strategy: Strategy = Scenario::default().strategy,
    link: LinkSpeed = Scenario::default().link,
    transport: Transport = Scenario::default().transport,
    downtime_limit_ms: u64 = Scenario::default().downtime_limit_ms,
    timeout_s: f64 = Scenario::default().timeout_s,
    hybrid_passes: u64 = Tuning::default().hybrid_passes,
    hybrid_after_s: Option<f64> = Tuning::default().hybrid_after_s,
    throttle_initial: u8 = Tuning::default().throttle_initial,
    throttle_increment: u8 = Tuning::default().throttle_increment,
    xbzrle_cache_mib: u64 = Tuning::default().xbzrle_cache_mib,
    multifd_channels: u8 = Tuning::default().multifd_channels,
    multifd_compression: Compression = Tuning::default().multifd_compression,
    /// QEMU's avail-switchover-bandwidth (QEMU 8.2+), a link speed; none = QEMU's estimate.
    avail_switchover_bandwidth: Option<LinkSpeed> = Tuning::default().avail_switchover_bandwidth,
    /// dirty-limit: MB/s each vCPU may dirty.
    vcpu_dirty_limit_mb_s: u64 = Tuning::default().vcpu_dirty_limit_mb_s,
    /// none, legacy or multifd (QEMU 9.0+); none here = not set, QEMU's own default.
    zero_page_detection: Option<ZeroPageDetection> = Tuning::default().zero_page_detection,
    /// Migrate over TLS with x509 credentials made for the run.
    tls: bool = false,
    /// CPU cap on each QEMU, % of one host CPU (25 … 100 × host cores); none = no cap.
    cap_percent: Option<u32> = None,
    /// Restrict each QEMU to host cores 0..N (a cpuset); none = all cores.
    host_cores: Option<u32> = None,
    /// Inflate the guest's virtio balloon by this many MiB before migrating; none = deflated.
    balloon_mib: Option<u32> = None,
    /// HTTP load on the guest through the whole run (needs workload = "http"):
    /// `open:RATE` (requests/s on a fixed schedule) or `closed:CLIENTS[:THINK_MS]`; none = no load.
    load: Option<Mode> = None,
    /// `keep-alive` (connections reused) or `per-request` (a new connection each time).
    connection: Connection = Connection::KeepAlive,
    /// Stop the load after this many requests (like `ab -n`); the `after` phase then
    /// lasts until they are all answered. None: the load runs as long as the run.
    requests: Option<u64> = None,
    /// Share of requests (%) to the key/value endpoint (reads and rewrites guest memory).
    dynamic_percent: u32 = 50,
    /// A request not answered within this many ms fails as a timeout.
    request_timeout_ms: u64 = 5000,
    /// The fine outage probe: UDP echoes per second to the guest (0 = off).
    probe_hz: u32 = 1000,
    /// A fault to inject: none, kill-destination[:S], kill-source[:S], cut-link[:S]
    /// (needs transport = "tcp"), bad-qemu-option, never-ready[:S].
    fault: Fault = Fault::None,
    /// The source's QEMU: a version ("7.2", "10.0"), "system" or a path; none = the
    /// command's (`--qemu`, else the default).
    qemu: Option<QemuWanted> = None,
    /// The destination's QEMU, as `qemu`; none = the source's. Two versions run the
    /// older one's versioned machine type on both sides.
    qemu_dest: Option<QemuWanted> = None,
    /// The link to a destination on another host (`--dest`), shaped with tc at both
    /// ends: `rate=100Mbit,rtt=20ms,jitter=2ms,loss=0.1%`, any part left out; none
    /// = as it is.
    link_shape: LinkShape = LinkShape::none(),
}

impl Cell {
    /// The guest this cell boots (the accelerator is the run's).
    pub fn guest(&self, accel: Accel) -> GuestSpec {
        // A guest that serves HTTP gets a NIC on the test network.
        let net = matches!(self.workload, Workload::Http { .. }).then(GuestNet::default);
        let lock_memory = self.strategy.spec().zero_copy;
        GuestSpec { ram_mib: self.ram_mib, vcpus: self.vcpus, accel, workload: self.workload, net, inject: Default::default(), test_orders: false, lock_memory, portable_nic: false, park: false }
    }

    /// The HTTP load this cell puts on its guest, if any.
    pub fn load_spec(&self) -> Option<LoadSpec> {
        Some(LoadSpec {
            mode: self.load?,
            connection: self.connection,
            dynamic_percent: self.dynamic_percent,
            timeout_ms: self.request_timeout_ms,
            requests: self.requests,
        })
    }

    /// Cells with the same boot key can share one booted guest: only runtime-settable
    /// variables (link, strategy, capabilities, parameters) differ between them.
    /// A guest booted with its memory locked (zero-copy send) is another kind, and
    /// one whose source was given a zero-page detection keeps it: neither is shared.
    /// The QEMU a guest runs on is not in it: the sweep adds the binary and machine
    /// type the guest runs on now (it changes when a guest moves to another version).
    pub fn boot_key(&self) -> (u32, u32, String) {
        let mut kind = self.workload.to_string();
        if self.strategy.spec().zero_copy {
            kind.push_str(" mem-lock");
        }
        if let Some(z) = self.zero_page_detection {
            kind.push_str(&format!(" zero-page-detection={z}"));
        }
        (self.ram_mib, self.vcpus, kind)
    }

    pub fn scenario(&self) -> Scenario {
        Scenario {
            strategy: self.strategy,
            transport: self.transport,
            link: self.link.clone(),
            downtime_limit_ms: self.downtime_limit_ms,
            timeout_s: self.timeout_s,
            tuning: Tuning {
                hybrid_passes: self.hybrid_passes,
                hybrid_after_s: self.hybrid_after_s,
                throttle_initial: self.throttle_initial,
                throttle_increment: self.throttle_increment,
                xbzrle_cache_mib: self.xbzrle_cache_mib,
                multifd_channels: self.multifd_channels,
                multifd_compression: self.multifd_compression,
                avail_switchover_bandwidth: self.avail_switchover_bandwidth.clone(),
                vcpu_dirty_limit_mb_s: self.vcpu_dirty_limit_mb_s,
                zero_page_detection: self.zero_page_detection,
            },
            tls: self.tls,
            tls_wrong_ca: false,
            fault: self.fault,
            link_shape: self.link_shape.clone(),
        }
    }

    /// A stable identity for results and `--resume`: the cell's own values, not its
    /// position. Only values that differ from the defaults count, so a variable
    /// added in a later version does not change the keys of existing results.
    pub fn key(&self) -> String {
        use sha2::{Digest, Sha256};
        let mine = serde_json::to_value(self).unwrap_or_default();
        let base = serde_json::to_value(Cell::from_defaults(&Defaults::default())).unwrap_or_default();
        let differing: serde_json::Map<String, serde_json::Value> = mine
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| base.get(k.as_str()) != Some(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let json = serde_json::Value::Object(differing).to_string();
        crate::host::hex(&Sha256::digest(json.as_bytes()))[..12].to_string()
    }

    fn check(&self) -> Result<(), String> {
        if !(MIN_RAM_MIB..=MAX_RAM_MIB).contains(&self.ram_mib) {
            return Err(format!("ram_mib = {}: guest RAM must be {MIN_RAM_MIB} to {MAX_RAM_MIB} MiB (e.g. 256)", self.ram_mib));
        }
        if !(1..=MAX_VCPUS).contains(&self.vcpus) {
            return Err(format!("vcpus = {}: a guest has 1 to {MAX_VCPUS} vCPUs", self.vcpus));
        }
        self.guest(Accel::Tcg).check()?;
        self.scenario().validate()?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        if let Some(cap) = self.cap_percent {
            crate::machine::hardware::check_cap(cap, cores)?;
        }
        if self.host_cores == Some(0) {
            return Err("host_cores = 0: give at least 1 core".into());
        }
        if let Some(load) = self.load {
            if !matches!(self.workload, Workload::Http { .. }) {
                return Err(format!("load = {load}: the guest must serve HTTP for a load: set workload = \"http\" (it is {})", self.workload));
            }
        }
        if let Some(spec) = self.load_spec() {
            spec.check()?;
        }
        if self.probe_hz > MAX_PROBE_HZ {
            return Err(format!("probe_hz = {}: give 0 (off) to {} probes per second", self.probe_hz, MAX_PROBE_HZ));
        }
        if let Some(b) = self.balloon_mib {
            if b >= self.ram_mib {
                return Err(format!("balloon_mib = {b}: must be less than ram_mib ({})", self.ram_mib));
            }
        }
        Ok(())
    }
}

/// A profile as written in its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "one")]
    repetitions: u32,
    /// Seconds a freshly booted guest runs before its first migration.
    #[serde(default)]
    warmup_s: f64,
    /// The `before` phase: a window of steady state measured before `migrate`.
    #[serde(default = "one_second")]
    before_s: f64,
    /// The `after` phase: a window measured once the guest runs on its new host.
    #[serde(default = "one_second")]
    after_s: f64,
    /// Seconds of QEMU's `calc-dirty-rate` before each migration (0 = not measured):
    /// the input of predicted rankings (`migbench rank`).
    #[serde(default)]
    dirty_rate_s: f64,
    /// How `calc-dirty-rate` counts: auto, page-sampling, dirty-bitmap or dirty-ring.
    #[serde(default)]
    dirty_rate_mode: DirtyRateMode,
    /// The published result this profile reproduces: its report section puts the
    /// paper's numbers beside ours.
    #[serde(default)]
    reproduces: Option<Reproduction>,
    /// The destinations on another host (`ssh://user@host[:port]`); `--dest` wins.
    #[serde(default)]
    dest: Option<crate::host::ssh::SshTarget>,
    /// That host's address for the migration stream; `--migrate-address` wins.
    #[serde(default)]
    migrate_address: Option<String>,
    /// That host's address for the guest's clients; `--client-address` wins.
    #[serde(default)]
    client_address: Option<String>,
    #[serde(default)]
    defaults: Defaults,
    /// `[[cell]]`: cells listed one by one, each `[defaults]` with its own values
    /// on top (instead of a `[matrix]`, for cells that differ in several ways).
    #[serde(default)]
    cell: Vec<Defaults>,
    #[serde(default)]
    matrix: Matrix,
}

/// Published results a profile can reproduce (see `../shared/REPRODUCE.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reproduction {
    /// Shreya et al., Tables 1–3 and Figures 3–8: CPU usage against the CPU cap.
    #[serde(rename = "shreya-tables1-3")]
    ShreyaTables1To3,
    /// Shreya et al., Table 4: host CPU usage with 1…N host cores.
    #[serde(rename = "shreya-table4")]
    ShreyaTable4,
    /// Shreya et al., Table 5: migration time and downtime per workload, and the decision.
    #[serde(rename = "shreya-table5")]
    ShreyaTable5,
    /// Ghalib et al.: per-request latency of a web server before, during and after migration.
    #[serde(rename = "ghalib-web")]
    GhalibWeb,
    /// Sahni & Varma: pre-copy, post-copy and hybrid on idle, read- and write-intensive guests.
    #[serde(rename = "sahni")]
    Sahni,
    /// The thesis chapter's Table 1.1: the pre-/post-copy cost model predicted vs measured.
    #[serde(rename = "thesis-table1-1")]
    ThesisTable1_1,
}

fn one() -> u32 {
    1
}

fn one_second() -> f64 {
    1.0
}

/// A profile's destination on another host: `dest`, with `migrate_address` and
/// `client_address` at its top level.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub target: crate::host::ssh::SshTarget,
    pub migrate_address: Option<String>,
    pub client_address: Option<String>,
}

/// A loaded, checked profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub repetitions: u32,
    pub warmup_s: f64,
    pub before_s: f64,
    pub after_s: f64,
    pub dirty_rate_s: f64,
    pub dirty_rate_mode: DirtyRateMode,
    pub reproduces: Option<Reproduction>,
    /// `dest`, `migrate_address` and `client_address`: where the destinations run, if not here.
    pub dest: Option<Destination>,
    pub cells: Vec<Cell>,
    /// The variables the matrix varies (used to label cells).
    pub varied: Vec<&'static str>,
    /// Where it came from, for messages.
    pub source: String,
}

impl Profile {
    pub fn load(path: &Path) -> Result<Profile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading profile {}", path.display()))?;
        Profile::parse(&text, &path.display().to_string())
    }

    /// A profile name (`smoke`) is looked up in `profiles/`; anything else is a path.
    pub fn resolve(name_or_path: &str) -> Result<Profile> {
        Profile::load(&locate(name_or_path)?)
    }

    pub fn parse(text: &str, source: &str) -> Result<Profile> {
        // The parser's message has the line, the column and (for an unknown key or
        // enum value) the names allowed there.
        if text.contains("[[host]]") {
            bail!("profile {source} describes a cluster ([[host]]): run it with `migbench balance --cluster {source}`");
        }
        let file: ProfileFile =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("profile {source}: {}", e.to_string().trim_end()))?;
        let bad = |what: String| anyhow::anyhow!("profile {source}: {what}");
        if file.name.trim().is_empty() {
            return Err(bad("name is empty: give the profile a name".into()));
        }
        if file.repetitions == 0 {
            return Err(bad("repetitions = 0: run each cell at least once".into()));
        }
        if file.dirty_rate_s != 0.0 && !(file.dirty_rate_s.is_finite() && (0.1..=60.0).contains(&file.dirty_rate_s)) {
            return Err(bad(format!("dirty_rate_s = {}: give 0.1 to 60 seconds, or 0 to skip the measurement", file.dirty_rate_s)));
        }
        if file.dirty_rate_mode != DirtyRateMode::Auto && file.dirty_rate_s == 0.0 {
            return Err(bad(format!("dirty_rate_mode = {} without dirty_rate_s: set dirty_rate_s (e.g. 1) to measure the dirty rate", file.dirty_rate_mode)));
        }
        for (key, v) in [("warmup_s", file.warmup_s), ("before_s", file.before_s), ("after_s", file.after_s)] {
            if !(v.is_finite() && (0.0..=crate::migration::scenario::MAX_SECONDS).contains(&v)) {
                return Err(bad(format!("{key} = {v}: give seconds, 0 to {}", crate::migration::scenario::MAX_SECONDS)));
            }
        }
        for (key, a) in [("migrate_address", &file.migrate_address), ("client_address", &file.client_address)] {
            let Some(a) = a else { continue };
            if file.dest.is_none() {
                return Err(bad(format!("{key} = {a:?} without dest: name the destination host (dest = \"ssh://user@host\")")));
            }
            crate::host::ssh::check_migrate_address(a).map_err(|e| bad(e.replace("--migrate-address", &format!("{key} ="))))?;
        }
        let listed = !file.cell.is_empty();
        if listed && !file.matrix.is_empty() {
            return Err(bad("[[cell]] and [matrix] together: list the cells one by one, or vary them with a matrix, not both".into()));
        }
        let cells = if listed {
            file.cell.iter().map(|c| Cell::from_defaults(&file.defaults.overlaid(c))).collect()
        } else {
            expand(&file.defaults, &file.matrix).map_err(bad)?
        };
        if cells.len() as u64 * file.repetitions as u64 > MAX_RUNS {
            return Err(bad(format!(
                "{} cells × repetitions = {} is {} runs, more than {MAX_RUNS}: lower repetitions or split the profile",
                cells.len(),
                file.repetitions,
                cells.len() as u64 * file.repetitions as u64
            )));
        }
        let mut keys = std::collections::HashSet::new();
        for c in &cells {
            c.check().map_err(|e| {
                let at = e.split([' ', '/']).next().and_then(|key| line_of(text, key)).map(|l| format!("line {l}: ")).unwrap_or_default();
                bad(format!("{at}{e}"))
            })?;
            if !keys.insert(c.key()) {
                let how = if listed { "two [[cell]] entries are the same" } else { "a [matrix] list repeats a value" };
                return Err(bad(format!("two cells are the same ({}): {how}", c.describe(VARIABLES))));
            }
        }
        Ok(Profile {
            name: file.name,
            description: file.description,
            repetitions: file.repetitions,
            warmup_s: file.warmup_s,
            before_s: file.before_s,
            after_s: file.after_s,
            dirty_rate_s: file.dirty_rate_s,
            dirty_rate_mode: file.dirty_rate_mode,
            dest: file.dest.map(|target| Destination { target, migrate_address: file.migrate_address, client_address: file.client_address }),
            reproduces: file.reproduces,
            varied: if listed {
                let values: Vec<serde_json::Value> = cells.iter().map(|c| serde_json::to_value(c).unwrap_or_default()).collect();
                let differ = varied_keys(&values);
                VARIABLES.iter().copied().filter(|v| differ.iter().any(|d| d == v)).collect()
            } else {
                varied(&file.matrix)
            },
            cells,
            source: source.into(),
        })
    }

    /// A profile rebuilt from the cells its runs recorded (for results whose profile
    /// file is not at hand): the cells in `cell_index` order, the varied variables
    /// those whose values differ. It reproduces nothing and describes nothing.
    pub fn from_runs(name: &str, runs: &[(usize, Cell, u32)], source: &str) -> Profile {
        let mut cells: Vec<(usize, Cell)> = Vec::new();
        for (i, c, _) in runs {
            if !cells.iter().any(|(_, k)| k.key() == c.key()) {
                cells.push((*i, c.clone()));
            }
        }
        cells.sort_by_key(|(i, _)| *i);
        let values: Vec<serde_json::Value> = cells.iter().map(|(_, c)| serde_json::to_value(c).unwrap_or_default()).collect();
        let differ = varied_keys(&values);
        let varied = VARIABLES.iter().copied().filter(|v| differ.iter().any(|d| d == v)).collect();
        Profile {
            name: name.to_string(),
            description: String::new(),
            repetitions: runs.iter().map(|r| r.2 + 1).max().unwrap_or(1),
            warmup_s: 0.0,
            before_s: 0.0,
            after_s: 0.0,
            dirty_rate_s: 0.0,
            dirty_rate_mode: DirtyRateMode::Auto,
            reproduces: None,
            dest: None,
            cells: cells.into_iter().map(|(_, c)| c).collect(),
            varied,
            source: source.to_string(),
        }
    }

    /// The cells shard `index` of `count` runs (cell i goes to shard i mod count),
    /// as (cell index, cell).
    pub fn shard(&self, shard: Shard) -> Vec<(usize, &Cell)> {
        self.cells.iter().enumerate().filter(|(i, _)| i % shard.count == shard.index).collect()
    }

    /// Cell `index`'s name in every table, plot and progress line: the values of the
    /// variables the profile varies, or "cell {index}" when it varies none (the values
    /// would then be empty, or the same for every cell).
    pub fn cell_label(&self, index: usize) -> String {
        match self.cells.get(index) {
            Some(c) if !self.varied.is_empty() => c.describe(&self.varied),
            _ => format!("cell {index}"),
        }
    }
}

/// Where a profile is: `name_or_path` itself if it exists, else `profiles/NAME.toml`
/// (in the working directory, then beside this crate).
pub fn locate(name_or_path: &str) -> Result<std::path::PathBuf> {
    let p = Path::new(name_or_path);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    let dirs = [Path::new("profiles").to_path_buf(), Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles")];
    dirs.iter()
        .map(|d| d.join(format!("{name_or_path}.toml")))
        .find(|c| c.exists())
        .ok_or_else(|| anyhow::anyhow!("profile {name_or_path:?} not found: give a path to a .toml file, or the name of one in profiles/ (e.g. smoke)"))
}

/// The line (1-based) where `key` is set, preferring `[matrix]` (the values that vary).
fn line_of(text: &str, key: &str) -> Option<usize> {
    let mut section = "";
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t;
            continue;
        }
        if t.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')) {
            if section == "[matrix]" {
                return Some(i + 1);
            }
            found = found.or(Some(i + 1));
        }
    }
    found
}

/// `--shard I/N`: this job runs every N-th cell starting at I (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("shard {s:?} is not I/N with 0 <= I < N (e.g. 0/4 for the first of four jobs)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
#[path = "profile_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "profile_fuzz.rs"]
mod fuzz;
