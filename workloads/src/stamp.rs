//! The memory dirtier's stamped pages: every 4 KiB page of its working set carries
//! its own index, the generation that last wrote it and a checksum over the whole
//! page, so a page that arrives stale, zeroed, moved or altered after a migration
//! is found.
//!
//! Page layout, in 64-bit words: `[0]` page index, `[1]` generation, `[2]`
//! checksum of (index, generation, words 3..512), `[3..512]` the body. The body is
//! left as the allocator gave it (zero) and never rewritten: a round changes only
//! the generation and checksum words, which keeps every page non-zero and changing
//! (what the dirtier exists for) while costing a few stores per page, and keeps the
//! page as compressible as the unstamped dirtier's pages were.
//!
//! Which generation each page must hold is known exactly, because one writer
//! moves a cursor through the set in order: pages it rewrites hold the current
//! generation below the cursor and the previous one from it on; pages it never
//! rewrites (read mode writes one in [`READ_STRIDE`]) keep the first. Whoever
//! verifies holds the set, so the writer is paused between two pages.

use std::collections::BTreeSet;

/// Bytes in a page of the working set (the guest's page size).
pub const PAGE: usize = 4096;
const WORDS: usize = PAGE / 8;
const HEADER: usize = 3;
/// Read mode rewrites one page in this many each round.
pub const READ_STRIDE: usize = 64;
/// The generation every page gets when the set is made.
const FIRST: u64 = 1;

/// What one verification found (pages of the set, indices from 0); the harness
/// records it as a run's `health.integrity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Tally {
    /// Pages of the working set checked, every word of each.
    pub pages_checked: u64,
    /// Pages whose index, generation or checksum was wrong (each counted once),
    /// found by this check or by the workload itself since the previous check.
    pub mismatches: u64,
    /// The lowest-numbered bad page (0 = the working set's first page).
    pub first_bad_page: Option<u64>,
}

/// A word-by-word hash of a page body: position matters, so moved or swapped
/// words change it as much as altered ones.
fn body_hash(body: &[u64]) -> u64 {
    body.iter().fold(0x6A09_E667_F3BC_C908, |h, w| (h.rotate_left(23) ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A 64-bit finaliser (MurmurHash3's): every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

/// The checksum word of a page with this index, generation and body hash.
fn checksum(index: u64, generation: u64, body: u64) -> u64 {
    mix(mix(index ^ 0x5354_414D_505F_4D42) ^ generation.rotate_left(17) ^ body)
}

/// Whether `page` is stamped as page `index` of generation `generation`, reading every word.
pub fn page_is_intact(page: &[u64], index: u64, generation: u64) -> bool {
    page.len() == WORDS && page[0] == index && page[1] == generation && page[2] == checksum(index, generation, body_hash(&page[HEADER..]))
}

/// Stamps `page` as page `index` of `generation`, given its body's hash.
fn stamp(page: &mut [u64], index: u64, generation: u64, body: u64) {
    page[0] = index;
    page[1] = generation;
    page[2] = checksum(index, generation, body);
}

/// A working set of stamped pages, and where its writer is.
pub struct StampedSet {
    words: Vec<u64>,
    /// Word where page 0 starts: pages are aligned on the guest's pages, so one
    /// page lost or stale in a migration is exactly one page of the set.
    start: usize,
    pages: usize,
    /// Pages `p` with `p % stride == 0` are rewritten each round.
    stride: usize,
    /// The hash of a body as made (all bodies are made equal and never written).
    body: u64,
    /// The generation the writer gives out in this round (above `FIRST`).
    generation: u64,
    /// The next page the writer visits.
    cursor: usize,
    /// Pages found wrong since the last report.
    bad: BTreeSet<usize>,
}

impl StampedSet {
    /// `bytes` of memory (whole pages), every page stamped; the writer rewrites
    /// every page (`stride` 1) or one in `stride`.
    pub fn new(bytes: usize, stride: usize) -> StampedSet {
        let pages = (bytes / PAGE).max(1);
        let words = vec![0u64; (pages + 1) * WORDS];
        let misalign = (words.as_ptr() as usize % PAGE) / 8;
        let start = if misalign == 0 { 0 } else { WORDS - misalign };
        let body = body_hash(&[0u64; WORDS - HEADER]);
        let mut set = StampedSet { words, start, pages, stride: stride.max(1), body, generation: FIRST + 1, cursor: 0, bad: BTreeSet::new() };
        for p in 0..pages {
            stamp(set.page_mut(p), p as u64, FIRST, body);
        }
        set
    }

    pub fn pages(&self) -> usize {
        self.pages
    }

    fn page(&self, p: usize) -> &[u64] {
        &self.words[self.start + p * WORDS..self.start + (p + 1) * WORDS]
    }

    fn page_mut(&mut self, p: usize) -> &mut [u64] {
        &mut self.words[self.start + p * WORDS..self.start + (p + 1) * WORDS]
    }

    /// The generation page `p` must hold now.
    fn expected(&self, p: usize) -> u64 {
        if p % self.stride != 0 {
            FIRST
        } else if p < self.cursor {
            self.generation
        } else {
            self.generation - 1
        }
    }

    /// The writer's next page: read mode verifies it whole as it reads; a page due
    /// for rewriting has its stamp checked (three words, so the writer's cost stays
    /// a few loads and stores per page) and is then stamped with this round's
    /// generation. Whatever is found wrong is kept for the next report.
    pub fn step(&mut self) {
        let p = self.cursor;
        let expected = self.expected(p);
        let rewrite = p % self.stride == 0;
        let ok = if self.stride > 1 {
            page_is_intact(self.page(p), p as u64, expected)
        } else {
            let page = self.page(p);
            page[0] == p as u64 && page[1] == expected && page[2] == checksum(p as u64, expected, self.body)
        };
        if !ok {
            self.bad.insert(p);
        }
        if rewrite {
            let (generation, body) = (self.generation, self.body);
            stamp(self.page_mut(p), p as u64, generation, body);
        }
        self.cursor += 1;
        if self.cursor == self.pages {
            self.cursor = 0;
            self.generation += 1;
        }
    }

    /// Checks every page, word by word, against the generation it must hold, and
    /// reports it together with what the writer found since the last report.
    pub fn verify(&mut self) -> Tally {
        let mut bad = std::mem::take(&mut self.bad);
        for p in 0..self.pages {
            if !page_is_intact(self.page(p), p as u64, self.expected(p)) {
                bad.insert(p);
            }
        }
        Tally { pages_checked: self.pages as u64, mismatches: bad.len() as u64, first_bad_page: bad.first().map(|p| *p as u64) }
    }

    /// Flips one bit of a body byte of page `p`: a corruption the checker did not
    /// make, for tests. The stamp words are left alone, so the writer does not
    /// notice and rewrite it: only a whole-page check finds it.
    pub fn corrupt(&mut self, p: usize) -> Result<(), String> {
        if p >= self.pages {
            return Err(format!("page {p} is outside the working set (pages 0 to {})", self.pages - 1));
        }
        self.page_mut(p)[WORDS / 2] ^= 1 << 13;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rounds(set: &mut StampedSet, steps: usize) {
        for _ in 0..steps {
            set.step();
        }
    }

    #[test]
    fn a_set_being_written_verifies_clean_at_any_point() {
        for stride in [1, READ_STRIDE] {
            let mut set = StampedSet::new(200 * PAGE, stride);
            assert_eq!((set.words.as_ptr() as usize + set.start * 8) % PAGE, 0, "pages are the guest's pages");
            for steps in [0, 1, 77, 200, 333, 1000] {
                rounds(&mut set, steps);
                assert_eq!(set.verify(), Tally { pages_checked: 200, mismatches: 0, first_bad_page: None }, "stride {stride}, {steps} steps");
            }
        }
    }

    #[test]
    fn pages_are_never_zero_and_change_every_round() {
        let mut set = StampedSet::new(8 * PAGE, 1);
        let before: Vec<Vec<u64>> = (0..8).map(|p| set.page(p).to_vec()).collect();
        rounds(&mut set, 8);
        for (p, old) in before.iter().enumerate() {
            assert!(set.page(p).iter().any(|w| *w != 0), "page {p} is zero");
            assert_ne!(set.page(p), &old[..], "page {p} did not change");
        }
    }

    #[test]
    fn a_flipped_bit_is_found_by_the_whole_page_check_and_reported_once() {
        let mut set = StampedSet::new(100 * PAGE, 1);
        rounds(&mut set, 150);
        set.corrupt(42).unwrap();
        rounds(&mut set, 100);
        assert_eq!(set.verify(), Tally { pages_checked: 100, mismatches: 1, first_bad_page: Some(42) });
        assert!(set.corrupt(100).unwrap_err().contains("pages 0 to 99"));
    }

    #[test]
    fn a_stale_page_is_found_even_after_the_writer_passed_it() {
        // What a migration that failed to resend a dirtied page leaves: the page as
        // it was a generation ago, its stamp consistent with itself.
        let mut set = StampedSet::new(50 * PAGE, 1);
        rounds(&mut set, 60);
        let old = set.page(30).to_vec();
        rounds(&mut set, 50);
        set.page_mut(30).copy_from_slice(&old);
        rounds(&mut set, 5);
        assert_eq!(set.verify().mismatches, 1, "stale page not yet reached by the writer");
        // The writer reaches it next round and heals it; what it saw is still reported.
        rounds(&mut set, 50);
        assert_eq!(set.verify(), Tally { pages_checked: 50, mismatches: 1, first_bad_page: Some(30) });
        assert_eq!(set.verify().mismatches, 0, "a report covers what was found since the last one");
    }

    #[test]
    fn zeroed_or_swapped_pages_are_found() {
        let mut set = StampedSet::new(40 * PAGE, READ_STRIDE);
        rounds(&mut set, 10);
        set.page_mut(7).fill(0);
        let (a, b) = (set.page(1).to_vec(), set.page(2).to_vec());
        set.page_mut(1).copy_from_slice(&b);
        set.page_mut(2).copy_from_slice(&a);
        let t = set.verify();
        assert_eq!((t.mismatches, t.first_bad_page), (3, Some(1)));
        // Read mode checks whole pages as it reads: a body flip is caught without a report asked for.
        set.corrupt(33).unwrap();
        rounds(&mut set, 40);
        assert_eq!(set.bad.iter().copied().collect::<Vec<_>>(), [1, 2, 7, 33]);
    }
}
