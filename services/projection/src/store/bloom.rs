//! The Bloom filter of the dossier ids a bulk fill has written.

/// The dossier ids a [`Fill::Bulk`] has written, as a Bloom filter. A bulk
/// fill starts from empty tables that nothing else writes until it ends, so
/// a dossier the filter has never seen has no row, and its lookup is
/// skipped: a rebuild's batch reads nothing back for the dossiers it meets
/// first, as most are (looking up a batch's new ids cost PostgreSQL time
/// for nothing; BENCHMARKS.md). A false positive costs a lookup; the filter
/// is 16 MB, so 2.5 million dossiers (10 million events) make one in 6,000
/// ids one, and 25 million still fewer than one in ten.
///
/// [`Fill::Bulk`]: super::Fill::Bulk
#[derive(Debug)]
pub(super) struct Written {
    bits: Vec<u64>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Written {
    /// 2^27 bits.
    const BITS_LOG2: u32 = 27;
    /// Bits set per id.
    const PROBES: usize = 3;

    pub(super) fn new() -> Self {
        Self {
            bits: vec![0; 1 << (Self::BITS_LOG2 - 6)],
            hasher: hashbrown::DefaultHashBuilder::default(),
        }
    }

    /// The bits of `id` (word, mask): double hashing from one 64-bit hash.
    fn probes(&self, id: &str) -> [(usize, u64); Self::PROBES] {
        use std::hash::BuildHasher as _;
        let hash = self.hasher.hash_one(id);
        let step = hash.rotate_left(32) | 1;
        let mask = (1u64 << Self::BITS_LOG2) - 1;
        std::array::from_fn(|i| {
            let bit = hash.wrapping_add((i as u64).wrapping_mul(step)) & mask;
            ((bit >> 6) as usize, 1u64 << (bit & 63))
        })
    }

    pub(super) fn record(&mut self, id: &str) {
        for (word, bit) in self.probes(id) {
            self.bits[word] |= bit;
        }
    }

    pub(super) fn may_hold(&self, id: &str) -> bool {
        self.probes(id)
            .iter()
            .all(|&(word, bit)| self.bits[word] & bit != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::Written;

    #[test]
    fn a_bulk_fill_looks_up_every_dossier_it_wrote_and_few_others() {
        let mut written = Written::new();
        let ids: Vec<String> = (0..200_000).map(|n| format!("D{n:09}")).collect();
        for id in &ids {
            written.record(id);
        }
        // Never a false negative: a stored row is always looked up.
        assert!(ids.iter().all(|id| written.may_hold(id)));
        let others = (200_000..1_200_000)
            .filter(|n| written.may_hold(&format!("D{n:09}")))
            .count();
        assert!(
            others < 100,
            "{others} of 1,000,000 unwritten ids looked up"
        );
    }
}
