//! The link to a remote host, shaped with `tc` at both of its ends: this host's
//! interface towards the destination's migration address, and the far host's
//! interface back towards us (found there with `ip route get`, run by the agent). Only the
//! migration data path is shaped; the SSH connection shares it when it runs over
//! the same interface (a shared link), not when `--migrate-address` names another.
//!
//! Shaping replaces the root qdisc of both interfaces while the shape is on;
//! clearing deletes it, which gives each interface the kernel's default back.
//!
//! **Without netem:** where this host's kernel has no netem and a delay line
//! (`network::delay_line`, the test host's link on such a kernel) answers on the
//! near interface, the rate goes on with `tc` at both ends (htb and a pfifo) and
//! the round trip, jitter and loss on the delay line, both directions set from
//! here; otherwise a shape that needs netem is a `tc::MissingQdisc` error. The
//! record says which did what ([`EmulatedBy`]) and carries the line's counters.
//!
//! **Read back:** after shaping, the link's round trip is measured ([`round_trip_ms`])
//! and recorded; one short of the rtt asked for is an error (the setting did not
//! take effect).

use super::remote::RemoteHost;
use crate::network::delay_line::{self, Impairment, Settings};
use crate::network::shape::{Delay, Egress, End, LinkShape, Loss};
use crate::network::tc::{self, MissingQdisc, Runner, TcStats};
use crate::network::tc_output::AppliedShape;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// This host's interfaces shaped now, for the Ctrl-C path (see [`clear_all_here`]).
static SHAPED_HERE: std::sync::Mutex<std::collections::BTreeSet<String>> = std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Takes the shaping off every interface of this host migbench shaped (the
/// signal handler's path: no destructor runs after it). The far ends are cleared
/// by their agents when the connection ends.
pub fn clear_all_here() {
    let devs = std::mem::take(&mut *SHAPED_HERE.lock().unwrap_or_else(|e| e.into_inner()));
    for dev in devs {
        let _ = tc::clear(&tc::Local::host(), &dev);
        let _ = delay_line::set(&dev, Settings::default());
    }
}

/// Root qdiscs migbench may replace: the kernel's defaults, and its own.
const REPLACEABLE: &[&str] = &["noqueue", "pfifo_fast", "fq_codel", "mq", "fq", "pfifo", "htb 1:", "netem 10:"];

/// The root qdisc in `tc qdisc show dev DEV` output ("htb 1:", "fq_codel 0:").
pub fn root_qdisc(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.first() != Some(&"qdisc") || !w.contains(&"root") {
            return None;
        }
        Some(format!("{} {}", w.get(1)?, w.get(2)?))
    })
}

/// Refuses to replace a root qdisc someone else put on `dev`.
fn check_replaceable(runner: &dyn Runner, dev: &str) -> Result<()> {
    let text = runner.run(&["tc".into(), "qdisc".into(), "show".into(), "dev".into(), dev.into()])?;
    refuse_foreign_root(&text, dev, runner)
}

/// [`check_replaceable`] on `dev`'s `tc qdisc show` output, read already.
fn refuse_foreign_root(text: &str, dev: &str, runner: &dyn Runner) -> Result<()> {
    let Some(root) = root_qdisc(text) else { return Ok(()) };
    let kind = root.split_whitespace().next().unwrap_or_default();
    if !REPLACEABLE.iter().any(|r| *r == root || (!r.contains(' ') && *r == kind)) {
        bail!("{dev} on {} has a root qdisc of its own ({root}), which shaping would replace: shape a link kept for the purpose (--migrate-address on another interface), or remove it (tc qdisc del dev {dev} root)", runner.place());
    }
    Ok(())
}

/// Runs `tc` and `ip` on the remote host, through its agent (`Request::Run`).
pub struct Far<'a>(pub &'a RemoteHost);

impl Runner for Far<'_> {
    fn run(&self, argv: &[String]) -> Result<String> {
        self.0.agent.ask(&super::agent::Request::Run { argv: argv.to_vec() }, super::agent::CALL_TIMEOUT)
    }

    fn place(&self) -> String {
        self.0.ssh.target.to_string()
    }
}

/// The two interfaces the migration's packets leave by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkEnds {
    /// This host's interface towards the migration address.
    pub near_dev: String,
    /// Our address on it, as the far host sees it.
    pub near_address: String,
    /// The far host's interface back to `near_address`.
    pub far_dev: String,
}

/// What put a shape on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmulatedBy {
    /// A rate alone: htb at both ends.
    #[serde(rename = "tc htb")]
    Htb,
    /// netem at both ends (under htb with a rate).
    #[serde(rename = "tc netem")]
    Netem,
    /// The rate with htb at both ends, the round trip, jitter and loss on the
    /// near interface's delay line.
    #[serde(rename = "delay line (no netem in this kernel)")]
    DelayLine,
}

impl std::fmt::Display for EmulatedBy {
    /// As the record writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        f.write_str(&text)
    }
}

/// What a run's link was: the shape asked for, what put it on and what each end
/// read back, both ends' `tc -s` counters (and a delay line's) before and after
/// the migration, and the round trip measured before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub shape: LinkShape,
    pub ends: LinkEnds,
    /// `None` for a link left as it is.
    #[serde(default)]
    pub emulated_by: Option<EmulatedBy>,
    pub near_applied: Option<AppliedShape>,
    pub far_applied: Option<AppliedShape>,
    pub before: Vec<TcStats>,
    #[serde(default)]
    pub after: Vec<TcStats>,
    /// This host's interface towards the far host's client address: `ends.near_dev`
    /// when the guest's clients share the shaped link, another one when their link
    /// is separate (and not shaped).
    #[serde(default)]
    pub client_dev: String,
    /// The delay line on the near interface, where one answers: its settings and
    /// counters before and after the migration.
    #[serde(default)]
    pub delay_line_before: Option<delay_line::State>,
    #[serde(default)]
    pub delay_line_after: Option<delay_line::State>,
    /// The median round trip of TCP connections to the far host's migration
    /// address, measured once the shape was on ([`round_trip_ms`]); `None` for a
    /// link left as it is.
    #[serde(default)]
    pub measured_rtt_ms: Option<f64>,
}

/// What `tc` puts on `end`'s egress when `by` emulates the shape: the whole of it,
/// or, beside a delay line, the rate alone (the queue still sized for the rtt).
fn tc_egress(shape: &LinkShape, end: End, by: EmulatedBy) -> Egress {
    let e = shape.egress(end);
    match by {
        EmulatedBy::DelayLine => Egress { delay: Delay::ZERO, jitter: Delay::ZERO, loss: Loss::NONE, ..e },
        _ => e,
    }
}

/// What a delay line does in each direction for `shape`: towards the far end what
/// the near egress would, back what the far egress would.
pub fn line_settings(shape: &LinkShape) -> Settings {
    Settings { toward_far: Impairment::of(&shape.egress(End::Near)), toward_near: Impairment::of(&shape.egress(End::Far)) }
}

fn by_label(by: Option<EmulatedBy>) -> String {
    by.map(|b| b.to_string()).unwrap_or_else(|| "nothing".into())
}

/// How many connections [`round_trip_ms`] times.
const RTT_SAMPLES: usize = 10;
/// How long one of them may take (a lost SYN is sent again after a second).
const RTT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// The link's round trip to `addr`, ms: the median time a TCP connection takes to
/// be answered (accepted, or refused: either is one round trip) over
/// [`RTT_SAMPLES`] connections one after another.
pub fn round_trip_ms(addr: std::net::SocketAddr) -> Result<f64> {
    let mut times = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..RTT_SAMPLES {
        let t = std::time::Instant::now();
        match std::net::TcpStream::connect_timeout(&addr, RTT_CONNECT_TIMEOUT) {
            Ok(_) => times.push(t.elapsed().as_secs_f64() * 1000.0),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => times.push(t.elapsed().as_secs_f64() * 1000.0),
            Err(e) => failures.push(e.to_string()),
        }
    }
    if times.len() < RTT_SAMPLES / 2 {
        bail!("measuring the round trip to {addr}: {} of {RTT_SAMPLES} TCP connections were not answered ({})", failures.len(), failures.join("; "));
    }
    crate::stats::median(&times).with_context(|| format!("measuring the round trip to {addr}: no time was measured"))
}

/// Why a round trip of `measured_ms` says `shape` is not on the link, if it does:
/// one shorter than its rtt by more than its jitter and a small tolerance
/// (5 %, and 0.1 ms for the clock).
pub fn rtt_shortfall(shape: &LinkShape, measured_ms: f64) -> Option<String> {
    let tolerance = shape.jitter_ms() + shape.rtt_ms() * 0.05 + 0.1;
    (measured_ms + tolerance < shape.rtt_ms()).then(|| {
        format!(
            "the link's round trip measured {measured_ms:.2} ms, short of the rtt {} asked for (by more than {tolerance:.2} ms): the shape did not take effect",
            shape.rtt
        )
    })
}

/// The default class of the root htb in `tc qdisc show` output ("0x1", "0").
pub fn htb_default(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains(" root ") && l.contains("htb"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    words.windows(2).find(|w| w[0] == "default").map(|w| w[1].to_string())
}

/// `dev` and `src` from `ip route get` output ("198.18.0.6 dev mbh0 src 198.18.0.5 uid 0").
pub fn route_dev_and_source(text: &str) -> Option<(String, String)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let after = |key: &str| words.windows(2).find(|w| w[0] == key).map(|w| w[1].to_string());
    Some((after("dev")?, after("src")?))
}

/// This host's interface and address on its route to `address`.
fn route_here(address: &str) -> Result<(String, String)> {
    let route = tc::Local::host().run(&["ip".into(), "route".into(), "get".into(), address.into()]).with_context(|| format!("finding this host's route to {address}"))?;
    route_dev_and_source(&route).with_context(|| format!("`ip route get {address}` here said {route:?}: no interface found"))
}

impl RemoteHost {
    /// Finds both ends of the migration's path to this host.
    pub fn link_ends(&self) -> Result<LinkEnds> {
        let (near_dev, near_address) = self.near_route()?;
        if near_dev == "lo" {
            bail!("the migration address {} is this host's own: a link to another host cannot be shaped on loopback", self.migrate_address);
        }
        let far_dev = self.far_dev(&near_address)?;
        Ok(LinkEnds { near_dev, near_address, far_dev })
    }

    /// The far host's interface on its path back to `near_address` (ours).
    fn far_dev(&self, near_address: &str) -> Result<String> {
        let far = Far(self).run(&["ip".into(), "route".into(), "get".into(), near_address.into()])?;
        let Some((far_dev, _)) = route_dev_and_source(&far) else { bail!("`ip route get {near_address}` on {} said {far:?}: no interface found", self.ssh.target) };
        Ok(far_dev)
    }

    /// This host's address on the path to the migration address (where the far
    /// host reaches us).
    pub fn local_address(&self) -> Result<std::net::IpAddr> {
        let (_, src) = self.near_route()?;
        src.parse().with_context(|| format!("the source address {src:?} for {}", self.migrate_address))
    }

    /// This host's address on the path to the client address: where the far
    /// guest's NIC reaches back to the test bridge here.
    pub fn client_local_address(&self) -> Result<std::net::IpAddr> {
        let (_, src) = route_here(&self.client_address)?;
        src.parse().with_context(|| format!("the source address {src:?} for {}", self.client_address))
    }

    /// This host's interface and address on its route to the migration address.
    fn near_route(&self) -> Result<(String, String)> {
        route_here(&self.migrate_address)
    }

    /// Puts `shape` on both ends (or clears them for `none`), unless it is on
    /// already; returns the record with both ends' counters as they are now.
    /// A kernel without the qdisc a shape needs is a `tc::MissingQdisc` error.
    /// An unshaped link whose ends cannot be found (loopback, say) has no record.
    pub fn shape_link(&self, shape: &LinkShape) -> Result<Option<LinkRecord>> {
        let ends = match self.link_ends() {
            Ok(e) => e,
            Err(_) if shape.is_none() && self.shaped.lock().unwrap_or_else(|e| e.into_inner()).is_none() => return Ok(None),
            Err(e) => return Err(e),
        };
        let far = Far(self);
        let near = tc::Local::host();
        let mut on = self.shaped.lock().unwrap_or_else(|e| e.into_inner());
        let (near_applied, far_applied, emulated_by) = if shape.is_none() {
            if on.is_some() {
                tc::clear(&near, &ends.near_dev)?;
                tc::clear(&far, &ends.far_dev)?;
            }
            // A delay line keeps no earlier cell's (or killed run's) delay.
            delay_line::set(&ends.near_dev, Settings::default())?;
            *on = None;
            self.note_shaped_here(None);
            (None, None, None)
        } else {
            if shape.loss.percent() >= 100.0 {
                bail!("link_shape = \"{shape}\": a link that loses every packet also cuts the SSH connection that would clear it; to cut the link, use a fault");
            }
            let by_tc = if shape.egress(End::Near).needs_netem() { EmulatedBy::Netem } else { EmulatedBy::Htb };
            let ([n, f], by) = if on.as_ref() == Some(shape) {
                // Still what was asked (nobody changed it between runs), by whichever put it on.
                let line = delay_line::read(&ends.near_dev)?;
                let by = if by_tc == EmulatedBy::Netem && line.is_some_and(|l| l.settings == line_settings(shape)) { EmulatedBy::DelayLine } else { by_tc };
                let mut both = Vec::new();
                for (r, dev, end) in [(&near as &dyn Runner, &ends.near_dev, End::Near), (&far, &ends.far_dev, End::Far)] {
                    let e = tc_egress(shape, end, by);
                    let applied = tc::read_back(r, dev)?;
                    applied.check(&e, Some(tc::queue_limit(&e))).map_err(|m| anyhow::anyhow!("the shape on {dev} on {} changed since it was put there: {m}", r.place()))?;
                    both.push(applied);
                }
                let f = both.pop().expect("two ends");
                ([both.pop().expect("two ends"), f], by)
            } else {
                check_replaceable(&near, &ends.near_dev)?;
                check_replaceable(&far, &ends.far_dev)?;
                *on = None;
                // Cleared by the agent when it ends, and here on Ctrl-C, whatever happens next.
                self.agent.call(&super::agent::Request::ShapedHere { dev: ends.far_dev.clone(), clear: true }, super::agent::CALL_TIMEOUT)?;
                SHAPED_HERE.lock().unwrap_or_else(|e| e.into_inner()).insert(ends.near_dev.clone());
                self.note_shaped_here(Some(&ends.near_dev));
                match self.put_on(&ends, shape, by_tc) {
                    Ok(done) => {
                        *on = Some(shape.clone());
                        done
                    }
                    Err(e) => {
                        // Neither end keeps an earlier cell's shape.
                        let _ = tc::clear(&near, &ends.near_dev);
                        let _ = tc::clear(&far, &ends.far_dev);
                        let _ = delay_line::set(&ends.near_dev, Settings::default());
                        return Err(e);
                    }
                }
            };
            (Some(n), Some(f), Some(by))
        };
        drop(on);
        let measured_rtt_ms = match emulated_by {
            Some(_) => {
                let ip = crate::host::ssh::address_ip(&self.migrate_address)?;
                // A port nobody listens on there answers each SYN with a reset: one
                // round trip on the path and the ports QEMU's stream uses (not
                // sshd's, whose log and fail2ban would see ten aborted logins).
                let port = self.free_port()?;
                let ms = round_trip_ms((ip, port).into()).with_context(|| format!("reading back the shape {shape} on the link"))?;
                if let Some(why) = rtt_shortfall(shape, ms) {
                    bail!("{why} (emulated by {} on {} and {})", by_label(emulated_by), ends.near_dev, ends.far_dev);
                }
                Some(ms)
            }
            None => None,
        };
        let before = vec![tc::stats(&near, &ends.near_dev)?, tc::stats(&far, &ends.far_dev)?];
        let delay_line_before = delay_line::read(&ends.near_dev)?;
        let client_dev = route_here(&self.client_address)?.0;
        Ok(Some(LinkRecord {
            shape: shape.clone(),
            ends,
            emulated_by,
            near_applied,
            far_applied,
            before,
            after: Vec::new(),
            delay_line_before,
            delay_line_after: None,
            measured_rtt_ms,
            client_dev,
        }))
    }

    /// Puts `shape` on both ends with `tc` (`by_tc`: netem where it needs it), or,
    /// where this host's kernel has no netem and a delay line answers on the near
    /// interface, its rate with `tc` and the rest on the line. Returns what each
    /// end's `tc` reads back and what emulated the shape.
    fn put_on(&self, ends: &LinkEnds, shape: &LinkShape, by_tc: EmulatedBy) -> Result<([AppliedShape; 2], EmulatedBy)> {
        let (near, far) = (tc::Local::host(), Far(self));
        let err = match tc::apply_link((&near, &ends.near_dev), (&far, &ends.far_dev), shape) {
            Ok(applied) => {
                // A delay line on the interface passes everything at once.
                delay_line::set(&ends.near_dev, Settings::default())?;
                return Ok((applied, by_tc));
            }
            Err(e) => e,
        };
        let missing_here = err.downcast_ref::<MissingQdisc>().is_some_and(|m| m.kind == "netem" && m.place == near.place());
        if !missing_here || delay_line::read(&ends.near_dev)?.is_none() {
            return Err(err);
        }
        if !shape.jitter.is_zero() {
            // The line keeps packets in order: on a busy stream each one waits for the
            // one ahead, so every packet would take about delay + jitter, not delay ±
            // jitter. Unsupported, as without a line.
            return Err(err.context(format!("the delay line on {} cannot emulate jitter (it keeps packets in order, so a busy stream would see rtt + jitter throughout): only tc netem does", ends.near_dev)));
        }
        let by = EmulatedBy::DelayLine;
        let n = tc::apply(&near, &ends.near_dev, &tc_egress(shape, End::Near, by))?;
        let f = tc::apply(&far, &ends.far_dev, &tc_egress(shape, End::Far, by))?;
        let wanted = line_settings(shape);
        let state = delay_line::set(&ends.near_dev, wanted)?.with_context(|| format!("the delay line on {} went away", ends.near_dev))?;
        if state.settings != wanted {
            bail!("the delay line on {} reads back {:?}, not the {:?} set", ends.near_dev, state.settings, wanted);
        }
        Ok(([n, f], by))
    }

    /// Cuts (or, with `cut` false, restores) the migration stream to `port` on the
    /// destination, at both ends: a u32 filter sends its packets to a class whose
    /// queue holds none (`pfifo limit 0`), everything else passes as before (no
    /// action module needed). A shape on the link stays; an unshaped link gets a
    /// root htb that sends unmatched packets straight through, removed on restore.
    pub fn cut_stream(&self, port: u16, cut: bool) -> Result<()> {
        let ends = self.link_ends()?;
        let far = Far(self);
        let near = tc::Local::host();
        let w = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<String>>();
        for (r, dev, matcher, is_far) in [(&near as &dyn Runner, &ends.near_dev, "dport", false), (&far, &ends.far_dev, "sport", true)] {
            // A shape with a rate has a root htb to hang the cut's class on (its
            // default class 1:1; the cut's own root sends unmatched packets straight
            // through, default 0); one without (netem alone at the root) has none,
            // and is not replaced.
            let text = r.run(&w(&format!("tc qdisc show dev {dev}")))?;
            let root = root_qdisc(&text);
            let shaped = root.as_deref() == Some("htb 1:") && htb_default(&text).is_some_and(|d| d != "0");
            if root.as_deref() == Some("netem 10:") {
                bail!("cutting the stream on {dev} on {}: the link's shape has no rate (netem alone at its root), which the cut cannot hang its class on: give the shape a rate (rate=…)", r.place());
            }
            if cut {
                if is_far {
                    self.agent.call(&super::agent::Request::ShapedHere { dev: dev.clone(), clear: true }, super::agent::CALL_TIMEOUT)?;
                } else {
                    SHAPED_HERE.lock().unwrap_or_else(|e| e.into_inner()).insert(dev.clone());
                    self.note_shaped_here(Some(dev));
                }
                if !shaped {
                    refuse_foreign_root(&text, dev, r)?;
                    tc::clear(r, dev)?;
                    r.run(&w(&format!("tc qdisc add dev {dev} root handle 1: htb default 0")))?;
                }
                r.run(&w(&format!("tc class add dev {dev} parent 1: classid 1:9 htb rate 10gbit")))?;
                r.run(&w(&format!("tc qdisc add dev {dev} parent 1:9 handle 19: pfifo limit 0")))?;
                r.run(&w(&format!("tc filter add dev {dev} parent 1: protocol ip prio 1 u32 match ip {matcher} {port} 0xffff flowid 1:9")))?;
            } else if shaped {
                r.run(&w(&format!("tc filter del dev {dev} parent 1: prio 1")))?;
                r.run(&w(&format!("tc class del dev {dev} classid 1:9")))?;
            } else {
                tc::clear(r, dev)?;
                if !is_far {
                    self.note_shaped_here(None);
                }
            }
        }
        Ok(())
    }

    /// Both ends' counters now (after a migration), for `record`.
    pub fn link_after(&self, record: &mut LinkRecord) {
        let near = tc::Local::host();
        record.after = [tc::stats(&near, &record.ends.near_dev), tc::stats(&Far(self), &record.ends.far_dev)].into_iter().flatten().collect();
        if record.delay_line_before.is_some() {
            record.delay_line_after = delay_line::read(&record.ends.near_dev).ok().flatten();
        }
    }

    /// Takes any shaping off both ends (the end of a sweep, or dropping the host).
    pub fn unshape_link(&self) -> Result<()> {
        let mut on = self.shaped.lock().unwrap_or_else(|e| e.into_inner());
        if on.is_none() {
            return Ok(());
        }
        // This host's end first, from what is known here: a far host or agent that
        // no longer answers must not leave this host's interface shaped (the agent
        // clears the far end itself when it ends).
        let (near_dev, near_address) = self.near_route()?;
        tc::clear(&tc::Local::host(), &near_dev)?;
        delay_line::set(&near_dev, Settings::default())?;
        self.note_shaped_here(None);
        tc::clear(&Far(self), &self.far_dev(&near_address)?)?;
        *on = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_htb_default_tells_a_shape_from_a_cut() {
        assert_eq!(htb_default("qdisc htb 1: root refcnt 2 r2q 10 default 0x1 direct_packets_stat 0\n").as_deref(), Some("0x1"));
        assert_eq!(htb_default("qdisc htb 1: root refcnt 2 r2q 10 default 0 direct_packets_stat 3\nqdisc pfifo 19: parent 1:9 limit 0p\n").as_deref(), Some("0"));
        assert_eq!(htb_default("qdisc noqueue 0: root refcnt 2\n"), None);
    }

    #[test]
    fn the_root_qdisc_is_read_and_a_foreign_one_named() {
        assert_eq!(root_qdisc("qdisc noqueue 0: root refcnt 2 \n").as_deref(), Some("noqueue 0:"));
        assert_eq!(root_qdisc("qdisc htb 1: root refcnt 3 r2q 10 default 0x1\nqdisc netem 10: parent 1:1 limit 1000\n").as_deref(), Some("htb 1:"));
        assert_eq!(root_qdisc("qdisc fq_codel 0: root refcnt 2 limit 10240p\n").as_deref(), Some("fq_codel 0:"));
        assert_eq!(root_qdisc(""), None);
        struct Says(&'static str);
        impl Runner for Says {
            fn run(&self, _: &[String]) -> Result<String> {
                Ok(self.0.to_string())
            }
            fn place(&self) -> String {
                "host-b".into()
            }
        }
        assert!(check_replaceable(&Says("qdisc fq_codel 0: root refcnt 2\n"), "eth1").is_ok());
        assert!(check_replaceable(&Says("qdisc htb 1: root refcnt 3\n"), "eth1").is_ok(), "our own, left by an earlier run");
        let e = check_replaceable(&Says("qdisc cake 8001: root refcnt 2 bandwidth 50Mbit\n"), "eth1").unwrap_err().to_string();
        assert!(e.contains("cake 8001:") && e.contains("eth1 on host-b") && e.contains("tc qdisc del dev eth1 root"), "{e}");
        assert!(check_replaceable(&Says("qdisc htb 5: root\n"), "eth1").is_err(), "another's htb");
    }

    #[test]
    fn beside_a_delay_line_tc_keeps_the_rate_and_the_line_takes_the_rest() {
        let s: LinkShape = "rate=100Mbit,rtt=21ms,jitter=2ms,loss=0.5%".parse().unwrap();
        for end in [End::Near, End::Far] {
            let e = tc_egress(&s, end, EmulatedBy::DelayLine);
            assert!(!e.needs_netem() && e.rate == s.rate && e.rtt == s.rtt, "{e}");
            // htb and a pfifo sized for the round trip, as tc builds for a rate alone.
            let cmds: Vec<String> = tc::commands("d0", &e).iter().map(|c| c.join(" ")).collect();
            assert!(cmds.last().unwrap().contains("pfifo") && !cmds.iter().any(|c| c.contains("netem")), "{cmds:?}");
            assert_eq!(tc_egress(&s, end, EmulatedBy::Netem), s.egress(end));
        }
        let l = line_settings(&s);
        // The near egress (10.5 ms, rounded down) towards the far end, the far one back: 21 ms in all.
        assert_eq!(l.toward_far, Impairment { delay_us: 10_500, jitter_us: 1_000, loss_ppm: 5_000 });
        assert_eq!(l.toward_far.delay_us + l.toward_near.delay_us, 21_000);
        assert_eq!(line_settings(&LinkShape::none()), Settings::default());
    }

    #[test]
    fn the_record_names_what_emulated_the_link() {
        assert_eq!(serde_json::to_value(EmulatedBy::DelayLine).unwrap(), "delay line (no netem in this kernel)");
        assert_eq!(EmulatedBy::Netem.to_string(), "tc netem");
        assert_eq!(serde_json::from_str::<EmulatedBy>("\"tc htb\"").unwrap(), EmulatedBy::Htb);
        assert_eq!(by_label(None), "nothing");
    }

    #[test]
    fn a_round_trip_short_of_the_rtt_is_named() {
        let s: LinkShape = "rate=100Mbit,rtt=20ms".parse().unwrap();
        assert_eq!(rtt_shortfall(&s, 20.3), None);
        assert_eq!(rtt_shortfall(&s, 19.2), None, "within 5 % and the clock's 0.1 ms");
        let why = rtt_shortfall(&s, 0.2).unwrap();
        assert!(why.contains("0.20 ms") && why.contains("20ms") && why.contains("did not take effect"), "{why}");
        // The jitter widens what is accepted.
        let j: LinkShape = "rtt=20ms,jitter=4ms".parse().unwrap();
        assert_eq!(rtt_shortfall(&j, 16.5), None);
        assert!(rtt_shortfall(&j, 14.0).is_some());
        assert_eq!(rtt_shortfall(&LinkShape::none(), 0.05), None);
    }

    #[test]
    fn the_round_trip_is_timed_on_an_answer_or_a_refusal() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap();
        let ms = round_trip_ms(open).unwrap();
        assert!((0.0..1000.0).contains(&ms), "{ms}");
        drop(l);
        // Nobody listens now: a refusal is a round trip too.
        assert!(round_trip_ms(open).unwrap() < 1000.0);
    }

    #[test]
    fn the_route_names_the_interface_and_our_address() {
        assert_eq!(route_dev_and_source("198.18.0.6 dev mbh0 src 198.18.0.5 uid 0 \n    cache \n"), Some(("mbh0".into(), "198.18.0.5".into())));
        assert_eq!(route_dev_and_source("10.0.0.9 via 10.0.0.1 dev eth0 src 10.0.0.2 uid 1000\n"), Some(("eth0".into(), "10.0.0.2".into())));
        assert_eq!(route_dev_and_source("RTNETLINK answers: Network is unreachable"), None);
    }
}
