//! The extended binary Golay code G24 (paper §2.3).
//!
//! G24 is the [24, 12, 8] code: 4096 words with weights 0/8/12/16/24 occurring 1/759/2576/759/1
//! times. We generate it from its cyclic construction (the [23, 12, 7] quadratic-residue code with
//! generator polynomial g(x) = 1 + x² + x⁴ + x⁵ + x⁶ + x¹⁰ + x¹¹, plus an overall parity bit) and
//! bring the generator matrix to systematic form, so a word's 12-bit *message* is read off its
//! information positions. The message is the word's rank among all 4096 words (used by odd
//! classes, A = 4096); `rank_in_weight` ranks a word among the words of its weight (even classes,
//! A ∈ {1, 759, 2576, 759, 1}).
//!
//! A word is a `u32` bit mask over coordinates 0..24 (bit i = coordinate i).

use std::sync::OnceLock;

/// Number of codewords.
pub const WORDS: usize = 4096;
/// The weights that occur, in increasing order.
pub const WEIGHTS: [u32; 5] = [0, 8, 12, 16, 24];

/// Generated tables of G24. Obtain the shared instance with [`golay`].
pub struct Golay {
    /// `word[msg]`: the codeword whose message is `msg`.
    word: Vec<u32>,
    /// Bit mask of the 12 information positions (systematic generator).
    info_positions: [u8; 12],
    /// `rank_in_weight[msg]`: rank of `word[msg]` among words of its weight (ascending masks).
    rank_in_weight: Vec<u16>,
    /// `by_weight[k]`: the words of weight `WEIGHTS[k]`, ascending.
    by_weight: [Vec<u32>; 5],
    /// `column[i]`: column i of the systematic generator, as a 12-bit message mask; coordinate i
    /// of `word[msg]` is the parity of `msg & column[i]` (used by the search's Walsh transform).
    column: [u16; 24],
}

/// The shared Golay tables (built on first use).
pub fn golay() -> &'static Golay {
    static G: OnceLock<Golay> = OnceLock::new();
    G.get_or_init(Golay::build)
}

/// Index of `w` in [`WEIGHTS`], or `None` when no codeword has that weight.
pub fn weight_slot(w: u32) -> Option<usize> {
    WEIGHTS.iter().position(|&x| x == w)
}

impl Golay {
    fn build() -> Golay {
        // Cyclic [23,12] code rows: x^k g(x), k = 0..12, extended by overall parity at bit 23.
        const G_POLY: u32 = 0b1100_0111_0101; // 1 + x^2 + x^4 + x^5 + x^6 + x^10 + x^11
        let mut rows: Vec<u32> = (0..12)
            .map(|k| {
                let r = G_POLY << k;
                r | ((r.count_ones() & 1) << 23)
            })
            .collect();
        // Gauss-Jordan elimination: pivot columns become the information set.
        let mut pivots = [0u8; 12];
        let mut row = 0;
        for col in 0..24u8 {
            if row == 12 {
                break;
            }
            let Some(p) = (row..12).find(|&r| rows[r] >> col & 1 == 1) else {
                continue;
            };
            rows.swap(row, p);
            for r in 0..12 {
                if r != row && rows[r] >> col & 1 == 1 {
                    rows[r] ^= rows[row];
                }
            }
            pivots[row] = col;
            row += 1;
        }
        assert_eq!(row, 12, "Golay generator must have rank 12");
        let word: Vec<u32> = (0..WORDS as u32)
            .map(|m| (0..12).filter(|&k| m >> k & 1 == 1).fold(0, |acc, k| acc ^ rows[k]))
            .collect();
        let mut column = [0u16; 24];
        for (i, c) in column.iter_mut().enumerate() {
            *c = (0..12)
                .filter(|&k| rows[k] >> i & 1 == 1)
                .fold(0, |acc, k| acc | 1 << k);
        }
        let mut by_weight: [Vec<u32>; 5] = Default::default();
        for &w in &word {
            let slot = weight_slot(w.count_ones()).expect("Golay word of impossible weight");
            by_weight[slot].push(w);
        }
        for v in &mut by_weight {
            v.sort_unstable();
        }
        let mut g = Golay {
            word,
            info_positions: pivots,
            rank_in_weight: vec![0; WORDS],
            by_weight,
            column,
        };
        for m in 0..WORDS {
            let w = g.word[m];
            let slot = weight_slot(w.count_ones()).unwrap();
            let r = g.by_weight[slot].binary_search(&w).unwrap();
            g.rank_in_weight[m] = r as u16;
        }
        g
    }

    /// The codeword with message (global rank) `msg < 4096`.
    #[inline]
    pub fn word(&self, msg: usize) -> u32 {
        self.word[msg]
    }

    /// The message of `word` (its bits at the information positions). Only meaningful when
    /// `word` is a codeword; check with [`Golay::contains`].
    #[inline]
    pub fn message(&self, word: u32) -> usize {
        let mut m = 0usize;
        for (k, &p) in self.info_positions.iter().enumerate() {
            m |= ((word >> p & 1) as usize) << k;
        }
        m
    }

    /// Whether a 24-bit mask is a Golay codeword.
    #[inline]
    pub fn contains(&self, word: u32) -> bool {
        word < 1 << 24 && self.word[self.message(word)] == word
    }

    /// Rank of a codeword among the codewords of its weight.
    #[inline]
    pub fn rank_in_weight(&self, word: u32) -> usize {
        self.rank_in_weight[self.message(word)] as usize
    }

    /// The `rank`-th codeword of weight `WEIGHTS[slot]`.
    #[inline]
    pub fn word_of_weight(&self, slot: usize, rank: usize) -> u32 {
        self.by_weight[slot][rank]
    }

    /// The codewords of weight `WEIGHTS[slot]`, ascending.
    pub fn words_of_weight(&self, slot: usize) -> &[u32] {
        &self.by_weight[slot]
    }

    /// Column i of the systematic generator as a message mask.
    #[inline]
    pub fn column(&self, i: usize) -> u16 {
        self.column[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_distribution() {
        let g = golay();
        let counts: Vec<usize> = (0..5).map(|s| g.words_of_weight(s).len()).collect();
        assert_eq!(counts, vec![1, 759, 2576, 759, 1]);
    }

    #[test]
    fn linear_and_distinct() {
        let g = golay();
        let mut seen = std::collections::HashSet::new();
        for m in 0..WORDS {
            assert!(seen.insert(g.word(m)));
            assert_eq!(g.message(g.word(m)), m);
            // Linearity: word(a ^ b) = word(a) ^ word(b).
            let b = (m * 2654435761) % WORDS;
            assert_eq!(g.word(m ^ b), g.word(m) ^ g.word(b));
        }
    }

    #[test]
    fn ranks_round_trip() {
        let g = golay();
        for (slot, &w) in WEIGHTS.iter().enumerate() {
            for (r, &word) in g.words_of_weight(slot).iter().enumerate() {
                assert_eq!(word.count_ones(), w);
                assert_eq!(g.rank_in_weight(word), r);
                assert_eq!(g.word_of_weight(slot, r), word);
            }
        }
    }

    #[test]
    fn columns_generate_words() {
        let g = golay();
        for m in [0usize, 1, 77, 1234, 4095] {
            let w = g.word(m);
            for i in 0..24 {
                let bit = (m as u16 & g.column(i)).count_ones() & 1;
                assert_eq!(w >> i & 1, bit);
            }
        }
    }

    #[test]
    fn contains_exactly_the_code() {
        // Every 24-bit mask: exactly 4096 are accepted, and the accepted ones are the words.
        let g = golay();
        let accepted = (0u32..1 << 24).filter(|&x| g.contains(x)).count();
        assert_eq!(accepted, WORDS);
        assert!(!g.contains(1 << 24));
    }
}
