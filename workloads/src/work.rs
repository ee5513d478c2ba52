//! The workloads the guest runs beside its heartbeat. Each runs in its own thread
//! at a lower priority, so the heartbeat (the measurement) keeps its timing.

use migbench_guest::orders::{DirtyMode, Workload};

const PAGE: usize = 4096;

pub fn start(w: Workload) {
    if w == Workload::Idle {
        return;
    }
    std::thread::spawn(move || {
        // SAFETY: setpriority on our own thread (which = 0 means the caller).
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        match w {
            Workload::Idle => {}
            Workload::Burn => burn(),
            Workload::MemDirty { mib, mode } => memdirty(mib as usize * 1024 * 1024, mode),
        }
    });
}

fn burn() -> ! {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
    }
}

fn memdirty(bytes: usize, mode: DirtyMode) -> ! {
    let mut set = vec![0u64; bytes / 8];
    let words_per_page = PAGE / 8;
    let mut round: u64 = 1;
    loop {
        match mode {
            // A new, non-zero value in every page each round: no page stays zero or
            // repeats what was sent before, so migration has to copy it again.
            DirtyMode::Write => {
                for (i, page) in set.chunks_mut(words_per_page).enumerate() {
                    page[0] = round.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64) | 1;
                }
            }
            // Read everything, write one page in 64.
            DirtyMode::Read => {
                let mut sum = 0u64;
                for w in set.iter().step_by(8) {
                    sum = sum.wrapping_add(*w);
                }
                let pages = set.len() / words_per_page;
                for p in (0..pages).step_by(64) {
                    set[p * words_per_page] = sum ^ round | 1;
                }
            }
        }
        round = std::hint::black_box(round + 1);
    }
}
