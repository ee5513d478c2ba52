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
}

impl Cell {
    /// The guest this cell boots (the accelerator is the run's).
    pub fn guest(&self, accel: Accel) -> GuestSpec {
        // A guest that serves HTTP gets a NIC on the test network.
        let net = matches!(self.workload, Workload::Http { .. }).then(GuestNet::default);
        let lock_memory = self.strategy.spec().zero_copy;
        GuestSpec { ram_mib: self.ram_mib, vcpus: self.vcpus, accel, workload: self.workload, net, inject: Default::default(), test_orders: false, lock_memory }
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
    /// The QEMUs count: a guest boots on the source's, with the pair's machine type.
    pub fn boot_key(&self) -> (u32, u32, String) {
        let mut kind = self.workload.to_string();
        if self.strategy.spec().zero_copy {
            kind.push_str(" mem-lock");
        }
        if let Some(z) = self.zero_page_detection {
            kind.push_str(&format!(" zero-page-detection={z}"));
        }
        if self.qemu.is_some() || self.qemu_dest.is_some() {
            let show = |q: &Option<QemuWanted>| q.as_ref().map(|w| w.to_string()).unwrap_or_else(|| "default".into());
            kind.push_str(&format!(" on QEMU {} → {}", show(&self.qemu), show(&self.qemu_dest)));
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
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
name = "t"
repetitions = 2
[defaults]
ram_mib = 128
workload = "memdirty-write:16"
[matrix]
strategy = ["precopy", "postcopy"]
link = ["100Mbit", "1Gbit", "unlimited"]
"#;

    #[test]
    fn matrix_expands_to_every_combination_in_declared_order() {
        let p = Profile::parse(EXAMPLE, "t.toml").unwrap();
        assert_eq!(p.cells.len(), 6);
        assert_eq!(p.repetitions, 2);
        assert!(p.cells.iter().all(|c| c.ram_mib == 128 && c.vcpus == 1));
        // strategy is declared before link, so it varies slowest.
        let order: Vec<String> = p.cells.iter().map(|c| format!("{}/{}", c.strategy, c.link)).collect();
        assert_eq!(order, ["precopy/100Mbit", "precopy/1Gbit", "precopy/unlimited", "postcopy/100Mbit", "postcopy/1Gbit", "postcopy/unlimited"]);
        assert_eq!(p.varied, ["strategy", "link"]);
        assert_eq!(p.cells[4].describe(&p.varied), "strategy=postcopy link=1Gbit");
        assert_eq!(p.cell_label(4), "strategy=postcopy link=1Gbit");
        let one = Profile::parse("name = \"o\"\n[defaults]\nram_mib = 128\n", "o.toml").unwrap();
        assert_eq!(one.cell_label(0), "cell 0", "a profile that varies nothing names its cell by index");
        assert_eq!(p.cells[0].scenario().link.bytes_per_sec, Some(12_500_000));
        assert_eq!(p.cells[0].guest(Accel::Tcg).workload.to_string(), "memdirty-write:16");
    }

    #[test]
    fn cell_keys_are_stable_and_distinct() {
        let p = Profile::parse(EXAMPLE, "t.toml").unwrap();
        let keys: std::collections::BTreeSet<_> = p.cells.iter().map(Cell::key).collect();
        assert_eq!(keys.len(), 6);
        assert_eq!(Profile::parse(EXAMPLE, "again").unwrap().cells[3].key(), p.cells[3].key());
        // Naming a default explicitly does not change a cell's identity.
        let explicit = Profile::parse(&EXAMPLE.replace("ram_mib = 128", "ram_mib = 128\nvcpus = 1"), "e").unwrap();
        assert_eq!(explicit.cells[3].key(), p.cells[3].key());
    }

    #[test]
    fn errors_name_file_line_and_allowed_values() {
        let e = Profile::parse("name = \"x\"\n[matrix]\nram = [1]\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("p.toml") && e.contains("line 3") && e.contains("ram") && e.contains("ram_mib"), "{e}");
        let e = Profile::parse("name = \"x\"\n[defaults]\nstrategy = \"teleport\"\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("postcopy") && e.contains("multifd"), "{e}");
        let e = Profile::parse("name = \"x\"\n[defaults]\nlink = \"fast\"\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("100Mbit"), "{e}");
        let e = Profile::parse("name = \"x\"\n[defaults]\nram_mib = \"big\"\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("expected u32"), "{e}");
        let e = Profile::parse("name = \"x\"\n[defaults]\nvcpus = 1\n[matrix]\nram_mib = [256, 0]\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("p.toml") && e.contains("line 5") && e.contains("ram_mib = 0"), "{e}");
        let e = Profile::parse("name = \"x\"\n[matrix]\nlink = [\"1Gbit\", \"1Gbit\"]\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("repeats a value"), "{e}");
        let e = Profile::parse("name = \"x\"\n[matrix]\nvcpus = []\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("empty list"), "{e}");
        let e = Profile::parse("name = \"x\"\nrepetitions = 0\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("repetitions = 0"), "{e}");
        let e = Profile::parse("description = \"no name\"\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("name"), "{e}");
        assert!(Profile::parse("name = \"x\"\n[defaults]\nworkload = \"dance\"\n", "p").unwrap_err().to_string().contains("memdirty-write"));
    }

    #[test]
    fn too_many_repetitions_are_refused_before_they_are_planned() {
        let e = Profile::parse("name = \"x\"\nrepetitions = 4000000000\n", "p.toml").unwrap_err().to_string();
        assert!(e.contains("is 4000000000 runs, more than 1000000"), "{e}");
    }

    #[test]
    fn a_huge_matrix_is_refused_before_it_is_built() {
        // Found by tests/fuzz_profile.rs: eight lists of 20 values are 2.56e10 cells, and
        // building them ran out of memory before any was checked.
        let list = |from: u32| format!("[{}]", (from..from + 20).map(|n| n.to_string()).collect::<Vec<_>>().join(", "));
        let keys = ["ram_mib", "vcpus", "downtime_limit_ms", "hybrid_passes", "cap_percent", "requests", "probe_hz", "request_timeout_ms"];
        let matrix: Vec<String> = keys.iter().map(|k| format!("{k} = {}", list(256))).collect();
        let e = Profile::parse(&format!("name = \"x\"\n[matrix]\n{}\n", matrix.join("\n")), "p.toml").unwrap_err().to_string();
        assert!(e.starts_with("profile p.toml: [matrix] makes 25600000000 cells (20 ram_mib × 20 vcpus × "), "{e}");
        assert!(e.contains("more than 10000"), "{e}");
        // An empty list is still named as such, wherever it is.
        let e = Profile::parse(&format!("name = \"x\"\n[matrix]\n{}\nprobe_hz = []\n", matrix[..6].join("\n")), "p.toml").unwrap_err().to_string();
        assert!(e.contains("probe_hz is an empty list"), "{e}");
    }

    #[test]
    fn shards_cover_every_cell_exactly_once() {
        let p = Profile::parse(EXAMPLE, "t.toml").unwrap();
        for n in 1..=8 {
            let mut seen = vec![0; p.cells.len()];
            for i in 0..n {
                for (idx, _) in p.shard(Shard { index: i, count: n }) {
                    seen[idx] += 1;
                }
            }
            assert!(seen.iter().all(|&k| k == 1), "{n} shards: {seen:?}");
        }
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
        for bad in ["4/4", "1/0", "x/2", "3", "-1/2"] {
            assert!(bad.parse::<Shard>().unwrap_err().contains("I/N"), "{bad}");
        }
    }

    #[test]
    fn listed_cells_lay_their_values_over_the_defaults() {
        let p = Profile::parse(
            "name = \"l\"\n[defaults]\nram_mib = 128\nlink = \"20Mbit\"\n[[cell]]\nfault = \"kill-source\"\n[[cell]]\nstrategy = \"postcopy\"\nlink = \"1Gbit\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(p.cells.len(), 2);
        assert_eq!(p.cells[0].ram_mib, 128);
        assert_eq!(p.cells[0].link.to_string(), "20Mbit");
        assert_eq!(p.cells[0].fault, Fault::KillSource { at_s: 1.0 });
        assert_eq!(p.cells[1].strategy, Strategy::Postcopy);
        assert_eq!(p.cells[1].link.to_string(), "1Gbit");
        assert_eq!(p.varied, ["strategy", "link", "fault"]);
    }

    #[test]
    fn a_record_older_than_a_variable_reads_it_as_its_default() {
        let c: Cell = serde_json::from_str(r#"{"ram_mib": 512, "workload": "idle"}"#).unwrap();
        assert_eq!(c.ram_mib, 512);
        assert_eq!(c.fault, Fault::None);
        assert_eq!(c.probe_hz, Cell::default().probe_hz);
        assert_eq!(c.key(), Cell { ram_mib: 512, ..Cell::default() }.key());
    }

    #[test]
    fn the_dirty_rate_mode_and_the_features_variables_parse() {
        let p = Profile::parse("name = \"d\"\ndirty_rate_s = 1\ndirty_rate_mode = \"dirty-bitmap\"\n[matrix]\navail_switchover_bandwidth = [\"100Mbit\", \"1Gbit\"]\n", "d").unwrap();
        assert_eq!(p.dirty_rate_mode, DirtyRateMode::DirtyBitmap);
        assert_eq!(p.cells[1].scenario().tuning.avail_switchover_bandwidth.unwrap().bytes_per_sec, Some(125_000_000));
        assert_eq!(p.cell_label(0), "avail_switchover_bandwidth=100Mbit");
        let e = Profile::parse("name = \"d\"\ndirty_rate_mode = \"dirty-ring\"\n", "d").unwrap_err().to_string();
        assert!(e.contains("dirty_rate_mode = dirty-ring without dirty_rate_s"), "{e}");
        let e = Profile::parse("name = \"d\"\ndirty_rate_s = 1\ndirty_rate_mode = \"ring\"\n", "d").unwrap_err().to_string();
        assert!(e.contains("page-sampling") && e.contains("dirty-ring"), "{e}");
        let e = Profile::parse("name = \"d\"\n[defaults]\nstrategy = \"mapped-ram\"\ntransport = \"tcp\"\n", "d").unwrap_err().to_string();
        assert!(e.contains("line 3: strategy = \"mapped-ram\" saves to a file"), "{e}");
        let e = Profile::parse("name = \"d\"\n[defaults]\navail_switchover_bandwidth = \"fast\"\n", "d").unwrap_err().to_string();
        assert!(e.contains("100Mbit"), "{e}");
        // Records written before these variables read them as their defaults.
        assert_eq!(Cell::default().scenario().tuning, Tuning::default());
    }

    #[test]
    fn shipped_profiles_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "toml") {
                // Cluster profiles (`balance --cluster`) have hosts instead of a matrix.
                if std::fs::read_to_string(e.path()).unwrap().contains("[[host]]") {
                    crate::rank::cluster::ClusterProfile::load(&e.path()).unwrap_or_else(|err| panic!("{err:#}"));
                } else {
                    Profile::load(&e.path()).unwrap_or_else(|err| panic!("{err:#}"));
                }
                n += 1;
            }
        }
        assert!(n >= 1, "no profiles shipped in {}", dir.display());
    }
}

/// Property-based: any cell, written as a profile's `[defaults]`, parses back to itself
/// exactly when it passes its checks (the rest of the fuzzing is in tests/fuzz_profile.rs).
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::migration::strategy::Strategy as Mig;
    use proptest::prelude::*;
    use proptest::sample::select;
    use proptest::strategy::Strategy;

    fn parsed<T: std::str::FromStr + std::fmt::Debug>(texts: &'static [&'static str]) -> impl Strategy<Value = T>
    where
        T::Err: std::fmt::Debug,
    {
        select(texts).prop_map(|t| t.parse().unwrap())
    }

    /// A number that TOML can hold (integers are i64 there).
    fn int() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..100, 0..=i64::MAX as u64]
    }

    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![any::<f64>(), select(&[0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, 604_800.0, 604_800.1][..])]
    }

    /// Mostly values in range (so that many cells pass), sometimes anything.
    fn mostly<T: std::fmt::Debug>(valid: impl Strategy<Value = T> + 'static, any: impl Strategy<Value = T> + 'static) -> BoxedStrategy<T> {
        prop_oneof![19 => valid, 1 => any].boxed()
    }

    fn cell() -> impl Strategy<Value = Cell> {
        let workloads = &["idle", "burn", "dhrystone", "livermore:short", "http", "http:64", "http:4096", "cpu-duty:50", "linpack:100", "memdirty-write:16", "memdirty-read:300:10"];
        let links = &["100Mbit", "1Gbit", "2.5Gbit", "50MiB/s", "unlimited", "8bit", "8Tbit"];
        let loads = &["open:0.1", "open:100", "open:100000", "closed:1", "closed:4:10", "closed:1024:60000"];
        let guest = (mostly(64u32..5000, any::<u32>()), mostly(1u32..=255, any::<u32>()), parsed::<Workload>(workloads));
        let migration = (
            select(&Mig::ALL[..]),
            parsed::<LinkSpeed>(links),
            select(&[Transport::Unix, Transport::Tcp][..]),
            mostly(0u64..=2_000_000, int()),
            mostly(0.1..604_800.0, float()),
        );
        let tuning = (
            int(),
            prop::option::of(mostly(0.0..604_800.0, float())),
            mostly(1u8..=99, any::<u8>()),
            mostly(1u8..=100, any::<u8>()),
            mostly((0u32..=20).prop_map(|b| 1u64 << b), int()),
            mostly(1u8..=255, any::<u8>()),
            select(&[Compression::None, Compression::Zlib, Compression::Zstd][..]),
            prop::option::of(select(&[ZeroPageDetection::None, ZeroPageDetection::Legacy, ZeroPageDetection::Multifd][..])),
            any::<bool>(),
        );
        let host = (prop::option::of(mostly(25u32..=100, 0u32..1000)), prop::option::of(0u32..8), prop::option::of(0u32..5000));
        let load = (
            prop::option::of(parsed::<Mode>(loads)),
            select(&[Connection::KeepAlive, Connection::PerRequest][..]),
            prop::option::of(int()),
            mostly(0u32..=100, any::<u32>()),
            mostly(1u64..=600_000, int()),
            mostly(0u32..=MAX_PROBE_HZ, any::<u32>()),
        );
        let fault = parsed::<Fault>(&["none", "kill-destination", "kill-source:2", "cut-link", "cut-link:3", "bad-qemu-option", "never-ready:5"]);
        let later = (prop::option::of(parsed::<LinkSpeed>(links)), mostly(1u64..=1000, int()));
        const QEMUS: &[&str] = &["7.2", "10", "10.0.2", "system", "/opt/qemu/bin/qemu-system-x86_64"];
        let qemu = (prop::option::of(parsed::<QemuWanted>(QEMUS)), prop::option::of(parsed::<QemuWanted>(QEMUS)));
        (guest, migration, tuning, host, load, fault, (later, qemu)).prop_map(|((ram_mib, vcpus, workload), m, t, h, l, fault, (later, q))| Cell {
            ram_mib,
            vcpus,
            workload,
            strategy: m.0,
            link: m.1,
            transport: m.2,
            downtime_limit_ms: m.3,
            timeout_s: m.4,
            hybrid_passes: t.0,
            hybrid_after_s: t.1,
            throttle_initial: t.2,
            throttle_increment: t.3,
            xbzrle_cache_mib: t.4,
            multifd_channels: t.5,
            multifd_compression: t.6,
            avail_switchover_bandwidth: later.0,
            vcpu_dirty_limit_mb_s: later.1,
            zero_page_detection: t.7,
            tls: t.8,
            cap_percent: h.0,
            host_cores: h.1,
            balloon_mib: h.2,
            load: l.0,
            connection: l.1,
            requests: l.2,
            dynamic_percent: l.3,
            request_timeout_ms: l.4,
            probe_hz: l.5,
            fault,
            qemu: q.0,
            qemu_dest: q.1,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, timeout: 5_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn a_cell_written_as_defaults_parses_back_when_it_checks(cell in cell()) {
            let mut doc = toml::Table::new();
            doc.insert("name".into(), "x".into());
            doc.insert("defaults".into(), toml::Table::try_from(&cell).unwrap().into());
            let text = toml::to_string(&doc).unwrap();
            match (Profile::parse(&text, "p.toml"), cell.check()) {
                (Ok(p), Ok(())) => {
                    prop_assert_eq!(&p.cells, &vec![cell.clone()]);
                    prop_assert_eq!(p.cells[0].key(), cell.key());
                }
                (Err(e), Err(why)) => {
                    let e = e.to_string();
                    prop_assert!(e.starts_with("profile p.toml: ") && e.contains(&why), "{} / {}", e, why);
                }
                (p, c) => prop_assert!(false, "{text}\nparsed: {:?}\nchecked: {c:?}", p.map(|p| p.cells)),
            }
        }
    }
}
