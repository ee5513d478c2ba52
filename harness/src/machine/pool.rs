//! Booted guests kept for the next run. Booting a guest costs seconds (more under
//! TCG), so a run leaves its guest running for the next one whenever that run
//! would boot the same guest: same boot key (the caller says what that is, e.g.
//! RAM, vCPUs and workload) and reuse not turned off. A migrated guest is the
//! running one from then on; a sick or lost one is never kept.
//!
//! A guest is either in the pool or out on a run ([`GuestPool::take`]): a run that
//! fails before giving it back drops it, which kills its QEMU.

use super::Machine;
use super::hardware::GuestSpec;
use super::site::{Emulator, Site};
use anyhow::Result;
use std::time::Duration;

/// What a run that needs a guest of some boot key does about the kept one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Runs on the kept guest.
    Keep,
    /// Quits the kept guest and boots a new one.
    Replace,
    /// Nothing is kept: boots a new one.
    Boot,
}

/// The reuse rule: the kept guest (booted with key `kept`) serves a run that needs
/// `wanted` when reuse is on and the keys match.
pub fn decide<K: PartialEq>(kept: Option<&K>, wanted: &K, reuse: bool) -> Reuse {
    match kept {
        None => Reuse::Boot,
        Some(k) if reuse && k == wanted => Reuse::Keep,
        Some(_) => Reuse::Replace,
    }
}

/// Where the guest is after a run that migrated it, as far as keeping it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Afterwards {
    /// It arrived healthy on the destination, which is the guest from now on.
    Moved,
    /// The migration did not complete and the guest runs on, healthy, on the source.
    Stayed,
    /// Sick, or running nowhere: neither QEMU is kept.
    Lost,
}

impl Afterwards {
    /// From the run's outcome: whether the migration completed, whether the guest
    /// is healthy, and whether it runs on the source.
    pub fn of(completed: bool, healthy: bool, on_source: bool) -> Afterwards {
        match (completed, healthy, on_source) {
            (true, true, _) => Afterwards::Moved,
            (false, true, true) => Afterwards::Stayed,
            _ => Afterwards::Lost,
        }
    }
}

/// A booted guest out of the pool, for one run.
pub struct Pooled<K> {
    pub machine: Machine,
    /// What it was booted as (compared with the next run's).
    key: K,
    /// QEMU start to READY when it booted, ms.
    pub boot_ms: f64,
    /// Whether it booted fresh or was restored from a snapshot.
    pub booted: super::boot::Booted,
    /// Whether it came through an earlier run's migration (moved or stayed): a run
    /// on it reuses a guest.
    pub reused: bool,
}

impl<K> Pooled<K> {
    /// Says what the guest is now (after it moved to another QEMU, say).
    pub fn rekey(&mut self, key: K) {
        self.key = key;
    }
}

/// At most one booted guest, kept between runs, on one site.
pub struct GuestPool<'s, K> {
    site: &'s Site,
    /// Off: every run boots a fresh guest.
    reuse: bool,
    boot_timeout: Duration,
    /// How long a freshly booted guest runs before its first run.
    warmup: Duration,
    kept: Option<Pooled<K>>,
}

impl<'s, K: PartialEq> GuestPool<'s, K> {
    pub fn new(site: &'s Site, reuse: bool, boot_timeout: Duration, warmup: Duration) -> GuestPool<'s, K> {
        GuestPool { site, reuse, boot_timeout, warmup, kept: None }
    }

    /// The guest for a run that needs boot key `key`: the kept one if it serves
    /// (see [`decide`]), else a new one booted as `spec` on `emulator` under the
    /// name `name()` and given the warm-up. The key must tell emulators apart.
    pub async fn take(&mut self, emulator: &Emulator, spec: GuestSpec, key: K, name: impl FnOnce() -> String) -> Result<Pooled<K>> {
        match decide(self.kept.as_ref().map(|k| &k.key), &key, self.reuse) {
            Reuse::Keep => return Ok(self.kept.take().expect("decide keeps only a kept guest")),
            Reuse::Replace => self.clear().await,
            Reuse::Boot => {}
        }
        let (machine, boot_ms) = self.site.boot_on(emulator, spec, &name(), self.boot_timeout).await?;
        if !self.warmup.is_zero() {
            tokio::time::sleep(self.warmup).await;
        }
        let booted = machine.booted;
        Ok(Pooled { machine, key, boot_ms, booted, reused: false })
    }

    /// Keeps `guest` as it is, for the next run (a run that did not migrate it).
    pub fn put_back(&mut self, guest: Pooled<K>) {
        self.kept = Some(guest);
    }

    /// Keeps whichever QEMU runs the guest after a run that migrated it from
    /// `guest` to `dst`, and quits or kills the other (see [`Afterwards`]).
    pub async fn after_migration(&mut self, mut guest: Pooled<K>, dst: Machine, afterwards: Afterwards) {
        match afterwards {
            Afterwards::Moved => {
                let old = std::mem::replace(&mut guest.machine, dst);
                guest.reused = true;
                self.kept = Some(guest);
                old.quit().await;
            }
            Afterwards::Stayed => {
                guest.reused = true;
                self.kept = Some(guest);
                dst.quit().await;
            }
            Afterwards::Lost => {
                // Killed, not asked to quit: a sick guest's QEMU may not answer.
                drop(guest);
                drop(dst);
            }
        }
    }

    /// Kills the kept guest, if any, without asking (after a run that failed: what
    /// state it is in is not known).
    pub fn discard(&mut self) {
        self.kept = None;
    }

    /// Quits the kept guest, if any (before a run that boots its own, and at the end).
    pub async fn clear(&mut self) {
        if let Some(g) = self.kept.take() {
            g.machine.quit().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_guest_serves_only_the_same_boot_key_with_reuse_on() {
        let key = (256u32, 1u32, "idle".to_string());
        assert_eq!(decide(None, &key, true), Reuse::Boot);
        assert_eq!(decide(None, &key, false), Reuse::Boot);
        assert_eq!(decide(Some(&key), &key, true), Reuse::Keep);
        assert_eq!(decide(Some(&key), &key, false), Reuse::Replace);
        let other = (512u32, 1u32, "idle".to_string());
        assert_eq!(decide(Some(&other), &key, true), Reuse::Replace);
        let busy = (256u32, 1u32, "memdirty-write:32".to_string());
        assert_eq!(decide(Some(&busy), &key, true), Reuse::Replace);
    }

    #[test]
    fn only_a_healthy_guest_is_kept_where_it_runs() {
        assert_eq!(Afterwards::of(true, true, false), Afterwards::Moved);
        // Completed but sick: neither side is kept.
        assert_eq!(Afterwards::of(true, false, false), Afterwards::Lost);
        // Cancelled or failed, the guest healthy where it was.
        assert_eq!(Afterwards::of(false, true, true), Afterwards::Stayed);
        // Not completed and not on the source (e.g. stuck in post-copy): lost.
        assert_eq!(Afterwards::of(false, true, false), Afterwards::Lost);
        assert_eq!(Afterwards::of(false, false, true), Afterwards::Lost);
    }
}
