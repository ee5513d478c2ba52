//! The QEMUs of a sweep: each cell's `qemu` and `qemu_dest` resolved, before the
//! first run, to the binaries and the machine type its source and destination run
//! (fetching a version into the cache where none is installed), so that a version
//! that cannot be had stops the sweep at its start with the reason, not in the middle.

use super::profile::Cell;
use crate::host::Qemu;
use crate::host::qemu_versions::{self, QemuWanted};
use crate::machine::site::Emulator;
use crate::machine::remote::RemoteHost;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

/// The emulators of one (source, destination) pair of QEMUs.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub source: Emulator,
    pub destination: Emulator,
    /// The versioned machine type both ran, e.g. "pc-i440fx-7.2" (for the record).
    pub machine_type: String,
}

impl Pair {
    /// `qemu`'s newest machine on both sides, on `machine_type`: one QEMU migrating to itself.
    pub fn newest(qemu: &Qemu, machine_type: &str) -> Pair {
        Pair { source: Emulator::newest(qemu), destination: Emulator::newest(qemu), machine_type: machine_type.to_string() }
    }
}

/// Every pair a set of cells names, by the cell's (`qemu`, `qemu_dest`).
#[derive(Debug, Clone)]
pub struct QemuPairs {
    pairs: BTreeMap<(Option<QemuWanted>, Option<QemuWanted>), Pair>,
}

impl QemuPairs {
    /// Resolves the pairs `cells` name; `default` serves a cell that names no QEMU.
    /// Blocking (it may fetch): call it off the async runtime.
    pub fn resolve<'a>(default: &Qemu, cells: impl IntoIterator<Item = &'a Cell>) -> Result<QemuPairs> {
        let mut qemus: BTreeMap<QemuWanted, Qemu> = BTreeMap::new();
        let mut pairs = BTreeMap::new();
        for cell in cells {
            let key = (cell.qemu.clone(), cell.qemu_dest.clone());
            if pairs.contains_key(&key) {
                continue;
            }
            let mut get = |w: &Option<QemuWanted>, which: &str| -> Result<Qemu> {
                let Some(w) = w else { return Ok(default.clone()) };
                if let Some(q) = qemus.get(w) {
                    return Ok(q.clone());
                }
                let q = qemu_versions::resolve(w).with_context(|| format!("{which} = {w:?}", w = w.to_string()))?;
                qemus.insert(w.clone(), q.clone());
                Ok(q)
            };
            let source = get(&cell.qemu, "qemu")?;
            let destination = match &cell.qemu_dest {
                None => source.clone(),
                some => get(some, "qemu_dest")?,
            };
            let (source, destination, machine_type) = Emulator::pair(&source, &destination)
                .with_context(|| format!("qemu = {} with qemu_dest = {}", source.version, destination.version))?;
            pairs.insert(key, Pair { source, destination, machine_type });
        }
        Ok(QemuPairs { pairs })
    }

    /// [`QemuPairs::resolve`] with every destination on `remote`, running the QEMU
    /// its agent resolved there (a cell's `qemu_dest` is refused: `--qemu-dest`
    /// names the far QEMU when the connection is made).
    pub fn resolve_to<'a>(default: &Qemu, cells: impl IntoIterator<Item = &'a Cell>, remote: &RemoteHost) -> Result<QemuPairs> {
        let mut pairs = BTreeMap::new();
        for cell in cells {
            if let Some(d) = &cell.qemu_dest {
                bail!("qemu_dest = {:?} names a QEMU on this host, but the destination is {}: drop it and pass --qemu-dest to migbench run", d.to_string(), remote.ssh.target);
            }
            let key = (cell.qemu.clone(), None);
            if pairs.contains_key(&key) {
                continue;
            }
            let source = match &cell.qemu {
                None => default.clone(),
                Some(w) => qemu_versions::resolve(w).with_context(|| format!("qemu = {:?}", w.to_string()))?,
            };
            let (source, destination, machine_type) =
                Emulator::pair_with(&source, remote).with_context(|| format!("qemu = {} to {}", source.version, remote.ssh.target))?;
            pairs.insert(key, Pair { source, destination, machine_type });
        }
        Ok(QemuPairs { pairs })
    }

    /// The pair of `cell` (resolved by [`QemuPairs::resolve`] from the same cells).
    pub fn of(&self, cell: &Cell) -> Result<&Pair> {
        self.pairs
            .get(&(cell.qemu.clone(), cell.qemu_dest.clone()))
            .with_context(|| format!("no QEMU was resolved for a cell with qemu {:?} and qemu_dest {:?}", cell.qemu, cell.qemu_dest))
    }
}
