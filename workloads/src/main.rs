//! `migbench-guest`: PID 1 of migbench's test VM.
//!
//! As PID 1 it mounts the pseudo file systems, loads the kernel modules the image
//! builder listed, finds the guest channel (a virtio-serial port named
//! `migbench.0`), says `READY` on it and then sends a heartbeat every few
//! milliseconds. The heartbeat's sequence number lives in guest memory, so after a
//! live migration the destination's channel must carry on where the source's
//! stopped: that is how the harness knows the guest really moved and kept running.
//!
//! Run as an ordinary program (not PID 1) it only answers `--version`; the
//! workloads add `run NAME` here so they can be tested on the host.

mod channel;
mod console;
mod init;
mod obey;
mod work;

fn main() {
    if std::process::id() == 1 {
        init::run_as_pid1();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") | Some("-V") => println!("migbench-guest {}", env!("CARGO_PKG_VERSION")),
        Some("run") => run_on_host(&args[1..]),
        _ => {
            eprintln!(
                "migbench-guest {}: this program is the init of migbench's test VM.\n\
                 `migbench setup` builds it into the guest image; it runs there as PID 1.\n\
                 On a host: migbench-guest run WORKLOAD [--seconds S] runs a workload and prints its rate\n\
                 (`run http [--port P]` serves HTTP on 127.0.0.1:P and prints the requests/s it answered).",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
}

/// `migbench-guest run WORKLOAD [--seconds S] [--copies N] [--port P]`: the guest's workload, on the host.
fn run_on_host(args: &[String]) {
    let usage = "usage: migbench-guest run WORKLOAD [--seconds S] [--copies N] [--port P]\n  \
                 WORKLOAD: burn, dhrystone, livermore[:SPAN], cpu-duty:PERCENT, memdirty-write:MIB[:MIB_PER_S], memdirty-read:MIB[:MIB_PER_S], linpack:N, http[:STORE_MIB]\n  \
                 --copies: parallel copies of a CPU benchmark (the guest runs one per vCPU), default 1\n  \
                 --port: the port the http workload serves on, on 127.0.0.1 (the guest uses 80), default 8080";
    let fail = |msg: String| -> ! {
        eprintln!("migbench-guest: {msg}\n{usage}");
        std::process::exit(2);
    };
    let Some(workload) = args.first() else { fail("give a workload".into()) };
    let workload: migbench_guest::orders::Workload = workload.parse().unwrap_or_else(|e: String| fail(e));
    let (mut seconds, mut copies, mut port) = (5.0, 1usize, None);
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next();
        match flag.as_str() {
            "--seconds" => match value.and_then(|s| s.parse::<f64>().ok()).filter(|s| s.is_finite() && *s > 0.0 && *s <= 86400.0) {
                Some(s) => seconds = s,
                None => fail("--seconds takes a number of seconds, above 0 and at most 86400".into()),
            },
            "--copies" => match value.and_then(|s| s.parse::<usize>().ok()).filter(|n| (1..=1024).contains(n)) {
                Some(n) => copies = n,
                None => fail("--copies takes a whole number from 1 to 1024".into()),
            },
            "--port" => match value.and_then(|s| s.parse::<u16>().ok()).filter(|p| *p > 0) {
                Some(p) => port = Some(p),
                None => fail("--port takes a port number from 1 to 65535".into()),
            },
            other => fail(format!("unknown argument {other:?}")),
        }
    }
    let Some(unit) = workload.unit() else {
        eprintln!("migbench-guest: the idle workload does no work to measure\n{usage}");
        std::process::exit(2);
    };
    let is_http = matches!(workload, migbench_guest::orders::Workload::Http { .. });
    if port.is_some() && !is_http {
        fail(format!("--port is for the http workload, not {workload}"));
    }
    if is_http {
        let port = port.unwrap_or(8080);
        work::HTTP_PORT.store(port, std::sync::atomic::Ordering::Relaxed);
        work::HTTP_LOOPBACK.store(true, std::sync::atomic::Ordering::Relaxed);
        eprintln!("migbench-guest: serving {workload} on http://127.0.0.1:{port}/ for {seconds} s");
    }
    work::start(workload, copies, |e| {
        eprintln!("migbench-guest: {e}");
        std::process::exit(1);
    });
    let start = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs_f64(seconds));
    let done = work::DONE.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let rate = done / start.elapsed().as_secs_f64();
    // Counts of operations read best in millions; MiB are already a large unit,
    // and a server's requests are counted in thousands at most.
    let (shown, prefix) = if unit == "MiB" || unit == "requests" { (rate, "") } else { (rate / 1e6, "M") };
    let dmips = if unit == "dhrystones" { format!(" ({:.0} DMIPS)", rate / migbench_guest::dhrystone::VAX_DHRYSTONES_PER_SEC) } else { String::new() };
    println!("{workload}: {shown:.3} {prefix}{unit}/s{dmips} over {:.1} s", start.elapsed().as_secs_f64());
    if matches!(workload, migbench_guest::orders::Workload::Livermore { span: None }) {
        // The means need every kernel timed at least once at every span: on a slow or
        // busy host the first pass can outlast --seconds, so wait for it (the rate
        // above is already taken) rather than leave the means out. One span alone
        // (`livermore:short`) never has them.
        let waited = std::time::Instant::now();
        let report = loop {
            match work::livermore_report() {
                Some(line) => break Some(line),
                None if waited.elapsed().as_secs() >= 120 => break None,
                None => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        };
        match report {
            // Per span: the arithmetic, geometric and harmonic means of the 24 kernels' MFLOPS.
            Some(line) => println!("livermore MFLOPS means (arithmetic/geometric/harmonic): {line}"),
            None => eprintln!("migbench-guest: no Livermore pass finished within 120 s after the run, so no means"),
        }
    }
}
