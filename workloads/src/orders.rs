//! What the harness asks of a guest boot, from `migbench.*` words on the kernel
//! command line. The harness writes them ([`Orders::to_cmdline`]) and the guest
//! reads them ([`Orders::parse`]), so both sides share this one definition.

use std::fmt;
use std::str::FromStr;

/// What the guest runs besides its heartbeat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Workload {
    /// Nothing: only the heartbeat.
    Idle,
    /// Touches a working set of `mib` MiB, as fast as it can or at `rate_mib_s`
    /// MiB/s. `Write` stores changing, non-zero data into every page (so pages are
    /// neither zero nor equal to what was sent before); `Read` reads the whole set
    /// and writes one page in 64. Every page is stamped (`crate::stamp`), so the
    /// guest can verify the set after a migration.
    MemDirty { mib: u32, mode: DirtyMode, rate_mib_s: Option<u32> },
    /// Keeps one vCPU busy `percent` % of the time (in 10 ms periods): a guest with
    /// a known CPU use.
    CpuDuty { percent: u32 },
    /// Spins on one vCPU: a guest that uses all the CPU it is given.
    Burn,
    /// Linpack on an n×n matrix, over and over, each solve checked (MFLOPS).
    Linpack { n: u32 },
    /// Dhrystone 2.1, in batches, each batch's final state checked (DMIPS = rate ÷ 1757).
    Dhrystone,
    /// The 24 Livermore loops, at one span or cycling through short, medium and
    /// long (`None`), every kernel's checksum checked (MFLOPS; per-span means on LOG lines).
    Livermore { span: Option<crate::livermore::Span> },
    /// An HTTP server on port 80 (`crate::http`) with a key/value store of
    /// `store_mib` MiB behind it; each `/kv/N` request rewrites one 4 KiB value.
    Http { store_mib: u32 },
}

impl Workload {
    /// The http workload's store when the command line does not size it.
    pub const HTTP_DEFAULT_STORE_MIB: u32 = 16;

    /// Whether it owns stamped memory the guest verifies after a migration.
    pub fn stamps_memory(&self) -> bool {
        matches!(self, Workload::MemDirty { .. })
    }

    /// The unit its progress is counted in (what `RATE` lines carry).
    pub fn unit(&self) -> Option<&'static str> {
        match self {
            Workload::Idle => None,
            Workload::Burn => Some("iterations"),
            Workload::MemDirty { .. } => Some("MiB"),
            Workload::CpuDuty { .. } => Some("iterations"),
            Workload::Linpack { .. } => Some("flop"),
            Workload::Dhrystone => Some("dhrystones"),
            Workload::Livermore { .. } => Some("flop"),
            Workload::Http { .. } => Some("requests"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirtyMode {
    Write,
    Read,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::Idle => f.write_str("idle"),
            Workload::Burn => f.write_str("burn"),
            Workload::Linpack { n } => write!(f, "linpack:{n}"),
            Workload::Dhrystone => f.write_str("dhrystone"),
            Workload::Livermore { span: None } => f.write_str("livermore"),
            Workload::Livermore { span: Some(s) } => write!(f, "livermore:{}", s.name()),
            Workload::MemDirty { mib, mode, rate_mib_s } => {
                let kind = if *mode == DirtyMode::Write { "memdirty-write" } else { "memdirty-read" };
                match rate_mib_s {
                    Some(r) => write!(f, "{kind}:{mib}:{r}"),
                    None => write!(f, "{kind}:{mib}"),
                }
            }
            Workload::CpuDuty { percent } => write!(f, "cpu-duty:{percent}"),
            Workload::Http { store_mib: Workload::HTTP_DEFAULT_STORE_MIB } => f.write_str("http"),
            Workload::Http { store_mib } => write!(f, "http:{store_mib}"),
        }
    }
}

impl FromStr for Workload {
    type Err = String;
    /// `idle`, `burn`, `memdirty-write:MIB`, `memdirty-read:MIB`, `http[:MIB]`, … (as in the error message).
    fn from_str(s: &str) -> Result<Workload, String> {
        let bad = || {
            format!(
                "workload {s:?} is not one of idle, burn, dhrystone, livermore[:short|medium|long], cpu-duty:PERCENT, \
                 memdirty-write:MIB[:MIB_PER_S], memdirty-read:MIB[:MIB_PER_S], linpack:N, http[:STORE_MIB] (e.g. memdirty-write:64:100, linpack:100, cpu-duty:50)"
            )
        };
        match s {
            "idle" => return Ok(Workload::Idle),
            "burn" => return Ok(Workload::Burn),
            "dhrystone" => return Ok(Workload::Dhrystone),
            "livermore" => return Ok(Workload::Livermore { span: None }),
            "http" => return Ok(Workload::Http { store_mib: Workload::HTTP_DEFAULT_STORE_MIB }),
            _ => {}
        }
        let (kind, mib) = s.split_once(':').ok_or_else(bad)?;
        if kind == "livermore" {
            let span = crate::livermore::Span::ALL.into_iter().find(|sp| sp.name() == mib);
            return match span {
                Some(span) => Ok(Workload::Livermore { span: Some(span) }),
                None => Err(format!("workload {s:?}: the Livermore span is short, medium or long (or plain `livermore` for all three)")),
            };
        }
        if kind == "cpu-duty" {
            let percent: u32 = mib.parse().map_err(|_| bad())?;
            if !(1..=100).contains(&percent) {
                return Err(format!("workload {s:?}: the duty cycle is 1 to 100 (% of one vCPU)"));
            }
            return Ok(Workload::CpuDuty { percent });
        }
        if kind == "linpack" {
            let n: u32 = mib.parse().map_err(|_| bad())?;
            if !(2..=4000).contains(&n) {
                return Err(format!("workload {s:?}: the Linpack matrix order must be 2 to 4000 (100 is classic, 1000 the large option)"));
            }
            return Ok(Workload::Linpack { n });
        }
        if kind == "http" {
            let store_mib: u32 = mib.parse().map_err(|_| bad())?;
            if !(1..=4096).contains(&store_mib) {
                return Err(format!("workload {s:?}: the http store is 1 to 4096 MiB (16 when not given)"));
            }
            return Ok(Workload::Http { store_mib });
        }
        let mode = match kind {
            "memdirty-write" => DirtyMode::Write,
            "memdirty-read" => DirtyMode::Read,
            _ => return Err(bad()),
        };
        let (mib, rate) = match mib.split_once(':') {
            Some((m, r)) => (m, Some(r)),
            None => (mib, None),
        };
        let mib: u32 = mib.parse().map_err(|_| bad())?;
        if mib == 0 {
            return Err(format!("workload {s:?}: the working set must be at least 1 MiB"));
        }
        let rate_mib_s = match rate {
            None | Some("max") => None,
            Some(r) => match r.parse::<u32>() {
                Ok(v) if v > 0 => Some(v),
                _ => return Err(format!("workload {s:?}: the rate is MiB/s above 0, or max")),
            },
        };
        Ok(Workload::MemDirty { mib, mode, rate_mib_s })
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Workload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Workload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Workload, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Orders {
    pub heartbeat_ms: u64,
    pub workload: Workload,
    /// The NIC's address and prefix length (`migbench.ip=A.B.C.D/P`); none: no network.
    pub ip: Option<(std::net::Ipv4Addr, u8)>,
    /// The NIC's MAC address (`migbench.mac=52:54:00:12:34:56`), set before the NIC
    /// comes up when it differs from the one the device gave: a guest restored from
    /// a snapshot wakes with the snapshot's MAC, not its own.
    pub mac: Option<[u8; 6]>,
    /// Obey test-only orders (`migbench.test_orders=1`): a test that injects its own
    /// corruption asks for it; nothing else does, so in ordinary use a stray order
    /// cannot damage a guest.
    pub test_orders: bool,
    /// Wait for the orders on the guest channel instead (`migbench.park=1`): the
    /// guest comes up, says `PARKED` and waits for an `ORDERS …` line. The harness
    /// saves a parked guest once and restores it for each boot (`machine::snapshot`);
    /// the line it then sends holds the same words as a command line.
    pub park: bool,
}

impl Default for Orders {
    fn default() -> Self {
        Orders { heartbeat_ms: 10, workload: Workload::Idle, ip: None, mac: None, test_orders: false, park: false }
    }
}

/// The first word of the line that gives a parked guest its orders.
pub const ORDERS_LINE: &str = "ORDERS";

/// The first word of the `LOG` line in which a parked guest says the orders it
/// took (`LOG orders migbench.hb_ms=…`), for the harness to check.
pub const TAKEN_LOG: &str = "orders";

impl Orders {
    /// Reads the orders; a bad word is reported in `problems` and otherwise ignored,
    /// because a guest init must come up whatever its command line says.
    pub fn parse(cmdline: &str) -> (Orders, Vec<String>) {
        let mut o = Orders::default();
        let mut problems = Vec::new();
        for word in cmdline.split_whitespace() {
            if let Some(v) = word.strip_prefix("migbench.hb_ms=") {
                match v.parse::<u64>() {
                    Ok(ms) if ms > 0 => o.heartbeat_ms = ms,
                    _ => problems.push(format!("ignoring bad migbench.hb_ms={v}")),
                }
            } else if let Some(v) = word.strip_prefix("migbench.workload=") {
                match v.parse() {
                    Ok(w) => o.workload = w,
                    Err(e) => problems.push(format!("ignoring {e}")),
                }
            } else if let Some(v) = word.strip_prefix("migbench.test_orders=") {
                match v {
                    "1" => o.test_orders = true,
                    "0" => o.test_orders = false,
                    _ => problems.push(format!("ignoring bad migbench.test_orders={v} (want 0 or 1)")),
                }
            } else if let Some(v) = word.strip_prefix("migbench.park=") {
                match v {
                    "1" => o.park = true,
                    "0" => o.park = false,
                    _ => problems.push(format!("ignoring bad migbench.park={v} (want 0 or 1)")),
                }
            } else if let Some(v) = word.strip_prefix("migbench.ip=") {
                let parsed = v.split_once('/').and_then(|(a, p)| Some((a.parse().ok()?, p.parse::<u8>().ok().filter(|p| *p <= 32)?)));
                match parsed {
                    Some(ip) => o.ip = Some(ip),
                    None => problems.push(format!("ignoring bad migbench.ip={v} (want A.B.C.D/PREFIX)")),
                }
            } else if let Some(v) = word.strip_prefix("migbench.mac=") {
                match parse_mac(v) {
                    Some(mac) => o.mac = Some(mac),
                    None => problems.push(format!("ignoring bad migbench.mac={v} (want six hex bytes such as 52:54:00:12:34:56, unicast)")),
                }
            }
        }
        (o, problems)
    }

    pub fn to_cmdline(&self) -> String {
        let mut s = format!("migbench.hb_ms={} migbench.workload={}", self.heartbeat_ms, self.workload);
        if let Some((ip, prefix)) = self.ip {
            s += &format!(" migbench.ip={ip}/{prefix}");
        }
        if let Some(mac) = self.mac {
            s += &format!(" migbench.mac={}", format_mac(&mac));
        }
        if self.test_orders {
            s += " migbench.test_orders=1";
        }
        if self.park {
            s += " migbench.park=1";
        }
        s
    }

    /// The line that gives a parked guest these orders: `ORDERS` and the
    /// command line's words.
    pub fn to_line(&self) -> String {
        format!("{ORDERS_LINE} {}", self.to_cmdline())
    }

    /// The orders of an `ORDERS …` line (with the problems of its words, as
    /// [`Orders::parse`]); `None` for any other line. Orders given so never park.
    pub fn from_line(line: &str) -> Option<(Orders, Vec<String>)> {
        let words = line.trim().strip_prefix(ORDERS_LINE)?;
        if !words.is_empty() && !words.starts_with(' ') {
            return None;
        }
        let (mut o, problems) = Orders::parse(words);
        o.park = false;
        Some((o, problems))
    }
}

/// A MAC address written as six two-digit hex bytes joined by colons.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The MAC address `text` (six two-digit hex bytes joined by colons), if it is one
/// and unicast (a multicast address cannot be a NIC's own).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in mac.iter_mut() {
        let part = parts.next().filter(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))?;
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    (parts.next().is_none() && mac[0] & 1 == 0).then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_the_command_line() {
        for w in [
            Workload::Idle,
            Workload::Burn,
            Workload::MemDirty { mib: 64, mode: DirtyMode::Write, rate_mib_s: None },
            Workload::MemDirty { mib: 8, mode: DirtyMode::Read, rate_mib_s: Some(20) },
            Workload::CpuDuty { percent: 40 },
            Workload::Linpack { n: 100 },
            Workload::Dhrystone,
            Workload::Livermore { span: None },
            Workload::Livermore { span: Some(crate::livermore::Span::Medium) },
            Workload::Http { store_mib: Workload::HTTP_DEFAULT_STORE_MIB },
            Workload::Http { store_mib: 64 },
        ] {
            let o = Orders { heartbeat_ms: 20, workload: w, ip: None, mac: None, test_orders: w == Workload::Idle, park: w == Workload::Burn };
            let (back, problems) = Orders::parse(&format!("console=ttyS0 {} quiet", o.to_cmdline()));
            assert_eq!(back, o);
            assert!(problems.is_empty());
            // The same orders on the guest channel, for a parked guest (never parking again).
            let (sent, problems) = Orders::from_line(&o.to_line()).unwrap();
            assert_eq!(sent, Orders { park: false, ..o });
            assert!(problems.is_empty());
        }
    }

    #[test]
    fn bad_words_are_reported_not_fatal() {
        let (o, problems) = Orders::parse("migbench.hb_ms=0 migbench.workload=dance migbench.ip=1.2.3.4 migbench.ip=1.2.3.4/33 migbench.test_orders=yes migbench.park=2");
        assert_eq!(o, Orders::default());
        assert_eq!(problems.len(), 6);
        assert_eq!(Orders::from_line("VERIFY 3"), None);
        assert_eq!(Orders::from_line("ORDERSX migbench.hb_ms=5"), None);
        let (o, problems) = Orders::from_line("ORDERS migbench.hb_ms=5 migbench.workload=nope").unwrap();
        assert_eq!((o.heartbeat_ms, o.workload, problems.len()), (5, Workload::Idle, 1));
        let net = Orders { ip: Some(("198.18.0.2".parse().unwrap(), 15)), mac: Some([0x52, 0x54, 0, 0xab, 0, 2]), ..Orders::default() };
        assert!(net.to_cmdline().contains(" migbench.mac=52:54:00:ab:00:02"));
        assert_eq!(Orders::parse(&net.to_cmdline()).0, net);
        for bad in ["52:54:00:ab:00", "52:54:00:ab:00:02:03", "52:54:00:ab:0:2", "52-54-00-ab-00-02", "53:54:00:ab:00:02", "52:54:00:ab:00:zz", "52:54:00:ab:00:+2"] {
            let (o, problems) = Orders::parse(&format!("migbench.mac={bad}"));
            assert_eq!((o.mac, problems.len()), (None, 1), "{bad}");
            assert!(problems[0].contains("migbench.mac"), "{problems:?}");
        }
        assert!("memdirty-write:0".parse::<Workload>().unwrap_err().contains("at least 1 MiB"));
        assert!("memdirty-x:5".parse::<Workload>().unwrap_err().contains("memdirty-write:MIB"));
        assert!("linpack:1".parse::<Workload>().unwrap_err().contains("2 to 4000"));
        assert!("cpu-duty:0".parse::<Workload>().unwrap_err().contains("1 to 100"));
        assert!("memdirty-write:8:0".parse::<Workload>().unwrap_err().contains("MiB/s"));
        assert_eq!("memdirty-write:8:max".parse::<Workload>().unwrap().to_string(), "memdirty-write:8");
        assert!("linpack:x".parse::<Workload>().is_err());
        assert!("livermore:huge".parse::<Workload>().unwrap_err().contains("short, medium or long"));
        assert!("http:0".parse::<Workload>().unwrap_err().contains("1 to 4096 MiB"));
        assert!("http:4097".parse::<Workload>().unwrap_err().contains("1 to 4096 MiB"));
        assert!("http:x".parse::<Workload>().unwrap_err().contains("http[:STORE_MIB]"));
        assert_eq!("http".parse::<Workload>(), Ok(Workload::Http { store_mib: 16 }));
        assert_eq!("http:16".parse::<Workload>().unwrap().to_string(), "http");
        assert_eq!("http:4096".parse::<Workload>().unwrap().to_string(), "http:4096");
        assert_eq!(Workload::Http { store_mib: 1 }.unit(), Some("requests"));
    }
}
