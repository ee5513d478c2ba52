//! The capacity plan as Markdown: what `migbench plan` prints.

use crate::rank::plan::{Evacuation, Fits, Frontier, LeftOut, MIB, Plan, VmTime, ms_text};
use tabled::settings::Style;

fn table(rows: Vec<Vec<String>>) -> String {
    let mut b = tabled::builder::Builder::default();
    for r in rows {
        b.push_record(r);
    }
    b.build().with(Style::markdown()).to_string()
}

fn left_out_lines(out: &mut String, left: &[LeftOut]) {
    for l in left {
        out.push_str(&format!("\nLeft out: {} ({})\n", l.vm, l.why));
    }
}

/// The plan as Markdown: what `migbench plan` prints.
pub fn markdown(p: &Plan) -> String {
    let mut out = format!("# Capacity plan for {} ({} VMs)\n\n", p.source, p.vms);
    if let Some(m) = &p.measured_link {
        out.push_str(&format!(
            "The link to {} (to {}, from {}) carried {} in one TCP stream, measured for {:.1} s: planned for as the link `{}` below.\n\n",
            m.host,
            m.address,
            m.from,
            rate_text(m),
            m.sent_for_s,
            m.speed()
        ));
    }
    out.push_str("Assumptions:\n");
    for a in &p.assumptions {
        out.push_str(&format!("- {a}\n"));
    }
    frontier(&mut out, &p.frontier);
    evacuation(&mut out, &p.evacuation);
    fits(&mut out, &p.fits);
    out
}

/// A rate in bytes/s as Mbit/s and MiB/s.
fn rate_text(m: &crate::machine::link_probe::LinkProbe) -> String {
    format!("{:.1} Mbit/s ({:.1} MiB/s)", m.mbit(), m.bytes_per_sec() / MIB)
}

/// Section 1: the highest convergent dirty rates, and each VM at each link.
fn frontier(out: &mut String, f: &Frontier) {
    out.push_str("\n## 1. Convergence frontier\n\n");
    out.push_str(&format!(
        "Highest dirty rate (MiB/s) at which pre-copy converges, for a VM of each RAM size whose first round sends all of it \
         (`max_convergent_dirty_rate`), and in brackets the highest that also finishes within {:.0} s:\n\n",
        f.time_limit_s
    ));
    let mut sizes: Vec<u32> = f.points.iter().map(|x| x.ram_mib).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut rows = vec![["link".to_string(), "downtime limit".to_string()].into_iter().chain(sizes.iter().map(|r| format!("{r} MiB"))).collect::<Vec<_>>()];
    for chunk in f.points.chunks(sizes.len().max(1)) {
        let Some(first) = chunk.first() else { continue };
        let mut row = vec![first.link.clone(), ms_text(first.downtime_limit_ms)];
        row.extend(chunk.iter().map(|x| format!("{} ({})", x.max_dirty.show(), x.max_dirty_within_time_limit.show())));
        rows.push(row);
    }
    out.push_str(&table(rows));
    out.push_str("\n\nPer VM: its measured dirty rate, at each link whether pre-copy converges within its time limit (and the predicted total time), \
                  and the slowest link on which it still does:\n\n");
    let links: Vec<String> = f.vms.first().map(|v| v.links.iter().map(|l| l.link.clone()).collect()).unwrap_or_default();
    let mut rows = vec![["vm", "dirty MiB/s", "first round MiB", "downtime limit"].into_iter().map(String::from).chain(links.iter().cloned()).chain(["slowest link".to_string()]).collect::<Vec<_>>()];
    for v in &f.vms {
        let mut row = vec![
            v.vm.clone(),
            format!("{:.1}", v.dirty_mib_s),
            v.first_round_mib.map_or_else(|| format!("{} (all)", v.ram_mib), |m| format!("{m:.1}")),
            ms_text(v.downtime_limit_ms),
        ];
        row.extend(v.links.iter().map(|l| l.verdict.clone()));
        row.push(v.slowest_link.clone());
        rows.push(row);
    }
    out.push_str(&table(rows));
    out.push('\n');
    left_out_lines(out, &f.left_out);
}

/// Section 2: evacuating the host, one by one and k at once.
fn evacuation(out: &mut String, e: &Evacuation) {
    out.push_str("\n## 2. Evacuation: every VM off one host\n\n");
    out.push_str(&format!(
        "Each VM at its own downtime limit, pre-copy unless it would not converge (then post-copy). The model's simplification: {}.\n\n",
        e.simplification
    ));
    let mut rows = vec![["link", "at once", "each migration", "makespan s", "post-copy instead"].into_iter().map(String::from).collect::<Vec<_>>()];
    let mut fallbacks = vec![["link", "at once", "vm", "post-copy s", "why not pre-copy"].into_iter().map(String::from).collect::<Vec<_>>()];
    for l in &e.links {
        for s in std::iter::once(&l.one_by_one).chain(l.parallel.iter().filter(|s| s.k != 1)) {
            let post: Vec<&VmTime> = s.vms.iter().filter(|v| v.precopy_fails.is_some()).collect();
            rows.push(vec![
                l.link.clone(),
                if s.k == 1 { "1 (one by one)".into() } else { s.k.to_string() },
                format!("{:.1} MiB/s", s.share_bytes_per_s / MIB),
                format!("{:.2}", s.makespan_s),
                if post.is_empty() { "-".into() } else { format!("{} of {} VMs (listed below)", post.len(), s.vms.len()) },
            ]);
            for v in post {
                fallbacks.push(vec![l.link.clone(), s.k.to_string(), v.vm.clone(), format!("{:.2}", v.total_s), v.precopy_fails.clone().unwrap_or_default()]);
            }
        }
    }
    out.push_str(&table(rows));
    out.push('\n');
    match &e.measured {
        Some(m) => {
            let model = m.model_s;
            out.push_str(&format!(
                "\nMeasured one by one: {:.2} s, the sum of the mean total times of {} of {} VMs, at the link{} they ran at ({}){}.\n",
                m.total_s,
                m.vms,
                m.of,
                if m.links.len() == 1 { "" } else { "s" },
                m.links.join(", "),
                match model {
                    Some(t) if m.total_s > 0.0 => format!("; the model says {t:.2} s for the same VMs at that link ({:+.0} %)", 100.0 * (t - m.total_s) / m.total_s),
                    _ => "; the model has no figure for exactly these VMs at one link".into(),
                }
            ));
        }
        None => out.push_str("\nNo measured total times to compare with.\n"),
    }
    if fallbacks.len() > 1 {
        out.push_str("\nVMs moved by post-copy because pre-copy would not converge at their share of the link:\n\n");
        out.push_str(&table(fallbacks));
        out.push('\n');
    }
    left_out_lines(out, &e.left_out);
}

/// Section 3: total time against RAM, a fitted line per group.
fn fits(out: &mut String, fits: &Fits) {
    out.push_str("\n## 3. Total time against RAM\n\n");
    match &fits.note {
        Some(note) => out.push_str(&format!("{note}.\n")),
        None => {
            out.push_str(
                "Least-squares line total_time_ms = a + b · RAM_MiB over the healthy completed runs of each group; error = |fit − measured| / measured, over the runs:\n\n",
            );
            let mut rows = vec![["group", "runs", "RAM MiB", "a ms", "b ms/MiB", "R²", "median error", "worst error"].into_iter().map(String::from).collect::<Vec<_>>()];
            let pct = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1} %"));
            for g in &fits.groups {
                let ram = g.ram_mib.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
                let mut row = vec![g.group.clone(), g.runs.to_string(), if ram.is_empty() { "-".into() } else { ram }];
                match (&g.fit, &g.why_not) {
                    (Some(fit), _) => row.extend([
                        format!("{:.1}", fit.a_ms),
                        format!("{:.4}", fit.b_ms_per_mib),
                        fit.r2.map_or_else(|| "-".into(), |r| format!("{r:.3}")),
                        pct(fit.median_error_percent),
                        pct(fit.worst_error_percent),
                    ]),
                    (None, why) => {
                        row.push(why.clone().unwrap_or_else(|| "no fit".into()));
                        row.extend(std::iter::repeat_n("-".to_string(), 4));
                    }
                }
                rows.push(row);
            }
            out.push_str(&table(rows));
            out.push('\n');
        }
    }
}
