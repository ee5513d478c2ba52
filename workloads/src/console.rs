//! The VM's console (PID 1's standard output): where the guest says what went
//! wrong when the guest channel cannot carry it, because the channel is not open
//! yet or a write to it failed. Below the channel and init, which both use it.

use std::io::Write;

pub fn console(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
