//! A link speed as users write it ("100Mbit", "50MiB/s", "unlimited") and the
//! bytes per second it means: QEMU's max-bandwidth, and a shaped link's rate.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// QEMU's default max-bandwidth is 128 MiB/s: we always set it. "Unlimited" is a
/// rate no link here reaches (1 TiB/s), below the SIZE_MAX bound QEMU checks.
pub const UNLIMITED_BYTES_PER_SEC: u64 = 1 << 40;

/// A link speed: what the user wrote and the bytes per second it means. It is
/// written (in records and profiles) as its text, e.g. "100Mbit".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct LinkSpeed {
    pub text: String,
    /// `None` for unlimited.
    pub bytes_per_sec: Option<u64>,
}

impl LinkSpeed {
    /// The value for QEMU's `max-bandwidth` (bytes/s).
    pub fn max_bandwidth(&self) -> u64 {
        self.bytes_per_sec.unwrap_or(UNLIMITED_BYTES_PER_SEC)
    }

    /// `max-bandwidth` in MiB/s, as reports show a link.
    pub fn mib_per_s(&self) -> f64 {
        self.max_bandwidth() as f64 / 1048576.0
    }
}

impl From<LinkSpeed> for String {
    fn from(l: LinkSpeed) -> String {
        l.text
    }
}

impl TryFrom<String> for LinkSpeed {
    type Error = String;
    fn try_from(s: String) -> Result<LinkSpeed, String> {
        s.parse()
    }
}

impl fmt::Display for LinkSpeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for LinkSpeed {
    type Err = String;

    /// `100Mbit`, `1Gbit`, `2.5Gbit`, `500kbit` (bits per second, decimal prefixes),
    /// `100MiB/s`, `1GB/s` (bytes per second), or `unlimited`.
    fn from_str(s: &str) -> Result<LinkSpeed, String> {
        let bad = || {
            format!("link speed {s:?} is not understood: write a rate such as 100Mbit, 1Gbit, 10Gbit, 50MiB/s, or unlimited")
        };
        let t = s.trim();
        if t.eq_ignore_ascii_case("unlimited") {
            return Ok(LinkSpeed { text: "unlimited".into(), bytes_per_sec: None });
        }
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let (num, unit) = t.split_at(split);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit = unit.trim();
        // "B" is bytes and "b" is bits (so "100Mb/s" is a 100 Mbit/s link, not 100 MB/s);
        // the prefix letter may be either case.
        let (prefix, base, binary) = if let Some(p) = unit.strip_suffix("iB/s") {
            (p, 1.0, true)
        } else if let Some(p) = unit.strip_suffix("B/s") {
            (p, 1.0, false)
        } else if let Some(p) = ["bit/s", "bit", "bps", "b/s"].iter().find_map(|sfx| unit.strip_suffix(sfx)) {
            (p, 1.0 / 8.0, false)
        } else {
            return Err(bad());
        };
        let scale = |k: f64| match prefix.to_ascii_lowercase().as_str() {
            "" if !binary => Some(1.0),
            "k" => Some(k),
            "m" => Some(k * k),
            "g" => Some(k * k * k),
            "t" => Some(k * k * k * k),
            _ => None,
        };
        let bytes_per_unit = base * scale(if binary { 1024.0 } else { 1000.0 }).ok_or_else(bad)?;
        let bytes = (value * bytes_per_unit).round();
        if !(1.0..=UNLIMITED_BYTES_PER_SEC as f64).contains(&bytes) {
            return Err(format!("link speed {s:?} is out of range: it must be at least 8bit and at most 8Tbit (or unlimited)"));
        }
        Ok(LinkSpeed { text: format!("{num}{unit}"), bytes_per_sec: Some(bytes as u64) })
    }
}
