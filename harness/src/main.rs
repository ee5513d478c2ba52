//! The `migbench` command line.

mod cli;

use clap::Parser;
use cli::{Cli, Cmd};
use migbench::machine;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // An HTTP load holds a socket per request in flight; 1024 descriptors is too few.
    migbench::load::generator::raise_open_file_limit();
    let filter = match cli.verbose {
        0 => "migbench=warn",
        1 => "migbench=info",
        _ => "migbench=debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()))
        .with_writer(std::io::stderr)
        .init();
    // What a SIGKILLed migbench left behind goes first; `doctor` reports it instead
    // (and removes it with --clean).
    // Not the agent: on a remote host (or the tests' one, with its own pids and /run)
    // it would judge another harness's directories by what it cannot see.
    if !matches!(cli.command, Cmd::Doctor(_) | Cmd::Agent) {
        let c = migbench::machine::stale::clean();
        for line in &c.removed {
            eprintln!("migbench: {line}");
        }
        for line in &c.failed {
            eprintln!("migbench: warning: {line}");
        }
    }
    tokio::select! {
        r = cli::dispatch(cli) => match r {
            Ok(code) => code,
            Err(e) => {
                eprintln!("migbench: error: {e:#}");
                ExitCode::from(1)
            }
        },
        sig = shutdown_signal() => {
            // Dropping `run` has killed its QEMUs and removed its run directory and
            // cgroups; this catches any QEMU still registered.
            machine::kill_all();
            // A link this migbench shaped goes back to the kernel's default here (the far
            // end's agent clears its own when the connection goes).
            migbench::machine::remote_link::clear_all_here();
            // Its cgroups and run directory too: `exit` below runs no destructor.
            for line in migbench::machine::stale::remove_own().failed {
                eprintln!("migbench: warning: {line}");
            }
            eprintln!("migbench: stopped by {sig}; its QEMU processes were killed");
            // Exit now: a set-up step still running on a blocking thread (apt, cargo,
            // a lock wait) would otherwise hold up the runtime's shutdown.
            std::process::exit(130)
        }
    }
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("installing a SIGHUP handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}
