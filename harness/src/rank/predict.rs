//! The migration cost model: a migration's total time, downtime, rounds and bytes
//! predicted from a few numbers about the VM and the link, without migrating.
//!
//! Pre-copy is the geometric-series model of Clark et al. (NSDI 2005) and Akoush et
//! al. (MASCOTS 2010). With B the bandwidth limit (bytes/s), D the dirty rate
//! (bytes/s), L the downtime limit (s) and C = min(writable working set, RAM):
//!
//! ```text
//! V0 = first_round_bytes (default RAM)      t_i = V_i / B
//! V(i+1) = min(D · t_i, C)                  stop once V(i+1) / B ≤ L
//! downtime = (V_last + device_state) / B    total = setup + Σ t_i + downtime
//! ```
//!
//! so while C does not bind, V_k = (D/B)^k · V0 and the ratio D/B decides
//! everything: below 1 the rounds shrink geometrically, at or above 1 they never do.
//! What the model leaves out, so what to suspect when it disagrees with a
//! measurement: the dirty rate and the bandwidth are constant; every byte dirtied
//! in a round is a new one until the working set is full (so D·t overestimates a
//! guest that rewrites a few hot pages, unless `wws_bytes` says so); nothing is
//! compressed; auto-converge never throttles the guest; the guest dirties
//! nothing during stop-and-copy; and QEMU's own threshold
//! (`threshold_size` = measured bandwidth × downtime-limit) compares all pending
//! state, not RAM alone, against it.
//!
//! Everything here is a pure function of its arguments: no I/O, no clock.

use crate::migration::strategy::CostModel;
use serde::{Deserialize, Serialize};

const MIB: f64 = 1_048_576.0;

/// `precopy` never simulates more live rounds than this, whatever `max_rounds`
/// says: `per_round` keeps one entry per round and must stay small (16 MB at
/// this cap), and no real migration runs a million rounds.
pub const ROUND_CAP: u32 = 1_000_000;

/// What the model needs to know about a VM.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VmProfile {
    /// Guest RAM, bytes.
    pub ram_bytes: u64,
    /// Bytes the first pre-copy round really sends. QEMU sends zero pages as a flag
    /// of a few bytes, so an idle guest's first round is its non-zero memory, not
    /// its RAM; `None` = all of RAM. Not capped at RAM: per-page headers can make
    /// a measured first round slightly larger.
    pub first_round_bytes: Option<u64>,
    /// How fast the guest dirties memory, bytes/s (from QEMU's `calc-dirty-rate`:
    /// MB/s × 2^20). Must be ≥ 0; +∞ means "dirties everything it can".
    pub dirty_rate_bytes_per_s: f64,
    /// The writable working set, bytes: a round can never find more dirty bytes
    /// than this (a guest rewriting the same 64 MiB dirties at most 64 MiB however
    /// long a round lasts). `None` = unbounded (RAM).
    pub wws_bytes: Option<u64>,
}

/// The migration's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinkProfile {
    /// The bandwidth limit, bytes/s (QEMU `max-bandwidth`). Must be positive and
    /// finite.
    pub bytes_per_s: f64,
    /// QEMU's `downtime-limit`, seconds: pre-copy stops and copies the rest once
    /// the remaining dirty data would take no longer than this.
    pub downtime_limit_s: f64,
    /// Set-up before the first byte is sent, seconds.
    pub setup_s: f64,
    /// The device state sent in stop-and-copy (post-copy: before the destination
    /// resumes), bytes.
    pub device_state_bytes: u64,
    /// A pre-copy that has sent this many live rounds (stop-and-copy not counted)
    /// and still has too much left is declared non-converging (QEMU itself would go
    /// on forever without auto-converge). So a converging prediction has at most
    /// `max_rounds + 1` rounds. Values above [`ROUND_CAP`] act as `ROUND_CAP`.
    pub max_rounds: u32,
}

/// A predicted migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The model's name ([`CostModel::name`]): "precopy" or "postcopy".
    pub strategy: String,
    pub converges: bool,
    /// Seconds from the start (set-up included) to the destination running with
    /// all of its memory. `None` when it does not converge.
    pub total_s: Option<f64>,
    /// Seconds the guest is stopped. `None` when it does not converge.
    pub downtime_s: Option<f64>,
    /// Pre-copy: rounds including the final stop-and-copy; when it does not
    /// converge, the live rounds simulated before giving up. QEMU's
    /// `dirty-sync-count` is `rounds + 1` for a converging pre-copy: it syncs the
    /// dirty bitmap once at set-up (everything dirty), once at the end of each live
    /// round (the sync that finds V(i+1)) and once more in stop-and-copy
    /// (`ram_save_complete`). Post-copy: 1.
    pub rounds: u32,
    /// Bytes sent in all, device state included: the sum of `per_round`'s bytes.
    /// `None` when it does not converge.
    pub bytes: Option<u64>,
    /// One sentence: why it converges or not, with the numbers.
    pub reason: String,
    /// Per round: (bytes sent, seconds). For pre-copy the last entry of a
    /// converging prediction is the stop-and-copy, device state included.
    pub per_round: Vec<(u64, f64)>,
}

/// How a simulated pre-copy ended.
enum Verdict {
    /// The model cannot run on this input; the string says which field and why.
    Invalid(String),
    /// Stop-and-copy of `left` bytes (plus device state) after the live rounds;
    /// `capped` when the working set (or RAM), not the dirty rate, set `left`.
    Converged { left: f64, capped: bool },
    /// A round found at least as much to send as the round before. V(i+1) =
    /// min(D·V_i/B, C) is non-decreasing in V_i, so from here the sequence never
    /// decreases and the rest of max_rounds would change nothing.
    Stuck { left: f64, capped: bool },
    /// `max_rounds` live rounds sent and `left` bytes still too many.
    OutOfRounds { left: f64 },
    /// A zero downtime limit needs a round that finds nothing dirty; in exact
    /// arithmetic a dirtying guest never leaves one (floats would eventually
    /// underflow to 0 and "converge" spuriously, hence a verdict of its own).
    NeverClean,
}

struct Run {
    verdict: Verdict,
    /// Live rounds sent.
    live: u32,
    /// Their seconds and (rounded) bytes.
    live_s: f64,
    live_bytes: u64,
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / MIB)
}

fn mib_s(rate: f64) -> String {
    format!("{:.1} MiB/s", rate / MIB)
}

/// Model bytes are fractional (D·t need not be whole); reported bytes are not.
/// `as` saturates, so this cannot panic.
fn whole(bytes: f64) -> u64 {
    bytes.round() as u64
}

/// Why the link makes any prediction impossible, if it does.
fn bad_link(link: &LinkProfile) -> Option<String> {
    let b = link.bytes_per_s;
    if !(b.is_finite() && b > 0.0) {
        return Some(format!("the bandwidth limit ({b} B/s) is not a positive finite rate, so nothing can be sent"));
    }
    let s = link.setup_s;
    if !(s.is_finite() && s >= 0.0) {
        return Some(format!("the set-up time ({s} s) is not a finite non-negative number of seconds"));
    }
    None
}

/// Why pre-copy in particular cannot be modelled, if it cannot.
fn bad_precopy(vm: &VmProfile, link: &LinkProfile) -> Option<String> {
    if let Some(why) = bad_link(link) {
        return Some(why);
    }
    let d = vm.dirty_rate_bytes_per_s;
    // +∞ is allowed: it means every round finds its whole cap dirty.
    if d.is_nan() || d < 0.0 {
        return Some(format!("the dirty rate ({d} B/s) is not a non-negative rate"));
    }
    let l = link.downtime_limit_s;
    if l.is_nan() || l < 0.0 {
        return Some(format!("the downtime limit ({l} s) is not a non-negative number of seconds"));
    }
    None
}

/// Runs the pre-copy rounds. `per_round`, when given, receives each live round's
/// (bytes, seconds); the stop-and-copy is left to the caller. `max_convergent_dirty_rate`
/// passes `None` so that its many calls build no vectors, but the verdict is the
/// very one `precopy` reports.
fn simulate(vm: &VmProfile, link: &LinkProfile, mut per_round: Option<&mut Vec<(u64, f64)>>) -> Run {
    let mut run = Run { verdict: Verdict::NeverClean, live: 0, live_s: 0.0, live_bytes: 0 };
    if let Some(why) = bad_precopy(vm, link) {
        run.verdict = Verdict::Invalid(why);
        return run;
    }
    let (b, d, limit) = (link.bytes_per_s, vm.dirty_rate_bytes_per_s, link.downtime_limit_s);
    let ram = vm.ram_bytes as f64;
    let cap = vm.wws_bytes.map_or(ram, |w| (w as f64).min(ram));
    let mut v = vm.first_round_bytes.map_or(ram, |f| f as f64);
    if limit == 0.0 && d > 0.0 && v > 0.0 && cap > 0.0 {
        run.verdict = Verdict::NeverClean;
        return run;
    }
    let max_live = link.max_rounds.min(ROUND_CAP);
    loop {
        if run.live == max_live {
            run.verdict = Verdict::OutOfRounds { left: v };
            return run;
        }
        let t = v / b;
        if let Some(rounds) = per_round.as_deref_mut() {
            rounds.push((whole(v), t));
        }
        run.live += 1;
        run.live_s += t;
        run.live_bytes = run.live_bytes.saturating_add(whole(v));
        // t = 0 is guarded so that an infinite dirty rate times an empty round is
        // 0 dirty bytes, not NaN.
        let dirtied = if t > 0.0 { d * t } else { 0.0 };
        let next = dirtied.min(cap);
        let capped = dirtied > cap;
        if next / b <= limit {
            run.verdict = Verdict::Converged { left: next, capped };
            return run;
        }
        if next >= v {
            run.verdict = Verdict::Stuck { left: next, capped };
            return run;
        }
        v = next;
    }
}

fn not_converging(strategy: &str, rounds: u32, reason: String, per_round: Vec<(u64, f64)>) -> Prediction {
    Prediction {
        strategy: strategy.to_string(),
        converges: false,
        total_s: None,
        downtime_s: None,
        rounds,
        bytes: None,
        reason,
        per_round,
    }
}

/// The prediction of the model a strategy names (`Strategy::cost_model`).
pub fn with_model(model: CostModel, vm: &VmProfile, link: &LinkProfile) -> Prediction {
    match model {
        CostModel::Precopy => precopy(vm, link),
        CostModel::Postcopy => postcopy(vm, link),
    }
}

/// Predicts a pre-copy migration (see the module doc for the model). Never panics:
/// input the model cannot run on (bandwidth ≤ 0, NaN or infinite; a negative or
/// NaN dirty rate, downtime limit or set-up time) gives a non-converging
/// prediction with 0 rounds whose `reason` names the field.
pub fn precopy(vm: &VmProfile, link: &LinkProfile) -> Prediction {
    let mut per_round = Vec::new();
    let run = simulate(vm, link, Some(&mut per_round));
    let (b, d, limit) = (link.bytes_per_s, vm.dirty_rate_bytes_per_s, link.downtime_limit_s);
    let versus = format!("dirties {} against a {} link (ratio {:.2})", mib_s(d), mib_s(b), d / b);
    let cap_is_wws = vm.wws_bytes.is_some_and(|w| w < vm.ram_bytes);
    let cap_name = if cap_is_wws { "its working set" } else { "all of its RAM" };
    let reason = match run.verdict {
        Verdict::Converged { left, capped } => {
            let device = link.device_state_bytes;
            let last = whole(left).saturating_add(device);
            let downtime_s = (left + device as f64) / b;
            per_round.push((last, downtime_s));
            let reason = if d == 0.0 {
                format!(
                    "the guest dirties nothing, so one round of {} leaves only the device state ({}) for a {downtime_s:.2} s stop-and-copy",
                    mib(run.live_bytes as f64),
                    mib(device as f64)
                )
            } else if capped {
                format!(
                    "{versus}, but {cap_name} ({}) takes {:.2} s, within the {limit:.2} s downtime limit, so it stops after {} live round(s)",
                    mib(left),
                    left / b,
                    run.live
                )
            } else {
                format!(
                    "{versus}: after {} live round(s) the {} left takes {:.2} s, within the {limit:.2} s downtime limit",
                    run.live,
                    mib(left),
                    left / b
                )
            };
            return Prediction {
                strategy: CostModel::Precopy.name().to_string(),
                converges: true,
                total_s: Some(link.setup_s + run.live_s + downtime_s),
                downtime_s: Some(downtime_s),
                rounds: run.live + 1,
                bytes: Some(run.live_bytes.saturating_add(last)),
                reason,
                per_round,
            };
        }
        Verdict::Invalid(why) => why,
        Verdict::NeverClean => format!(
            "a 0 s downtime limit needs a round that finds nothing dirty, which a guest dirtying {} never leaves",
            mib_s(d)
        ),
        Verdict::Stuck { left, capped: true } if cap_is_wws => format!(
            "its working set ({}) takes {:.2} s per round, above the {limit:.2} s downtime limit, and it {versus}, enough to refill it every round",
            mib(left),
            left / b
        ),
        Verdict::Stuck { .. } => format!("{versus}: every round leaves at least as much to send as the last"),
        Verdict::OutOfRounds { .. } if run.live == 0 => {
            "max_rounds is 0, so not even the first round may be sent".to_string()
        }
        Verdict::OutOfRounds { left } => format!(
            "{versus}: after {} rounds {} is still dirty, which takes {:.2} s, above the {limit:.2} s downtime limit",
            run.live,
            mib(left),
            left / b
        ),
    };
    not_converging(CostModel::Precopy.name(), run.live, reason, per_round)
}

/// Predicts a post-copy migration (thesis Table 1.1: total = RAM / link +
/// overhead, worst downtime = VM state time). The guest stops only to send the
/// device state, `downtime = device_state / B`; then it runs on the destination
/// while its memory follows, each page once whatever the dirty rate, so
/// `total = setup + downtime + V0 / B` with V0 = first_round_bytes (default RAM).
/// It converges for any dirty rate; only a link that cannot send (bandwidth ≤ 0,
/// NaN or infinite) or a bad set-up time make it non-converging.
pub fn postcopy(vm: &VmProfile, link: &LinkProfile) -> Prediction {
    if let Some(why) = bad_link(link) {
        return not_converging(CostModel::Postcopy.name(), 0, why, Vec::new());
    }
    let b = link.bytes_per_s;
    let memory = vm.first_round_bytes.unwrap_or(vm.ram_bytes);
    let device = link.device_state_bytes;
    let downtime_s = device as f64 / b;
    let memory_s = memory as f64 / b;
    let bytes = memory.saturating_add(device);
    Prediction {
        strategy: CostModel::Postcopy.name().to_string(),
        converges: true,
        total_s: Some(link.setup_s + downtime_s + memory_s),
        downtime_s: Some(downtime_s),
        rounds: 1,
        bytes: Some(bytes),
        reason: format!(
            "post-copy sends each page once whatever the dirty rate: {} at {} takes {memory_s:.2} s after a {downtime_s:.2} s pause for the device state ({})",
            mib(memory as f64),
            mib_s(b),
            mib(device as f64)
        ),
        per_round: vec![(bytes, downtime_s + memory_s)],
    }
}

/// The "worst downtime" rows of the thesis's Table 1.1, seconds, as
/// `(pre-copy, post-copy)`:
/// - pre-copy's worst case is all of RAM dirty when it stops, so the whole RAM
///   goes in stop-and-copy with the VM state: `(device_state + RAM) / B`;
/// - post-copy stops only for the VM state, pages follow after the resume:
///   `device_state / B`.
///
/// RAM here is `ram_bytes`, not `first_round_bytes`: the worst case is every page
/// dirty with non-zero data. Neither row depends on the dirty rate, the downtime
/// limit or set-up. A bandwidth that is not positive and finite gives (+∞, +∞).
pub fn table_1_1(vm: &VmProfile, link: &LinkProfile) -> (f64, f64) {
    let b = link.bytes_per_s;
    if !(b.is_finite() && b > 0.0) {
        return (f64::INFINITY, f64::INFINITY);
    }
    let state = link.device_state_bytes as f64;
    ((state + vm.ram_bytes as f64) / b, state / b)
}

/// The highest dirty rate, bytes/s, at which `precopy` still converges for this VM
/// and link within `max_rounds`, for capacity planning. Every other field of `vm`
/// is kept.
///
/// Each V_k is non-decreasing in D, so convergence is monotone in D and bisection
/// finds the boundary (to a relative 1e-12; the rate returned converges). Without
/// a binding cap the boundary has a closed form: pre-copy converges iff
/// (D/B)^N · V0 ≤ L·B for N = min(max_rounds, ROUND_CAP), i.e.
/// `D* = B · (L·B / V0)^(1/N)`, which tends to B as N grows: with unlimited
/// rounds any ratio below 1 converges. A working set C with V0 > C > L·B and
/// D·t0 ≥ C moves it to `B · (L·B / C)^(1/(N−1))`.
///
/// Returns +∞ when every rate converges (e.g. min(WWS, RAM) ≤ L·B, or nothing to
/// send) and NaN when none does, not even 0 (invalid link, `max_rounds` 0). It is
/// 0 when only an idle guest converges (a 0 s downtime limit).
pub fn max_convergent_dirty_rate(vm: &VmProfile, link: &LinkProfile) -> f64 {
    let converges = |d: f64| {
        let vm = VmProfile { dirty_rate_bytes_per_s: d, ..*vm };
        matches!(simulate(&vm, link, None).verdict, Verdict::Converged { .. })
    };
    if !converges(0.0) {
        return f64::NAN;
    }
    if converges(f64::INFINITY) {
        return f64::INFINITY;
    }
    // converges(0) implies a positive finite bandwidth, a sane first bracket.
    let (mut lo, mut hi) = (0.0, link.bytes_per_s);
    // A finite D large enough that D·t ≥ C every round behaves exactly as +∞,
    // which does not converge, so this ends long before hi overflows.
    while converges(hi) {
        lo = hi;
        hi *= 2.0;
        if !hi.is_finite() {
            return f64::INFINITY;
        }
    }
    for _ in 0..200 {
        let mid = lo + (hi - lo) / 2.0;
        if mid <= lo || mid >= hi || hi - lo <= hi * 1e-12 {
            break;
        }
        if converges(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Kendall's tau-b between two rankings given as scores (item i scored `a[i]` in
/// one and `b[i]` in the other; only the order of scores matters, so ranks,
/// times or positions all work as long as both sides sort the same way):
///
/// `tau_b = (concordant − discordant) / sqrt((n0 − ties_a) · (n0 − ties_b))`
///
/// with n0 = n(n−1)/2 pairs and ties_a, ties_b the pairs tied in `a`, in `b` (a
/// pair tied in both counts in both and is neither concordant nor discordant).
/// 1 = same order, −1 = reversed. `None` for fewer than 2 items, slices of
/// different lengths, a NaN score, or one side all ties (the denominator is 0).
/// O(n²), meant for rankings of a few dozen VMs.
pub fn kendall_tau(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len();
    if n < 2 || b.len() != n || a.iter().chain(b).any(|x| x.is_nan()) {
        return None;
    }
    let sign = |x: f64, y: f64| -> i64 {
        if x < y {
            1
        } else if x > y {
            -1
        } else {
            0
        }
    };
    let (mut score, mut ties_a, mut ties_b) = (0i64, 0u64, 0u64);
    for (i, (&ai, &bi)) in a.iter().zip(b).enumerate() {
        for (&aj, &bj) in a[i + 1..].iter().zip(&b[i + 1..]) {
            let (sa, sb) = (sign(ai, aj), sign(bi, bj));
            ties_a += u64::from(sa == 0);
            ties_b += u64::from(sb == 0);
            score += sa * sb;
        }
    }
    let n0 = (n as u64) * (n as u64 - 1) / 2;
    if ties_a == n0 || ties_b == n0 {
        return None;
    }
    Some(score as f64 / (((n0 - ties_a) as f64) * ((n0 - ties_b) as f64)).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    const MBF: f64 = MB as f64;

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= 1e-9 * want.abs().max(1.0)
    }

    #[track_caller]
    fn assert_close(got: Option<f64>, want: f64) {
        let got = got.expect("a value");
        assert!(close(got, want), "got {got}, want {want}");
    }

    fn vm(ram: u64, dirty_mib_s: f64) -> VmProfile {
        VmProfile { ram_bytes: ram, first_round_bytes: None, dirty_rate_bytes_per_s: dirty_mib_s * MBF, wws_bytes: None }
    }

    fn link(mib_s: f64, limit_s: f64) -> LinkProfile {
        LinkProfile { bytes_per_s: mib_s * MBF, downtime_limit_s: limit_s, setup_s: 0.0, device_state_bytes: 0, max_rounds: 30 }
    }

    #[test]
    fn three_rounds_by_hand() {
        // 1 GiB guest dirtying 10 MiB/s over a 100 MiB/s link, limit 300 ms,
        // 0.5 s set-up, 2 MiB of device state. Ratio 0.1: each round is a tenth.
        let vm = vm(GIB, 10.0);
        let link = LinkProfile { setup_s: 0.5, device_state_bytes: 2 * MB, ..link(100.0, 0.3) };
        let p = precopy(&vm, &link);
        assert!(p.converges, "{p:?}");
        assert_eq!(p.strategy, "precopy");
        // round 0: 1024 MiB / 100 MiB/s = 10.24 s
        // round 1: 10 MiB/s × 10.24 s = 102.4 MiB = 107374182.4 B -> 107374182; 1.024 s > 0.3 s, go on
        // then:    10 MiB/s × 1.024 s = 10.24 MiB = 10737418.24 B; 0.1024 s ≤ 0.3 s, stop
        // stop-and-copy: 10737418 + 2097152 = 12834570 B; (10.24 + 2) MiB / 100 MiB/s = 0.1224 s
        assert_eq!(p.rounds, 3);
        assert_eq!(p.per_round.len(), 3);
        assert_eq!(p.per_round[0].0, GIB);
        assert!(close(p.per_round[0].1, 10.24));
        assert_eq!(p.per_round[1].0, 107_374_182);
        assert!(close(p.per_round[1].1, 1.024));
        assert_eq!(p.per_round[2].0, 12_834_570);
        assert!(close(p.per_round[2].1, 0.1224));
        assert_close(p.downtime_s, 0.1224);
        // 0.5 + 10.24 + 1.024 + 0.1224 = 11.8864 s
        assert_close(p.total_s, 11.8864);
        // 1073741824 + 107374182 + 12834570 = 1193950576 B
        assert_eq!(p.bytes, Some(1_193_950_576));
        assert_eq!(p.bytes, Some(p.per_round.iter().map(|r| r.0).sum()));
        assert!(p.reason.contains("ratio 0.10") && p.reason.contains("2 live round(s)"), "{}", p.reason);
    }

    #[test]
    fn first_round_bytes_replaces_ram_in_round_0_only() {
        // 1 GiB guest with 200 MiB non-zero, 10 MiB/s over 100 MiB/s, limit 0.3 s:
        // round 0: 200 MiB in 2 s; then 10 × 2 = 20 MiB, 0.2 s ≤ 0.3 s: stop.
        let vm = VmProfile { first_round_bytes: Some(200 * MB), ..vm(GIB, 10.0) };
        let p = precopy(&vm, &link(100.0, 0.3));
        assert_eq!(p.rounds, 2);
        assert_close(p.downtime_s, 0.2);
        assert_close(p.total_s, 2.2);
        assert_eq!(p.bytes, Some(220 * MB));
    }

    #[test]
    fn ratio_above_one_never_converges() {
        // 50 MiB/s against 12.5 MiB/s: round 0 sends 1024 MiB in 81.92 s, during
        // which 4096 MiB would be dirtied, capped at RAM = 1024 MiB: no progress.
        let p = precopy(&vm(GIB, 50.0), &link(12.5, 0.3));
        assert!(!p.converges);
        assert_eq!((p.total_s, p.downtime_s, p.bytes), (None, None, None));
        assert_eq!(p.rounds, 1);
        assert_eq!(p.per_round.len(), 1);
        assert!(close(p.per_round[0].1, 81.92));
        assert!(p.reason.contains("50.0 MiB/s against a 12.5 MiB/s link (ratio 4.00)"), "{}", p.reason);
        assert!(p.reason.contains("every round leaves"), "{}", p.reason);
    }

    #[test]
    fn working_set_above_the_limit_never_converges() {
        // Same guest with a 64 MiB working set: round 1 sends 64 MiB in
        // 64 / 12.5 = 5.12 s, during which 256 MiB would be dirtied, capped at 64.
        let vm = VmProfile { wws_bytes: Some(64 * MB), ..vm(GIB, 50.0) };
        let p = precopy(&vm, &link(12.5, 0.3));
        assert!(!p.converges);
        assert_eq!(p.rounds, 2);
        assert_eq!(p.per_round[1].0, 64 * MB);
        assert!(close(p.per_round[1].1, 5.12));
        assert!(p.reason.contains("working set (64.0 MiB) takes 5.12 s per round, above the 0.30 s"), "{}", p.reason);
        assert!(p.reason.contains("ratio 4.00"), "{}", p.reason);
    }

    #[test]
    fn max_rounds_cuts_a_slow_convergence() {
        // Ratio 0.9, 1024 MiB, L·B = 0.3 × 100 = 30 MiB: V_k = 1024 × 0.9^k MiB.
        // 0.9^33 × 1024 = 31.64 MiB > 30; 0.9^34 × 1024 = 28.48 MiB ≤ 30.
        // So 34 live rounds are needed, 35 rounds with stop-and-copy.
        let vm = vm(GIB, 90.0);
        let p = precopy(&vm, &LinkProfile { max_rounds: 33, ..link(100.0, 0.3) });
        assert!(!p.converges);
        assert_eq!(p.rounds, 33);
        assert!(p.reason.contains("after 33 rounds 31.6 MiB is still dirty"), "{}", p.reason);
        let p = precopy(&vm, &LinkProfile { max_rounds: 34, ..link(100.0, 0.3) });
        assert!(p.converges);
        assert_eq!(p.rounds, 35);
        // downtime 28.48 MiB / 100 MiB/s
        assert_close(p.downtime_s, 1024.0 * 0.9f64.powi(34) / 100.0);
    }

    #[test]
    fn working_set_makes_a_fast_dirtier_converge() {
        // 400 MiB/s against 100 MiB/s (ratio 4), but only 16 MiB is ever rewritten:
        // round 0: 10.24 s; then min(400 × 10.24, 16) = 16 MiB, 0.16 s ≤ 0.3 s: stop.
        let vm = VmProfile { wws_bytes: Some(16 * MB), ..vm(GIB, 400.0) };
        let p = precopy(&vm, &link(100.0, 0.3));
        assert!(p.converges, "{p:?}");
        assert_eq!(p.rounds, 2);
        assert_close(p.downtime_s, 0.16);
        // 10.24 + 0.16
        assert_close(p.total_s, 10.4);
        // 1024 + 16 MiB
        assert_eq!(p.bytes, Some(GIB + 16 * MB));
        assert!(p.reason.contains("ratio 4.00") && p.reason.contains("working set (16.0 MiB)"), "{}", p.reason);
    }

    #[test]
    fn idle_guest_is_one_round_and_the_device_state() {
        // 256 MiB non-zero at 100 MiB/s = 2.56 s; nothing dirtied; stop-and-copy of
        // 1 MiB device state = 0.01 s; total 1 + 2.56 + 0.01 = 3.57 s.
        let vm = VmProfile { first_round_bytes: Some(256 * MB), ..vm(4 * GIB, 0.0) };
        let link = LinkProfile { setup_s: 1.0, device_state_bytes: MB, ..link(100.0, 0.3) };
        let p = precopy(&vm, &link);
        assert!(p.converges);
        assert_eq!(p.rounds, 2);
        assert_eq!(p.per_round, vec![(256 * MB, 2.56), (MB, 0.01)]);
        assert_close(p.downtime_s, 0.01);
        assert_close(p.total_s, 3.57);
        assert_eq!(p.bytes, Some(257 * MB));
        assert!(p.reason.contains("dirties nothing"), "{}", p.reason);
        // Even a 0 s limit is met: the round after finds exactly nothing.
        assert!(precopy(&vm, &LinkProfile { downtime_limit_s: 0.0, ..link }).converges);
    }

    #[test]
    fn empty_guest() {
        let link = LinkProfile { device_state_bytes: MB, ..link(100.0, 0.3) };
        let p = precopy(&vm(0, 50.0), &link);
        assert!(p.converges);
        assert_eq!(p.per_round, vec![(0, 0.0), (MB, 0.01)]);
        assert_eq!(p.bytes, Some(MB));
        let p = postcopy(&vm(0, 50.0), &link);
        assert_close(p.total_s, 0.01);
    }

    #[test]
    fn zero_downtime_limit_with_a_dirtying_guest() {
        // Ratio 0.1 shrinks the rounds forever but never to nothing.
        let p = precopy(&vm(GIB, 10.0), &LinkProfile { max_rounds: u32::MAX, ..link(100.0, 0.0) });
        assert!(!p.converges);
        assert!(p.reason.contains("0 s downtime limit"), "{}", p.reason);
    }

    #[test]
    fn bad_input_never_panics() {
        let vm = vm(GIB, 10.0);
        for b in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let link = LinkProfile { bytes_per_s: b, ..link(100.0, 0.3) };
            let p = precopy(&vm, &link);
            assert!(!p.converges && p.rounds == 0 && p.per_round.is_empty(), "{p:?}");
            assert!(p.reason.contains("bandwidth"), "{}", p.reason);
            let p = postcopy(&vm, &link);
            assert!(!p.converges && p.reason.contains("bandwidth"), "{p:?}");
            assert_eq!(table_1_1(&vm, &link), (f64::INFINITY, f64::INFINITY));
            assert!(max_convergent_dirty_rate(&vm, &link).is_nan());
        }
        for d in [-1.0, f64::NAN] {
            let p = precopy(&VmProfile { dirty_rate_bytes_per_s: d, ..vm }, &link(100.0, 0.3));
            assert!(!p.converges && p.reason.contains("dirty rate"), "{p:?}");
        }
        for l in [-0.1, f64::NAN] {
            let p = precopy(&vm, &link(100.0, l));
            assert!(!p.converges && p.reason.contains("downtime limit"), "{p:?}");
        }
        let p = precopy(&vm, &LinkProfile { setup_s: f64::NAN, ..link(100.0, 0.3) });
        assert!(!p.converges && p.reason.contains("set-up"), "{p:?}");
        let p = precopy(&vm, &LinkProfile { max_rounds: 0, ..link(100.0, 0.3) });
        assert!(!p.converges && p.rounds == 0 && p.reason.contains("max_rounds is 0"), "{p:?}");
        // An infinite dirty rate is legal: every round finds its whole cap dirty.
        let p = precopy(&VmProfile { dirty_rate_bytes_per_s: f64::INFINITY, ..vm }, &link(100.0, 0.3));
        assert!(!p.converges && p.reason.contains("every round leaves"), "{p:?}");
    }

    #[test]
    fn huge_max_rounds_stays_bounded() {
        // Ratio 1 - 1e-9 would need ~3.5e9 rounds: the cap stops it at ROUND_CAP.
        let vm = VmProfile { dirty_rate_bytes_per_s: 100.0 * MBF * (1.0 - 1e-9), ..vm(GIB, 0.0) };
        let p = precopy(&vm, &LinkProfile { max_rounds: u32::MAX, ..link(100.0, 0.3) });
        assert!(!p.converges);
        assert_eq!(p.rounds, ROUND_CAP);
    }

    #[test]
    fn postcopy_by_hand() {
        // 4 GiB, 100 MiB/s, 5 MiB device state, 0.5 s set-up, dirtying far faster
        // than the link (irrelevant to post-copy).
        // downtime = 5 / 100 = 0.05 s; total = 0.5 + 0.05 + 4096 / 100 = 41.51 s.
        let vm = vm(4 * GIB, 1000.0);
        let link = LinkProfile { setup_s: 0.5, device_state_bytes: 5 * MB, ..link(100.0, 0.3) };
        let p = postcopy(&vm, &link);
        assert!(p.converges);
        assert_eq!(p.strategy, "postcopy");
        assert_eq!(p.rounds, 1);
        assert_close(p.downtime_s, 0.05);
        assert_close(p.total_s, 41.51);
        assert_eq!(p.bytes, Some(4 * GIB + 5 * MB));
        assert_eq!(p.per_round.len(), 1);
        assert!(close(p.per_round[0].1, 41.01));
        // With 1 GiB non-zero: 0.5 + 0.05 + 1024 / 100 = 10.79 s.
        let p = postcopy(&VmProfile { first_round_bytes: Some(GIB), ..vm }, &link);
        assert_close(p.total_s, 10.79);
        // Pre-copy of the same guest does not converge (ratio 10).
        assert!(!precopy(&vm, &link).converges);
    }

    #[test]
    fn table_1_1_worst_downtimes() {
        // pre-copy: (5 MiB + 4096 MiB) / 100 MiB/s = 41.01 s; post-copy: 5 / 100 = 0.05 s.
        let link = LinkProfile { device_state_bytes: 5 * MB, ..link(100.0, 0.3) };
        let (pre, post) = table_1_1(&VmProfile { first_round_bytes: Some(MB), ..vm(4 * GIB, 3.0) }, &link);
        assert!(close(pre, 41.01) && close(post, 0.05), "{pre} {post}");
        // Post-copy's worst downtime is what `postcopy` predicts.
        assert_close(postcopy(&vm(4 * GIB, 3.0), &link).downtime_s, post);
    }

    /// The rate returned converges and a hair above it does not.
    #[track_caller]
    fn assert_boundary(vm: &VmProfile, link: &LinkProfile, d: f64) {
        assert!(precopy(&VmProfile { dirty_rate_bytes_per_s: d, ..*vm }, link).converges, "{d} should converge");
        let above = d * (1.0 + 1e-9);
        assert!(!precopy(&VmProfile { dirty_rate_bytes_per_s: above, ..*vm }, link).converges, "{above} should not");
    }

    #[test]
    fn max_convergent_dirty_rate_matches_the_closed_form() {
        // V0 = 1024 MiB, B = 100 MiB/s, L·B = 30 MiB: D* = B · (30/1024)^(1/N).
        let vm = vm(GIB, 0.0);
        let bound = |n: u32| max_convergent_dirty_rate(&vm, &LinkProfile { max_rounds: n, ..link(100.0, 0.3) }) / MBF;
        // N = 1: 100 × 30 / 1024 = 2.9296875 MiB/s
        assert!((bound(1) - 2.929_687_5).abs() < 1e-6, "{}", bound(1));
        // N = 2: 100 × sqrt(0.029296875) = 17.1163 MiB/s
        assert!((bound(2) - 17.116_329).abs() < 1e-5, "{}", bound(2));
        // N = 30: 100 × exp(ln(0.029296875) / 30) = 100 × exp(-0.117676) = 88.898 MiB/s
        assert!((bound(30) - 88.898).abs() < 1e-3, "{}", bound(30));
        // More rounds tolerate more dirtying, and the bound creeps up on B.
        let bounds: Vec<f64> = [1, 2, 5, 30, 100, 10_000].into_iter().map(bound).collect();
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        // N = 10000: 100 × exp(-3.5303 / 10000) = 99.9647 MiB/s
        assert!((bounds[5] - 99.9647).abs() < 1e-3 && bounds[5] < 100.0, "{bounds:?}");
        let link30 = link(100.0, 0.3);
        assert_boundary(&vm, &link30, max_convergent_dirty_rate(&vm, &link30));
    }

    #[test]
    fn max_convergent_dirty_rate_with_a_working_set() {
        // C = 64 MiB binds from round 1 (D·t0 ≥ 64 MiB for any D near B), so
        // V_k = 64 · r^(k-1) and N = 30 needs 64 · r^29 ≤ 30:
        // r ≤ exp(ln(30/64) / 29) = exp(-0.026127) = 0.974211 -> 97.42 MiB/s,
        // above the 88.90 MiB/s without a working set.
        let vm = VmProfile { wws_bytes: Some(64 * MB), ..vm(GIB, 0.0) };
        let link = link(100.0, 0.3);
        let d = max_convergent_dirty_rate(&vm, &link);
        assert!((d / MBF - 97.4211).abs() < 1e-3, "{}", d / MBF);
        assert_boundary(&vm, &link, d);
        // A working set that fits in the downtime limit (16 MiB ≤ 30 MiB): any rate.
        let small = VmProfile { wws_bytes: Some(16 * MB), ..vm };
        assert_eq!(max_convergent_dirty_rate(&small, &link), f64::INFINITY);
        // A 0 s limit: only the idle guest converges.
        assert_eq!(max_convergent_dirty_rate(&vm, &LinkProfile { downtime_limit_s: 0.0, ..link }), 0.0);
        assert!(max_convergent_dirty_rate(&vm, &LinkProfile { max_rounds: 0, ..link }).is_nan());
    }

    #[test]
    fn kendall_tau_examples() {
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]), Some(1.0));
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]), Some(-1.0));
        // 6 pairs, only (2,3) swapped: (5 - 1) / sqrt(6 · 6) = 4/6
        let t = kendall_tau(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
        assert!(close(t, 2.0 / 3.0), "{t}");
        // Pairs: (0,1) C, (0,2) C, (0,3) C, (1,2) tied in a, (1,3) C, (2,3) tied in b:
        // 4 / sqrt((6 - 1) · (6 - 1)) = 0.8
        let t = kendall_tau(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 3.0]).unwrap();
        assert!(close(t, 0.8), "{t}");
        // (0,1) tied in both, (0,2) and (1,2) C: 2 / sqrt((3 - 1) · (3 - 1)) = 1
        assert_eq!(kendall_tau(&[1.0, 1.0, 2.0], &[5.0, 5.0, 7.0]), Some(1.0));
        assert_eq!(kendall_tau(&[], &[]), None);
        assert_eq!(kendall_tau(&[1.0], &[1.0]), None);
        assert_eq!(kendall_tau(&[1.0, 2.0], &[1.0]), None);
        assert_eq!(kendall_tau(&[3.0, 3.0, 3.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(kendall_tau(&[1.0, f64::NAN], &[1.0, 2.0]), None);
    }

    #[test]
    fn prediction_round_trips_through_json() {
        let p = precopy(&vm(GIB, 10.0), &link(100.0, 0.3));
        let back: Prediction = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        // serde_json's default float parser may be off by one ulp (exact
        // round-trips need its `float_roundtrip` feature), so floats are compared closely.
        assert_eq!((&back.strategy, back.converges, back.rounds, back.bytes, &back.reason), (&p.strategy, p.converges, p.rounds, p.bytes, &p.reason));
        assert_close(back.total_s, p.total_s.unwrap());
        assert_close(back.downtime_s, p.downtime_s.unwrap());
        assert_eq!(back.per_round.len(), p.per_round.len());
        assert!(back.per_round.iter().zip(&p.per_round).all(|(x, y)| x.0 == y.0 && close(x.1, y.1)));
    }
}
