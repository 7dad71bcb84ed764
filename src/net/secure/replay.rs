//! Sliding anti-replay window over the 64-bit datagram counters of one session.
//!
//! Only counters of datagrams that already passed authentication are recorded, so a
//! stranger cannot move the window: a forged counter never gets this far.

/// Counters up to this far below the highest seen are accepted once; older ones are refused.
// refused because we no longer remember whether they were seen
pub const WINDOW: u64 = 2048;
const WORDS: usize = (WINDOW / 64) as usize;

/// Remembers which of the last [`WINDOW`] counters were seen.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// One more than the highest counter accepted; 0 before the first.
    next: u64,
    /// Bit `c % WINDOW` is set when counter `c` (within the window) was seen.
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// An empty window.
    pub fn new() -> Self {
        Self {
            next: 0,
            bits: [0; WORDS],
        }
    }

    /// Would `counter` be accepted? Does not record it.
    pub fn check(&self, counter: u64) -> bool {
        if counter >= self.next {
            return true;
        }
        if self.next - counter > WINDOW {
            return false;
        }
        !self.get(counter)
    }

    /// Records `counter` if it is new and within the window; false for a replay or a
    /// counter too old to tell.
    pub fn accept(&mut self, counter: u64) -> bool {
        if counter >= self.next {
            // slots between the old top and the new one now stand for newer counters
            // saturating: counter may be u64::MAX (found by fuzzing: a wrapped advance of 0
            // would walk the whole counter range)
            let advance = (counter - self.next).saturating_add(1);
            if advance >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                for c in self.next..=counter {
                    self.clear(c);
                }
            }
            self.set(counter);
            // counter < u64::MAX: the caller never accepts the reserved last counter
            self.next = counter.saturating_add(1);
            return true;
        }
        if self.next - counter > WINDOW || self.get(counter) {
            return false;
        }
        self.set(counter);
        true
    }

    // ok (indexing below): i < WINDOW, so i / 64 < WORDS
    fn slot(counter: u64) -> (usize, u64) {
        let i = (counter % WINDOW) as usize;
        (i / 64, 1u64 << (i % 64))
    }

    fn get(&self, counter: u64) -> bool {
        let (w, m) = Self::slot(counter);
        self.bits[w] & m != 0
    }

    fn set(&mut self, counter: u64) {
        let (w, m) = Self::slot(counter);
        self.bits[w] |= m;
    }

    fn clear(&mut self, counter: u64) {
        let (w, m) = Self::slot(counter);
        self.bits[w] &= !m;
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_largest_counter_neither_overflows_nor_hangs() {
        let mut w = ReplayWindow::new();
        assert!(w.accept(3));
        // the caller never uses the last counter; here it only must not overflow or hang
        assert!(w.accept(u64::MAX));
        assert!(!w.accept(3), "far behind the window now");
    }

    use super::*;

    #[test]
    fn in_order_reordered_and_replayed() {
        let mut w = ReplayWindow::new();
        assert!(w.accept(0));
        assert!(!w.accept(0));
        assert!(w.accept(5));
        assert!(w.accept(3));
        assert!(!w.accept(3));
        assert!(w.accept(4));
        assert!(w.check(1));
        assert!(w.accept(1));
        assert!(!w.check(1));
    }

    #[test]
    fn too_old_is_refused_and_the_edge_is_exact() {
        let mut w = ReplayWindow::new();
        assert!(w.accept(10_000));
        // next = 10_001: the window holds 10_001 - 2048 ..= 10_000
        assert!(w.accept(10_001 - WINDOW));
        assert!(!w.accept(10_000 - WINDOW));
        assert!(!w.accept(0));
        assert!(w.accept(20_000));
        assert!(!w.accept(10_000));
    }

    #[test]
    fn a_jump_forgets_stale_bits() {
        let mut w = ReplayWindow::new();
        for c in 0..WINDOW {
            assert!(w.accept(c));
        }
        // counter 2048 reuses the slot of 0, which must read as unseen
        assert!(w.accept(WINDOW));
        assert!(w.accept(WINDOW + 100));
        assert!(!w.accept(WINDOW));
        assert!(w.accept(WINDOW + 50));
        assert!(!w.accept(50));
    }

    #[test]
    fn matches_a_naive_model() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut w = ReplayWindow::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut top: Option<u64> = None;
        for _ in 0..20_000 {
            let base = top.unwrap_or(0);
            let c = base
                .saturating_add(rng.gen_range(0..3000))
                .saturating_sub(2500);
            let expect = match top {
                None => true,
                Some(t) => (c > t || t - c < WINDOW) && !seen.contains(&c),
            };
            assert_eq!(w.accept(c), expect, "counter {c}, top {top:?}");
            if expect {
                seen.insert(c);
                top = Some(top.map_or(c, |t| t.max(c)));
            }
        }
    }
}
