//! An emulated link between two hosts: its rate, round-trip time, jitter and
//! packet loss, as profiles, the command line and records write it:
//! `rate=100Mbit,rtt=20ms,jitter=2ms,loss=0.5%` (every part optional, in any
//! order; `none` is a link left as it is). Nothing here talks to `tc`: see
//! `network::tc` for how a shape is put on an interface.
//!
//! A link has two ends and traffic leaves each through its egress, so the harness
//! shapes both ([`LinkShape::egress`]):
//! - **rate** limits each direction to the rate (a full-duplex link);
//! - **rtt** is split between the two egresses, half each (the odd microsecond to
//!   the far end), so a round trip crosses both and takes `rtt`;
//! - **jitter** bounds how far a round trip strays from `rtt`: each egress varies
//!   its delay uniformly by ± half of it, so a round trip lies within
//!   `rtt ± jitter` (it must not exceed `rtt`: a delay cannot go below zero);
//! - **loss** is the chance that a packet crossing the link is lost, in either
//!   direction: each egress drops that share of what it sends.
//!
//! Where only one end can be shaped, [`LinkShape::egress_alone`] puts the whole
//! round trip's delay and jitter on that one egress; rate and loss then hold in
//! that direction only.

use crate::migration::link_speed::LinkSpeed;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The longest round trip (and jitter) a shape may ask for.
pub const MAX_DELAY_US: u64 = 10_000_000;

/// A delay with microsecond resolution (what `tc` keeps), written `20ms`,
/// `0.5ms`, `500us`, `1s` or `0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Delay {
    pub us: u64,
}

impl Delay {
    pub const ZERO: Delay = Delay { us: 0 };

    pub fn from_us(us: u64) -> Delay {
        Delay { us }
    }

    pub fn ms(&self) -> f64 {
        self.us as f64 / 1000.0
    }

    pub fn is_zero(&self) -> bool {
        self.us == 0
    }
}

impl fmt::Display for Delay {
    /// Milliseconds, with as many decimals as the value has (`20ms`, `0.5ms`, `0.001ms`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.us == 0 {
            return f.write_str("0ms");
        }
        f.write_str(&decimal(self.us, 3))?;
        f.write_str("ms")
    }
}

impl FromStr for Delay {
    type Err = String;

    fn from_str(s: &str) -> Result<Delay, String> {
        let t = s.trim();
        let bad = || format!("delay {s:?} is not understood: write a time such as 20ms, 0.5ms, 500us or 1s");
        if t == "0" {
            return Ok(Delay::ZERO);
        }
        let (num, per_unit) = if let Some(n) = t.strip_suffix("us") {
            (n, 1u64)
        } else if let Some(n) = t.strip_suffix("ms") {
            (n, 1000)
        } else if let Some(n) = t.strip_suffix('s') {
            (n, 1_000_000)
        } else if t.chars().all(|c| c.is_ascii_digit() || c == '.') && !t.is_empty() {
            return Err(format!("delay {s:?} has no unit: write e.g. {t}ms or {t}us"));
        } else {
            return Err(bad());
        };
        let us = fixed_point(num.trim_end(), per_unit).ok_or_else(bad)?;
        let Some(us) = us else {
            return Err(format!("delay {s:?} is finer than a microsecond, which is as fine as tc goes: round it to whole microseconds"));
        };
        if us > MAX_DELAY_US {
            return Err(format!("delay {s:?} is more than {}: a link this slow is not a link to migrate over", Delay::from_us(MAX_DELAY_US)));
        }
        Ok(Delay { us })
    }
}

impl From<Delay> for String {
    fn from(d: Delay) -> String {
        d.to_string()
    }
}

impl TryFrom<String> for Delay {
    type Error = String;
    fn try_from(s: String) -> Result<Delay, String> {
        s.parse()
    }
}

/// A share of packets lost, in parts per million (0.0001 % steps), written `0.5%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Loss {
    pub ppm: u32,
}

impl Loss {
    pub const NONE: Loss = Loss { ppm: 0 };
    pub const ALL: Loss = Loss { ppm: 1_000_000 };

    pub fn percent(&self) -> f64 {
        self.ppm as f64 / 10_000.0
    }

    pub fn is_zero(&self) -> bool {
        self.ppm == 0
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&decimal(self.ppm as u64, 4))?;
        f.write_str("%")
    }
}

impl FromStr for Loss {
    type Err = String;

    fn from_str(s: &str) -> Result<Loss, String> {
        let t = s.trim();
        let bad = || format!("loss {s:?} is not understood: write a percentage of packets such as 0.5% or 2%");
        let Some(num) = t.strip_suffix('%') else {
            return Err(if t.parse::<f64>().is_ok() { format!("loss {s:?} needs a % sign: write e.g. {t}%") } else { bad() });
        };
        let ppm = fixed_point(num.trim_end(), 10_000).ok_or_else(bad)?;
        let Some(ppm) = ppm else {
            return Err(format!("loss {s:?} is finer than 0.0001%: round it to at most four decimals"));
        };
        if ppm > 1_000_000 {
            return Err(format!("loss {s:?} is more than 100%: write a share between 0% and 100%"));
        }
        Ok(Loss { ppm: ppm as u32 })
    }
}

impl From<Loss> for String {
    fn from(l: Loss) -> String {
        l.to_string()
    }
}

impl TryFrom<String> for Loss {
    type Error = String;
    fn try_from(s: String) -> Result<Loss, String> {
        s.parse()
    }
}

/// How a link between two hosts is shaped (see the module's text for what each
/// part means on which end). The default is `none`: the link as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct LinkShape {
    /// Each direction's rate; `None` leaves the rate alone.
    pub rate: Option<LinkSpeed>,
    pub rtt: Delay,
    pub jitter: Delay,
    pub loss: Loss,
}

/// One end of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The end on the host migbench runs on (the source's).
    Near,
    /// The other host's end.
    Far,
}

/// What one interface's egress does: the share of a [`LinkShape`] it carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Egress {
    pub rate: Option<LinkSpeed>,
    /// Added to every packet this egress sends.
    pub delay: Delay,
    /// The delay varies uniformly within ± this.
    pub jitter: Delay,
    pub loss: Loss,
    /// The whole link's round trip, for sizing queues (a bandwidth-delay product).
    pub rtt: Delay,
}

impl Egress {
    /// Whether this egress needs netem (a delay, jitter or loss), not just a rate.
    pub fn needs_netem(&self) -> bool {
        !(self.delay.is_zero() && self.jitter.is_zero() && self.loss.is_zero())
    }

    pub fn is_none(&self) -> bool {
        self.rate.is_none() && !self.needs_netem()
    }
}

impl fmt::Display for Egress {
    /// `rate=8Mbit,delay=20ms,jitter=1ms,loss=0.5%`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(r) = &self.rate {
            parts.push(format!("rate={r}"));
        }
        if !self.delay.is_zero() {
            parts.push(format!("delay={}", self.delay));
        }
        if !self.jitter.is_zero() {
            parts.push(format!("jitter={}", self.jitter));
        }
        if !self.loss.is_zero() {
            parts.push(format!("loss={}", self.loss));
        }
        f.write_str(&if parts.is_empty() { "none".into() } else { parts.join(",") })
    }
}

/// The parts a shape is written with, for messages.
const KEYS: &str = "rate, rtt, jitter, loss";

impl LinkShape {
    /// A link left as it is.
    pub fn none() -> LinkShape {
        LinkShape::default()
    }

    pub fn is_none(&self) -> bool {
        self == &LinkShape::none()
    }

    pub fn rtt_ms(&self) -> f64 {
        self.rtt.ms()
    }

    pub fn jitter_ms(&self) -> f64 {
        self.jitter.ms()
    }

    pub fn loss_percent(&self) -> f64 {
        self.loss.percent()
    }

    /// What `end`'s egress does when both ends are shaped: the rate, half the
    /// round trip and half the jitter (the far end takes the odd microsecond, so
    /// the two add up exactly), and the loss.
    pub fn egress(&self, end: End) -> Egress {
        let half = |d: Delay| match end {
            End::Near => Delay::from_us(d.us / 2),
            End::Far => Delay::from_us(d.us - d.us / 2),
        };
        Egress { rate: self.rate.clone(), delay: half(self.rtt), jitter: half(self.jitter), loss: self.loss, rtt: self.rtt }
    }

    /// What the one shaped egress does when the other end cannot be shaped: the
    /// whole round trip's delay and jitter; rate and loss in its direction only.
    pub fn egress_alone(&self) -> Egress {
        Egress { rate: self.rate.clone(), delay: self.rtt, jitter: self.jitter, loss: self.loss, rtt: self.rtt }
    }
}

impl fmt::Display for LinkShape {
    /// The canonical text, which parses back to the same shape: the parts that are
    /// set, in the order rate, rtt, jitter, loss; `none` when none is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(r) = &self.rate {
            parts.push(format!("rate={r}"));
        }
        if !self.rtt.is_zero() {
            parts.push(format!("rtt={}", self.rtt));
        }
        if !self.jitter.is_zero() {
            parts.push(format!("jitter={}", self.jitter));
        }
        if !self.loss.is_zero() {
            parts.push(format!("loss={}", self.loss));
        }
        f.write_str(&if parts.is_empty() { "none".into() } else { parts.join(",") })
    }
}

impl FromStr for LinkShape {
    type Err = String;

    /// `rate=100Mbit,rtt=20ms,jitter=2ms,loss=0.5%` (any of the parts, in any order)
    /// or `none`.
    fn from_str(s: &str) -> Result<LinkShape, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("none") {
            return Ok(LinkShape::none());
        }
        if t.is_empty() {
            return Err("link shape is empty: write none for a link left as it is, or parts such as rate=100Mbit,rtt=20ms,jitter=2ms,loss=0.5%".into());
        }
        let mut shape = LinkShape::none();
        let mut seen: Vec<String> = Vec::new();
        for part in t.split(',') {
            let part = part.trim();
            let Some((key, value)) = part.split_once('=') else {
                return Err(if part.is_empty() {
                    format!("link shape {s:?} has an empty part (two commas in a row, or one at an end): remove it")
                } else {
                    format!("link shape {s:?}: part {part:?} is not key=value: write e.g. rtt=20ms (the parts are {KEYS})")
                });
            };
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim();
            if seen.contains(&key) {
                return Err(format!("link shape {s:?} gives {key} twice: keep one"));
            }
            let in_shape = |e: String| format!("link shape {s:?}: {e}");
            match key.as_str() {
                "rate" => {
                    let speed: LinkSpeed = value.parse().map_err(in_shape)?;
                    shape.rate = speed.bytes_per_sec.map(|_| speed);
                }
                "rtt" => shape.rtt = value.parse().map_err(in_shape)?,
                "jitter" => shape.jitter = value.parse().map_err(in_shape)?,
                "loss" => shape.loss = value.parse().map_err(in_shape)?,
                "delay" | "latency" => {
                    return Err(format!(
                        "link shape {s:?}: {key} is not a part: write the round trip as rtt={value} (each end then delays by half of it)"
                    ));
                }
                _ => return Err(format!("link shape {s:?}: {key:?} is not a part of a link shape: the parts are {KEYS}")),
            }
            seen.push(key);
        }
        if shape.jitter > shape.rtt {
            return Err(format!(
                "link shape {s:?}: jitter {} is more than rtt {}: a round trip varies within rtt ± jitter and cannot take less than nothing, so give jitter at most rtt",
                shape.jitter, shape.rtt
            ));
        }
        Ok(shape)
    }
}

impl From<LinkShape> for String {
    fn from(l: LinkShape) -> String {
        l.to_string()
    }
}

impl TryFrom<String> for LinkShape {
    type Error = String;
    fn try_from(s: String) -> Result<LinkShape, String> {
        s.parse()
    }
}

/// `value / 10^decimals` written with only the decimals it needs: (1500, 3) → "1.5".
fn decimal(value: u64, decimals: u32) -> String {
    let scale = 10u64.pow(decimals);
    let (whole, frac) = (value / scale, value % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0width$}", width = decimals as usize);
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// A plain decimal (`12`, `0.5`, `.5`, `3.`) times `scale`: `None` if it is not
/// one, `Some(None)` if the product is not a whole number, else the product.
/// Exact (no floating point), so what a user writes is what they get.
fn fixed_point(text: &str, scale: u64) -> Option<Option<u64>> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty() || !whole.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = scale.checked_ilog10().filter(|d| 10u64.pow(*d) == scale)? as usize;
    let frac_trimmed = frac.trim_end_matches('0');
    if frac_trimmed.len() > digits {
        return Some(None);
    }
    // All digits, so the only way to fail is to overflow, which is out of any range
    // the callers accept: saturate and let them say so.
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().unwrap_or(u64::MAX) };
    let frac_value: u64 = if frac_trimmed.is_empty() { 0 } else { format!("{frac_trimmed:0<digits$}").parse().ok()? };
    Some(Some(whole.saturating_mul(scale).saturating_add(frac_value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shape(s: &str) -> LinkShape {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_part() {
        let s = shape("rate=100Mbit,rtt=20ms,jitter=2ms,loss=0.5%");
        assert_eq!(s.rate.as_ref().and_then(|r| r.bytes_per_sec), Some(12_500_000));
        assert_eq!((s.rtt.us, s.jitter.us, s.loss.ppm), (20_000, 2_000, 5_000));
        assert_eq!((s.rtt_ms(), s.jitter_ms(), s.loss_percent()), (20.0, 2.0, 0.5));
        assert_eq!(s.to_string(), "rate=100Mbit,rtt=20ms,jitter=2ms,loss=0.5%");
    }

    #[test]
    fn every_part_is_optional_and_order_is_free() {
        assert_eq!(shape("rtt=40ms").to_string(), "rtt=40ms");
        assert_eq!(shape(" loss = 100% , rate=8Mbit ").to_string(), "rate=8Mbit,loss=100%");
        assert_eq!(shape("RTT=500us").rtt, Delay::from_us(500));
        assert_eq!(shape("none"), LinkShape::none());
        assert_eq!(shape("None").to_string(), "none");
        // An unlimited rate is no rate: the same as leaving it out.
        assert_eq!(shape("rate=unlimited"), LinkShape::none());
        assert_eq!(shape("rtt=0,loss=0%"), LinkShape::none());
    }

    #[test]
    fn delays_and_losses_keep_what_was_written() {
        for (text, us) in [("1s", 1_000_000), ("1.5ms", 1_500), ("0.001ms", 1), (".5ms", 500), ("250us", 250), ("0", 0), ("0ms", 0), ("2.000ms", 2_000)] {
            assert_eq!(text.parse::<Delay>(), Ok(Delay::from_us(us)), "{text}");
        }
        for (us, text) in [(1_500, "1.5ms"), (1, "0.001ms"), (20_000, "20ms"), (0, "0ms"), (1_000_000, "1000ms")] {
            assert_eq!(Delay::from_us(us).to_string(), text);
        }
        for (text, ppm) in [("0.5%", 5_000), ("100%", 1_000_000), ("0.0001%", 1), ("12.25 %", 122_500), ("0%", 0)] {
            assert_eq!(text.parse::<Loss>(), Ok(Loss { ppm }), "{text}");
        }
        assert_eq!(Loss { ppm: 1 }.to_string(), "0.0001%");
        assert_eq!(Loss::ALL.to_string(), "100%");
    }

    #[test]
    fn bad_parts_say_which_and_how_to_fix_them() {
        let err = |s: &str| s.parse::<LinkShape>().unwrap_err();
        for (input, says) in [
            ("", "write none"),
            ("rtt=20", "has no unit: write e.g. 20ms"),
            ("rtt=99999999999999999999999ms", "more than 10000ms"),
            ("rtt=fast", "write a time such as 20ms"),
            ("rtt=0.0001ms", "finer than a microsecond"),
            ("rtt=11s", "more than 10000ms"),
            ("loss=0.5", "needs a % sign: write e.g. 0.5%"),
            ("loss=101%", "more than 100%"),
            ("loss=-1%", "write a percentage"),
            ("loss=0.00001%", "at most four decimals"),
            ("rate=100", "link speed \"100\" is not understood"),
            ("rate=100Mbit,,rtt=1ms", "empty part"),
            ("rtt=1ms,", "empty part"),
            ("bandwidth=1Gbit", "\"bandwidth\" is not a part of a link shape: the parts are rate, rtt, jitter, loss"),
            ("delay=10ms", "write the round trip as rtt=10ms"),
            ("rtt=10ms,rtt=20ms", "gives rtt twice"),
            ("rtt", "is not key=value"),
            ("rtt=10ms,jitter=11ms", "jitter 11ms is more than rtt 10ms"),
            ("jitter=1ms", "jitter 1ms is more than rtt 0ms"),
        ] {
            let e = err(input);
            assert!(e.contains(says), "{input:?}: {e}");
            if !input.is_empty() {
                assert!(e.contains(&format!("{input:?}")) || e.contains(input.split('=').nth(1).unwrap_or(input)), "{input:?} is named: {e}");
            }
        }
    }

    #[test]
    fn serde_writes_the_text() {
        let s = shape("rate=1Gbit,rtt=40ms,loss=1%");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"rate=1Gbit,rtt=40ms,loss=1%\"");
        assert_eq!(serde_json::from_str::<LinkShape>(&json).unwrap(), s);
        assert!(serde_json::from_str::<LinkShape>("\"rtt=1\"").unwrap_err().to_string().contains("no unit"));
        #[derive(Deserialize)]
        struct Cell {
            link_shape: LinkShape,
        }
        let c: Cell = toml::from_str("link_shape = \"rtt=20ms, jitter=2ms\"").unwrap();
        assert_eq!(c.link_shape.to_string(), "rtt=20ms,jitter=2ms");
        assert_eq!(serde_json::to_string(&Delay::from_us(500)).unwrap(), "\"0.5ms\"");
        assert_eq!(serde_json::from_str::<Loss>("\"2%\"").unwrap(), Loss { ppm: 20_000 });
    }

    #[test]
    fn both_ends_add_up_to_the_round_trip() {
        let s = shape("rate=8Mbit,rtt=40.001ms,jitter=3ms,loss=0.5%");
        let (near, far) = (s.egress(End::Near), s.egress(End::Far));
        assert_eq!((near.delay.us, far.delay.us), (20_000, 20_001));
        assert_eq!((near.jitter.us, far.jitter.us), (1_500, 1_500));
        assert_eq!((near.loss, far.loss), (s.loss, s.loss));
        assert_eq!((near.rate.clone(), far.rate.clone()), (s.rate.clone(), s.rate.clone()));
        assert_eq!((near.rtt, far.rtt), (s.rtt, s.rtt));
        assert_eq!(near.to_string(), "rate=8Mbit,delay=20ms,jitter=1.5ms,loss=0.5%");
        let alone = s.egress_alone();
        assert_eq!((alone.delay, alone.jitter), (s.rtt, s.jitter));
        assert!(LinkShape::none().egress(End::Near).is_none());
        assert!(!shape("rate=8Mbit").egress(End::Far).needs_netem());
        assert!(shape("loss=1%").egress(End::Far).needs_netem());
    }

    /// Words the parser knows, so arbitrary input reaches every check.
    const WORDS: &[&str] = &[
        "rate", "rtt", "jitter", "loss", "delay", "none", "=", ",", "%", "ms", "us", "s", "Mbit", "Gbit", "MiB/s", "unlimited", "0", "1", ".", "20",
        "0.5", "100", "101", "99999999999999999999", "-", " ", "1e3", "\u{e9}", "",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any text parses or says why; what parses prints as text that parses back to it.
        #[test]
        fn arbitrary_text_never_panics(text in prop_oneof![
            any::<String>(),
            prop::collection::vec(prop::sample::select(WORDS), 0..12).prop_map(|w| w.concat()),
        ]) {
            if let Ok(s) = text.parse::<LinkShape>() {
                let again: LinkShape = s.to_string().parse().map_err(|e: String| TestCaseError::fail(e))?;
                prop_assert_eq!(&again, &s);
                prop_assert!(s.jitter <= s.rtt);
                let _ = (s.egress(End::Near), s.egress(End::Far), s.egress_alone());
            }
            let _ = text.parse::<Delay>();
            let _ = text.parse::<Loss>();
        }

        #[test]
        fn every_shape_round_trips(rate in prop::option::of(1u64..=1_000_000_000_000), rtt in 0u64..=MAX_DELAY_US, jitter_share in 0u64..=100, ppm in 0u32..=1_000_000) {
            let shape = LinkShape {
                rate: rate.map(|b| format!("{}bit", b * 8).parse().unwrap()),
                rtt: Delay::from_us(rtt),
                jitter: Delay::from_us(rtt * jitter_share / 100),
                loss: Loss { ppm },
            };
            let text = shape.to_string();
            prop_assert_eq!(text.parse::<LinkShape>(), Ok(shape.clone()), "{}", text);
            let json = serde_json::to_string(&shape).unwrap();
            prop_assert_eq!(serde_json::from_str::<LinkShape>(&json).unwrap(), shape);
        }
    }
}
