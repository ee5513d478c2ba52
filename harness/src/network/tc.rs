//! Putting a [`LinkShape`] on a link with Linux traffic control: the exact `tc`
//! commands for one interface's egress, run through a [`Runner`] (here, or in a
//! network namespace; by the agent on the far host), read back and checked, and
//! cleared again.
//!
//! The tree on an interface (handles fixed, so a read-back knows what it made):
//!
//! ```text
//! root 1: htb default 1            only with a rate
//!   class 1:1 htb rate R ceil R    every packet (the default class) at rate R
//!     10: netem limit L delay D J loss P     with a delay, jitter or loss
//!     10: pfifo limit L                      otherwise
//! root 10: netem limit L delay D J loss P    a delay, jitter or loss, no rate
//! ```
//!
//! A packet is delayed by netem, then waits for htb's tokens (netem sits under
//! htb's class and gives htb a packet only once its delay has passed). netem's
//! jitter is uniform within ± J and, as netem does, can reorder packets.
//!
//! **The queue limit** `L` ([`queue_limit`]): netem holds every packet for its
//! delay, and under htb also every packet waiting for tokens, so its default of
//! 1000 packets would drop packets of its own accord long before the link is
//! full (at 1 Gbit/s a 20 ms delay alone holds 1667 full-size packets) and the
//! loss would not be the loss asked for. `L` holds the bandwidth-delay product of
//! the delay line (rate × (delay + jitter)) plus one round trip's worth more
//! (rate × rtt) as the bottleneck's buffer, the classic size of a router's
//! buffer, in full-size (1500-byte) packets; at least 1000. Without a rate the
//! line rate is taken as 10 Gbit/s.
//!
//! `apply` replaces whatever root qdisc the interface had, and `clear` deletes the
//! root, which gives the interface back the kernel's default (not an earlier
//! qdisc of someone else's): shape a link kept for the purpose.

use super::shape::{Egress, End, LinkShape};
use super::tc_output::AppliedShape;
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};

/// htb's handle, as the root.
pub const HTB: &str = "1:";
/// htb's one class, every packet's.
pub const CLASS: &str = "1:1";
/// The leaf: netem, or a pfifo under htb alone.
pub const LEAF: &str = "10:";

/// Bytes taken for a packet when turning bytes into netem's packet limit.
const PACKET_BYTES: u128 = 1500;
/// netem's own default limit, and the least one set here.
const MIN_LIMIT: u64 = 1000;
/// No more than this many packets of queue (16 M, some 24 GB of full-size ones).
const MAX_LIMIT: u64 = 1 << 24;
/// The line rate taken for a link shaped without a rate: 10 Gbit/s.
const ASSUMED_LINE_BYTES_PER_SEC: u64 = 1_250_000_000;

/// Runs a command somewhere: on this host, in a network namespace, or on the far
/// host through its agent.
pub trait Runner {
    /// Runs `argv[0]` with the rest as its arguments and returns its standard
    /// output; a command that fails is an error whose text includes its standard
    /// error (apply reads tc's messages from it).
    fn run(&self, argv: &[String]) -> Result<String>;

    /// Where commands run, for messages: "this host", "root@198.18.0.2".
    fn place(&self) -> String;
}

/// Runs commands on this host, in its own network namespace or in another one.
pub struct Local {
    netns: Option<File>,
    place: String,
}

impl Local {
    /// Commands run as they are, in migbench's own network namespace.
    pub fn host() -> Local {
        Local::named("this host")
    }

    /// [`Local::host`], called `place` in messages (the agent names its host so,
    /// for the harness that reads them on another).
    pub fn named(place: impl Into<String>) -> Local {
        Local { netns: None, place: place.into() }
    }

    /// Commands run inside the network namespace `ns` (an open /proc/…/ns/net, or
    /// a `Network`); it is kept open as long as this runner.
    pub fn in_namespace(ns: impl AsFd) -> Result<Local> {
        use std::os::unix::fs::MetadataExt;
        let ns = File::from(ns.as_fd().try_clone_to_owned().context("keeping a network namespace open for tc")?);
        let inode = ns.metadata().map(|m| m.ino()).unwrap_or(0);
        Ok(Local { netns: Some(ns), place: format!("network namespace net:[{inode}] on this host") })
    }
}

impl Runner for Local {
    fn run(&self, argv: &[String]) -> Result<String> {
        let Some((program, args)) = argv.split_first() else { bail!("no command to run") };
        let mut cmd = Command::new(program_path(program, std::env::var_os("PATH")));
        cmd.args(args).stdin(Stdio::null());
        if let Some(ns) = &self.netns {
            let fd = ns.as_raw_fd();
            // SAFETY: setns is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let shown = argv.join(" ");
        let out = cmd.output().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow!("`{program}` is not installed on {}: install iproute2 (`apt-get install iproute2`), which has tc and ip", self.place)
            } else {
                anyhow!("running `{shown}` on {}: {e}", self.place)
            }
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            bail!("`{shown}` failed on {} ({}): {}", self.place, out.status, stderr.trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn place(&self) -> String {
        self.place.clone()
    }
}

/// `program` as found on `path` (PATH), else in /usr/sbin or /sbin, where Debian
/// keeps tc and ip and which the PATH of a user other than root (an SSH session's,
/// say) often lacks.
fn program_path(program: &str, path: Option<std::ffi::OsString>) -> std::path::PathBuf {
    let on_path = path.is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()));
    if on_path {
        return program.into();
    }
    ["/usr/sbin", "/sbin"].iter().map(|d| std::path::Path::new(d).join(program)).find(|p| p.is_file()).unwrap_or_else(|| program.into())
}

/// The kernel lacks a qdisc a shape needs (typically netem). The lead can record
/// a run that needs it as unsupported with this as its reason.
#[derive(Debug, thiserror::Error)]
#[error(
    "the kernel on {place} has no `{kind}` queueing discipline (sch_{kind}), which {role}: load it with `modprobe sch_{kind}` \
     (Debian's and Ubuntu's kernels ship it as a module; on some Ubuntu kernels it is in linux-modules-extra-$(uname -r)), \
     or use a kernel built with CONFIG_NET_SCH_{upper}"
)]
pub struct MissingQdisc {
    pub kind: String,
    pub place: String,
    role: &'static str,
    upper: String,
}

impl MissingQdisc {
    fn new(kind: &str, place: String) -> MissingQdisc {
        let role = match kind {
            "netem" => "emulates rtt, jitter and loss (a shape with only a rate does not need it)",
            "htb" => "limits the rate",
            _ => "this shape uses",
        };
        MissingQdisc { kind: kind.into(), place, role, upper: kind.to_ascii_uppercase() }
    }
}

/// The packets of queue netem (or htb's pfifo) is given: see the module's text.
pub fn queue_limit(e: &Egress) -> u64 {
    let bytes_per_sec = e.rate.as_ref().and_then(|r| r.bytes_per_sec).unwrap_or(ASSUMED_LINE_BYTES_PER_SEC) as u128;
    let hold_us = (e.delay.us + e.jitter.us + e.rtt.us) as u128;
    let packets = (bytes_per_sec * hold_us).div_ceil(1_000_000 * PACKET_BYTES);
    (packets.min(MAX_LIMIT as u128) as u64).max(MIN_LIMIT)
}

/// htb's burst (and cburst), bytes: a millisecond at the rate, and at least two
/// full-size frames. Smaller, htb falls short of high rates (it sleeps between
/// packets longer than the burst lasts); larger, a transfer starts with a longer
/// burst above the rate.
pub fn burst_bytes(bytes_per_sec: u64) -> u64 {
    (bytes_per_sec / 1000).max(2 * 1514)
}

/// htb's DRR quantum: what htb would choose itself (rate / 10), kept within the
/// bounds it warns outside of.
fn quantum(bytes_per_sec: u64) -> u64 {
    (bytes_per_sec / 10).clamp(1514, 200_000)
}

/// The `tc` commands that put `e` on `dev`'s egress, in order, for an interface
/// whose root qdisc is the kernel's default (`apply` clears it first). None for
/// an egress left as it is.
pub fn commands(dev: &str, e: &Egress) -> Vec<Vec<String>> {
    let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<String>>();
    let mut out = Vec::new();
    let limit = queue_limit(e).to_string();
    let rate = e.rate.as_ref().and_then(|r| r.bytes_per_sec);
    let at = if let Some(bytes) = rate {
        let bits = format!("{}bit", bytes * 8);
        let burst = burst_bytes(bytes).to_string();
        out.push(argv(&["tc", "qdisc", "add", "dev", dev, "root", "handle", HTB, "htb", "default", "1"]));
        out.push(argv(&[
            "tc", "class", "add", "dev", dev, "parent", HTB, "classid", CLASS, "htb", "rate", &bits, "ceil", &bits, "burst", &burst, "cburst", &burst, "quantum",
            &quantum(bytes).to_string(),
        ]));
        vec!["parent", CLASS]
    } else {
        vec!["root"]
    };
    if e.needs_netem() {
        let mut add = argv(&["tc", "qdisc", "add", "dev", dev]);
        add.extend(argv(&at));
        add.extend(argv(&["handle", LEAF, "netem", "limit", &limit]));
        if !e.delay.is_zero() {
            add.extend(["delay".into(), format!("{}us", e.delay.us)]);
            if !e.jitter.is_zero() {
                add.push(format!("{}us", e.jitter.us));
            }
        }
        if !e.loss.is_zero() {
            add.extend(["loss".into(), e.loss.to_string()]);
        }
        out.push(add);
    } else if rate.is_some() {
        out.push(argv(&["tc", "qdisc", "add", "dev", dev, "parent", CLASS, "handle", LEAF, "pfifo", "limit", &limit]));
    }
    out
}

/// Puts `e` on `dev`'s egress where `runner` runs, replacing what was there, then
/// reads it back and checks it is what was asked for. On any failure the
/// interface is cleared again (never left half-shaped). A kernel without a qdisc
/// the shape needs is a [`MissingQdisc`] error.
pub fn apply(runner: &dyn Runner, dev: &str, e: &Egress) -> Result<AppliedShape> {
    clear(runner, dev)?;
    let result = (|| {
        for argv in commands(dev, e) {
            if let Err(err) = runner.run(&argv) {
                let text = format!("{err:#}");
                if text.contains("Specified qdisc kind is unknown") || text.contains("Unknown qdisc") {
                    if let Some(kind) = argv.iter().find(|w| ["netem", "htb", "pfifo"].contains(&w.as_str())) {
                        return Err(anyhow::Error::new(MissingQdisc::new(kind, runner.place())).context(format!("shaping {dev} as {e}")));
                    }
                }
                return Err(err.context(format!("shaping {dev} on {} as {e}", runner.place())));
            }
        }
        let applied = read_back(runner, dev)?;
        let limit = (!e.is_none()).then(|| queue_limit(e));
        applied.check(e, limit).map_err(|m| anyhow!("the shape on {dev} on {} is not what was asked: {m}", runner.place()))?;
        Ok(applied)
    })();
    if result.is_err() {
        let _ = clear(runner, dev);
    }
    result
}

/// Shapes both ends of a link: `near`'s interface with `shape`'s near egress and
/// `far`'s with the far one ([`LinkShape::egress`]). If the far end fails, the
/// near one is cleared again. Returns what each end reads back, near first.
pub fn apply_link(near: (&dyn Runner, &str), far: (&dyn Runner, &str), shape: &LinkShape) -> Result<[AppliedShape; 2]> {
    let n = apply(near.0, near.1, &shape.egress(End::Near))?;
    match apply(far.0, far.1, &shape.egress(End::Far)) {
        Ok(f) => Ok([n, f]),
        Err(e) => {
            let _ = clear(near.0, near.1);
            Err(e)
        }
    }
}

/// Removes any shaping from `dev`'s egress (deletes its root qdisc; the kernel
/// puts its default back). Nothing to remove is not an error.
pub fn clear(runner: &dyn Runner, dev: &str) -> Result<()> {
    match runner.run(&words(&["tc", "qdisc", "del", "dev", dev, "root"])) {
        Ok(_) => Ok(()),
        // The default root (noqueue, pfifo_fast, mq …) cannot be deleted: already clear.
        Err(e) if format!("{e:#}").contains("handle of zero") || format!("{e:#}").contains("No such file or directory") => Ok(()),
        Err(e) => Err(e.context(format!("clearing the shaping of {dev} on {}", runner.place()))),
    }
}

/// `tc -s qdisc show dev DEV`: every qdisc with its counters, for the record.
pub fn show(runner: &dyn Runner, dev: &str) -> Result<String> {
    runner.run(&words(&["tc", "-s", "qdisc", "show", "dev", dev]))
}

/// `tc -s class show dev DEV`: htb's class with its counters (what went through
/// the rate limit).
pub fn show_classes(runner: &dyn Runner, dev: &str) -> Result<String> {
    runner.run(&words(&["tc", "-s", "class", "show", "dev", dev]))
}

/// What `dev`'s egress is under now, from `tc qdisc show` and `tc class show`.
pub fn read_back(runner: &dyn Runner, dev: &str) -> Result<AppliedShape> {
    let qdiscs = runner.run(&words(&["tc", "qdisc", "show", "dev", dev]))?;
    let classes = runner.run(&words(&["tc", "class", "show", "dev", dev]))?;
    AppliedShape::parse(&qdiscs, &classes).with_context(|| format!("reading back the shaping of {dev} on {}", runner.place()))
}

/// One end's traffic-control state for the record: taken before a run and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TcStats {
    pub place: String,
    pub dev: String,
    /// `tc -s qdisc show dev DEV`.
    pub qdiscs: String,
    /// `tc -s class show dev DEV`.
    pub classes: String,
}

/// `dev`'s qdiscs and classes with their counters now.
pub fn stats(runner: &dyn Runner, dev: &str) -> Result<TcStats> {
    Ok(TcStats { place: runner.place(), dev: dev.into(), qdiscs: show(runner, dev)?, classes: show_classes(runner, dev)? })
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn tc_and_ip_are_found_in_sbin_when_path_lacks_it() {
        assert_eq!(program_path("ip", Some("/usr/sbin:/usr/bin".into())), std::path::PathBuf::from("ip"), "on PATH: left to PATH");
        assert_eq!(program_path("ip", Some("/nowhere".into())), std::path::PathBuf::from("/usr/sbin/ip"));
        assert_eq!(program_path("ip", None), std::path::PathBuf::from("/usr/sbin/ip"));
        assert_eq!(program_path("no-such-tool", Some("/nowhere".into())), std::path::PathBuf::from("no-such-tool"), "not found: the error names it");
    }

    fn egress(s: &str, end: End) -> Egress {
        s.parse::<LinkShape>().unwrap().egress(end)
    }

    fn text(cmds: &[Vec<String>]) -> Vec<String> {
        cmds.iter().map(|c| c.join(" ")).collect()
    }

    #[test]
    fn rate_and_netem_under_htb() {
        let e = egress("rate=100Mbit,rtt=40ms,jitter=2ms,loss=0.5%", End::Near);
        assert_eq!(
            text(&commands("mbl0", &e)),
            [
                "tc qdisc add dev mbl0 root handle 1: htb default 1",
                "tc class add dev mbl0 parent 1: classid 1:1 htb rate 100000000bit ceil 100000000bit burst 12500 cburst 12500 quantum 200000",
                // 12.5 MB/s × (20 + 1 + 40) ms = 762500 B = 509 packets: netem's 1000.
                "tc qdisc add dev mbl0 parent 1:1 handle 10: netem limit 1000 delay 20000us 1000us loss 0.5%",
            ]
        );
    }

    #[test]
    fn rate_alone_is_htb_with_a_pfifo() {
        assert_eq!(
            text(&commands("veth1", &egress("rate=8Mbit", End::Far))),
            [
                "tc qdisc add dev veth1 root handle 1: htb default 1",
                "tc class add dev veth1 parent 1: classid 1:1 htb rate 8000000bit ceil 8000000bit burst 3028 cburst 3028 quantum 100000",
                "tc qdisc add dev veth1 parent 1:1 handle 10: pfifo limit 1000",
            ]
        );
    }

    #[test]
    fn netem_alone_is_the_root() {
        assert_eq!(text(&commands("eth1", &egress("rtt=40ms", End::Near))), ["tc qdisc add dev eth1 root handle 10: netem limit 50000 delay 20000us"]);
        assert_eq!(text(&commands("eth1", &egress("loss=100%", End::Far))), ["tc qdisc add dev eth1 root handle 10: netem limit 1000 loss 100%"]);
        // The far end takes the odd microsecond.
        assert_eq!(text(&commands("eth1", &egress("rtt=1.001ms,jitter=0.003ms", End::Far))), ["tc qdisc add dev eth1 root handle 10: netem limit 1254 delay 501us 2us"]);
        assert!(commands("eth1", &LinkShape::none().egress(End::Near)).is_empty());
    }

    #[test]
    fn the_queue_holds_the_delay_line_and_a_round_trip() {
        // 1 Gbit/s, 100 ms rtt, 10 ms jitter: 125 MB/s × (50 + 5 + 100) ms = 19.375 MB = 12917 packets.
        assert_eq!(queue_limit(&egress("rate=1Gbit,rtt=100ms,jitter=10ms", End::Near)), 12_917);
        // Small products keep netem's default.
        assert_eq!(queue_limit(&egress("rate=8Mbit,rtt=40ms", End::Near)), 1000);
        // No rate: 10 Gbit/s; 20 ms rtt = 1.25 GB/s × 30 ms = 25000 packets.
        assert_eq!(queue_limit(&egress("rtt=20ms", End::Near)), 25_000);
        assert_eq!(queue_limit(&egress("rate=8Tbit,rtt=10s", End::Near)), MAX_LIMIT);
        assert_eq!(burst_bytes(1), 3028);
        assert_eq!(burst_bytes(1_250_000_000), 1_250_000);
    }

    /// Answers each command from a script and records what ran.
    struct Scripted {
        ran: RefCell<Vec<String>>,
        answer: Box<dyn Fn(&str) -> Result<String>>,
    }

    impl Runner for Scripted {
        fn run(&self, argv: &[String]) -> Result<String> {
            let line = argv.join(" ");
            self.ran.borrow_mut().push(line.clone());
            (self.answer)(&line)
        }
        fn place(&self) -> String {
            "test host".into()
        }
    }

    fn scripted(answer: impl Fn(&str) -> Result<String> + 'static) -> Scripted {
        Scripted { ran: RefCell::new(Vec::new()), answer: Box::new(answer) }
    }

    #[test]
    fn a_kernel_without_netem_is_named_and_nothing_is_left() {
        let r = scripted(|line| {
            if line.contains("netem") {
                bail!("`{line}` failed on test host (exit status: 2): Error: Specified qdisc kind is unknown.")
            } else if line.contains("del") {
                bail!("Error: Cannot delete qdisc with handle of zero.")
            } else {
                Ok(String::new())
            }
        });
        let err = apply(&r, "mbl0", &egress("rate=8Mbit,rtt=40ms", End::Near)).unwrap_err();
        let missing = err.downcast_ref::<MissingQdisc>().expect("a MissingQdisc");
        assert_eq!((missing.kind.as_str(), missing.place.as_str()), ("netem", "test host"));
        let msg = format!("{err:#}");
        assert!(msg.contains("shaping mbl0 as rate=8Mbit,delay=20ms") && msg.contains("modprobe sch_netem") && msg.contains("CONFIG_NET_SCH_NETEM"), "{msg}");
        // Cleared first, htb went on, netem failed, cleared again.
        let ran = r.ran.borrow();
        assert_eq!(ran.first().map(String::as_str), Some("tc qdisc del dev mbl0 root"));
        assert_eq!(ran.last().map(String::as_str), Some("tc qdisc del dev mbl0 root"));
        assert_eq!(ran.len(), 5, "{ran:?}");
    }

    #[test]
    fn a_shape_that_does_not_read_back_is_an_error_naming_both() {
        // tc accepts the commands but the kernel shows another rate.
        let r = scripted(|line| match line {
            "tc qdisc show dev d0" => Ok("qdisc htb 1: root refcnt 3 r2q 10 default 0x1\nqdisc pfifo 10: parent 1:1 limit 1000p\n".into()),
            "tc class show dev d0" => Ok("class htb 1:1 root leaf 10: prio 0 rate 4Mbit ceil 4Mbit burst 3028b cburst 3028b\n".into()),
            _ => Ok(String::new()),
        });
        let err = format!("{:#}", apply(&r, "d0", &egress("rate=8Mbit", End::Near)).unwrap_err());
        assert!(err.contains("asked for rate=8Mbit,limit=1000, tc reads back rate=4000000bit,limit=1000 (differs in: rate)"), "{err}");
        assert_eq!(r.ran.borrow().last().map(String::as_str), Some("tc qdisc del dev d0 root"));
    }

    #[test]
    fn clearing_a_clear_interface_is_fine_and_a_missing_one_is_not() {
        let r = scripted(|_| bail!("Error: Cannot delete qdisc with handle of zero."));
        assert!(clear(&r, "d0").is_ok());
        let r = scripted(|_| bail!("Cannot find device \"d9\""));
        assert!(format!("{:#}", clear(&r, "d9").unwrap_err()).contains("clearing the shaping of d9 on test host"));
    }

    #[test]
    fn a_missing_program_says_what_to_install() {
        let l = Local { netns: None, place: "this host".into() };
        let err = l.run(&["migbench-no-such-tc".into()]).unwrap_err().to_string();
        assert!(err.contains("is not installed on this host: install iproute2"), "{err}");
        assert!(l.run(&[]).is_err());
    }
}
