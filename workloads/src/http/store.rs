//! The key/value store behind `/kv/<n>`: page-sized values whose every request
//! dirties one page of guest memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// The size of one value in the [`Store`]: one page.
pub const SLOT_BYTES: usize = 4096;

const SLOT_WORDS: usize = SLOT_BYTES / 8;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One slot's value. Page-aligned and exactly a page, so a touch dirties exactly
/// one page of guest memory. Atomics (plain moves on x86) let the value change
/// behind `&Store` without `unsafe`; it is the slot's lock that keeps a read
/// and rewrite whole.
#[repr(align(4096))]
struct Value([AtomicU64; SLOT_WORDS]);

const _: () = assert!(std::mem::size_of::<Value>() == SLOT_BYTES);

/// The key/value store behind `/kv/<n>`: `slots` values of [`SLOT_BYTES`] each,
/// every one with its own version counter and lock.
pub struct Store {
    values: Vec<Value>,
    /// Slot i's version; its lock also guards `values[i]`. Kept apart from the
    /// values so that they stay page-aligned.
    versions: Vec<Mutex<u64>>,
}

impl Store {
    /// A store of `mib` MiB (256 slots a MiB, at least one slot). Every value is
    /// written now, with non-zero data of its own, so the memory is really
    /// allocated and migration cannot skip it as zero pages.
    pub fn new(mib: u32) -> Store {
        let slots = (mib as usize).saturating_mul(1024 * 1024 / SLOT_BYTES).max(1);
        let values = (0..slots)
            .map(|slot| {
                let seed = seed(slot as u64, 0);
                Value(std::array::from_fn(|i| AtomicU64::new(word(seed, i))))
            })
            .collect();
        let versions = (0..slots).map(|_| Mutex::new(0)).collect();
        Store { values, versions }
    }

    /// How many values the store holds.
    pub fn slots(&self) -> usize {
        self.values.len()
    }

    /// What a web application's request does to its data: reads the whole value
    /// of `key`'s slot (`key` mod `slots`), then rewrites all of it with new data
    /// from `key` and the slot's next version. Returns that version and the new
    /// value's checksum.
    pub fn touch(&self, key: u64) -> (u64, u64) {
        let slot = (key % self.values.len() as u64) as usize;
        let mut version = self.versions[slot].lock().unwrap_or_else(PoisonError::into_inner);
        let value = &self.values[slot];
        std::hint::black_box(checksum(value));
        *version = version.wrapping_add(1);
        let seed = seed(key, *version);
        let mut sum = FNV_OFFSET;
        for (i, w) in value.0.iter().enumerate() {
            let x = word(seed, i);
            w.store(x, Ordering::Relaxed);
            sum = fnv(sum, x);
        }
        (*version, sum)
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn seed(key: u64, version: u64) -> u64 {
    splitmix(splitmix(key) ^ version)
}

/// Word `i` of the value for `seed`: never zero, and different in every slot
/// and version, so no page is a zero page or a copy of another.
fn word(seed: u64, i: usize) -> u64 {
    splitmix(seed.wrapping_add(i as u64)) | 1
}

fn fnv(h: u64, word: u64) -> u64 {
    (h ^ word).wrapping_mul(FNV_PRIME)
}

fn checksum(value: &Value) -> u64 {
    value.0.iter().fold(FNV_OFFSET, |h, w| fnv(h, w.load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_of_one_mib_has_256_non_zero_page_aligned_slots() {
        let store = Store::new(1);
        assert_eq!(store.slots(), 256);
        assert!(store.values.iter().all(|v| v.0.iter().all(|w| w.load(Ordering::Relaxed) != 0)));
        assert_eq!(store.values.as_ptr() as usize % 4096, 0);
        // Slot-specific: no two values are the same page.
        let mut sums: Vec<u64> = store.values.iter().map(checksum).collect();
        sums.sort_unstable();
        sums.dedup();
        assert_eq!(sums.len(), 256);
        assert_eq!(Store::new(0).slots(), 1);
    }

    #[test]
    fn touch_bumps_the_version_and_rewrites_the_whole_value() {
        let store = Store::new(1);
        let before = checksum(&store.values[5]);
        let (v1, c1) = store.touch(5);
        assert_eq!((v1, c1), (1, checksum(&store.values[5])));
        assert_ne!(c1, before);
        let (v2, c2) = store.touch(5 + 256);
        assert_eq!(v2, 2, "keys are taken modulo the slots");
        assert_ne!(c2, c1);
        assert!(store.values[5].0.iter().all(|w| w.load(Ordering::Relaxed) != 0));
        assert_eq!(store.touch(6).0, 1);
    }

}
