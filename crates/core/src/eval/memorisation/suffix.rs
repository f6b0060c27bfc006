//! A suffix array over the bytes of a training text, for finding which spans of a generated
//! text occur in it verbatim (Manber & Myers, "Suffix arrays: a new method for on-line string
//! searches", 1993).
//!
//! Built by prefix doubling (rank pairs sorted in parallel, O(n log^2 n)); a lookup narrows
//! the range of suffixes that start with a growing prefix of the query by binary search, so
//! the longest prefix of a query found in the text costs O(match length x log n).

use rayon::prelude::*;

/// The sorted suffixes of a text.
pub struct SuffixArray {
    text: Vec<u8>,
    /// Start offsets of the suffixes, in lexicographic order.
    sa: Vec<u32>,
}

impl SuffixArray {
    /// Sorts every suffix of `text` (up to 4 GiB).
    pub fn new(text: &[u8]) -> Self {
        let n = text.len();
        assert!(n < u32::MAX as usize, "suffix arrays here hold up to 4 GiB");
        let mut sa: Vec<u32> = (0..n as u32).collect();
        // rank[i]: the class of suffix i by its first k bytes (0 is reserved for "past the end").
        let mut rank: Vec<u32> = text.iter().map(|&b| b as u32 + 1).collect();
        let mut k = 1;
        let mut next = vec![0u32; n];
        if n <= 1 {
            return Self {
                text: text.to_vec(),
                sa,
            };
        }
        loop {
            let key = |i: u32| -> u64 {
                let i = i as usize;
                let second = if i + k < n { rank[i + k] } else { 0 };
                ((rank[i] as u64) << 32) | second as u64
            };
            sa.par_sort_unstable_by_key(|&i| key(i));
            next[sa[0] as usize] = 1;
            for w in 1..n {
                let (a, b) = (sa[w - 1], sa[w]);
                next[b as usize] = next[a as usize] + u32::from(key(a) != key(b));
            }
            std::mem::swap(&mut rank, &mut next);
            if rank[sa[n - 1] as usize] as usize == n {
                break;
            }
            k *= 2;
        }
        Self {
            text: text.to_vec(),
            sa,
        }
    }

    /// Rebuilds an index from its text and the suffix order [`SuffixArray::order`] gave, checking
    /// that the order is a plausible one for this text (`None` when not).
    pub fn from_parts(text: &[u8], sa: Vec<u32>) -> Option<Self> {
        let n = text.len();
        if sa.len() != n || sa.iter().any(|&s| s as usize >= n) {
            return None;
        }
        // Spot checks: neighbours in order, spread over the array.
        let step = (n / 1000).max(1);
        let sorted = (1..n)
            .step_by(step)
            .all(|w| text[sa[w - 1] as usize..] < text[sa[w] as usize..]);
        sorted.then(|| Self {
            text: text.to_vec(),
            sa,
        })
    }

    /// The start offsets of the suffixes, in sorted order.
    pub fn order(&self) -> &[u32] {
        &self.sa
    }

    /// The indexed text.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Number of suffixes (the text's length in bytes).
    pub fn len(&self) -> usize {
        self.sa.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sa.is_empty()
    }

    /// Whether `pattern` occurs in the text (the empty pattern always does).
    pub fn contains(&self, pattern: &[u8]) -> bool {
        self.longest_prefix(pattern).0 == pattern.len()
    }

    /// The longest prefix of `query` that occurs in the text: its length in bytes and one
    /// offset where it occurs (`None` when not even the first byte does).
    pub fn longest_prefix(&self, query: &[u8]) -> (usize, Option<usize>) {
        let (mut lo, mut hi) = (0, self.sa.len());
        let mut matched = 0;
        while matched < query.len() && lo < hi {
            let c = query[matched];
            // Suffixes in [lo, hi) share query[..matched]; keep those whose next byte is c
            // (a suffix that ends at `matched` sorts first).
            let byte_at = |s: u32| self.text.get(s as usize + matched).copied();
            let range = &self.sa[lo..hi];
            let first = range.partition_point(|&s| byte_at(s).is_none_or(|b| b < c));
            let last = range.partition_point(|&s| byte_at(s).is_none_or(|b| b <= c));
            if first == last {
                break;
            }
            (lo, hi) = (lo + first, lo + last);
            matched += 1;
        }
        let at = (matched > 0).then(|| self.sa[lo] as usize);
        (matched, at)
    }

    /// For each start offset of `query`, the length of the longest span starting there that
    /// occurs in the text (the matching statistics of `query`), with one offset of it.
    pub fn matching_statistics(&self, query: &[u8]) -> Vec<(usize, Option<usize>)> {
        (0..query.len())
            .into_par_iter()
            .map(|i| self.longest_prefix(&query[i..]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_longest(text: &[u8], q: &[u8]) -> usize {
        (0..=q.len())
            .rev()
            .find(|&l| l == 0 || text.windows(l).any(|w| w == &q[..l]))
            .unwrap_or(0)
    }

    #[test]
    fn sorted_like_a_naive_sort() {
        for text in [
            &b"banana"[..],
            b"mississippi",
            b"aaaaaaa",
            b"abcabcabcab",
            b"x",
        ] {
            let sa = SuffixArray::new(text);
            let mut naive: Vec<u32> = (0..text.len() as u32).collect();
            naive.sort_by_key(|&i| &text[i as usize..]);
            assert_eq!(sa.sa, naive, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn lookups_agree_with_naive_search() {
        let text = b"to be, or not to be: that is the question; to bear or not to bear";
        let sa = SuffixArray::new(text);
        for q in [
            &b"to be"[..],
            b"not to bear!",
            b"question",
            b"questions",
            b"zebra",
            b"",
            b"r or n",
            b"bear or not to be",
        ] {
            let (len, at) = sa.longest_prefix(q);
            assert_eq!(
                len,
                naive_longest(text, q),
                "{}",
                String::from_utf8_lossy(q)
            );
            if let Some(at) = at {
                assert_eq!(&text[at..at + len], &q[..len]);
            } else {
                assert_eq!(len, 0);
            }
            assert_eq!(
                sa.contains(q),
                text.windows(q.len().max(1)).any(|w| w == q) || q.is_empty()
            );
        }
        let q = b"that is the quest for not to bear";
        let stats = sa.matching_statistics(q);
        for (i, (len, _)) in stats.iter().enumerate() {
            assert_eq!(*len, naive_longest(text, &q[i..]), "offset {i}");
        }
    }

    #[test]
    fn random_texts_agree_with_naive_search() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..20 {
            let n = rng.random_range(1..300);
            let text: Vec<u8> = (0..n).map(|_| b"abc"[rng.random_range(0..3)]).collect();
            let sa = SuffixArray::new(&text);
            let mut naive: Vec<u32> = (0..n as u32).collect();
            naive.sort_by_key(|&i| &text[i as usize..]);
            assert_eq!(sa.sa, naive);
            let q: Vec<u8> = (0..40).map(|_| b"abcd"[rng.random_range(0..4)]).collect();
            for i in 0..q.len() {
                assert_eq!(sa.longest_prefix(&q[i..]).0, naive_longest(&text, &q[i..]));
            }
        }
    }
}
