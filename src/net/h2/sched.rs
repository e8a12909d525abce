//! Which stream's DATA goes next: RFC 9218 extensible priorities. The lowest urgency
//! with a stream ready to send wins; within it, a non-incremental stream (the default)
//! is sent whole before the next one, in stream-id order, and only when none is ready do
//! the incremental ones share the connection round robin, a frame each. A stream blocked
//! (flow control, a cold file window, a pool job) is not ready, so the next one goes:
//! the connection never idles behind a stalled stream.

use crate::http::h2::priority::Priority;

/// The stream to frame next among `ready` (ascending stream ids, as a `BTreeMap` yields
/// them); `last` is the incremental stream served last (round robin starts after it).
pub fn pick(ready: impl Iterator<Item = (u32, Priority)>, last: u32) -> Option<u32> {
    let mut urgency = u8::MAX;
    // The first non-incremental stream, the first incremental one after `last`, and the
    // first incremental one at all (wrapping around), of the lowest urgency seen.
    let (mut whole, mut next, mut first) = (None, None, None);
    for (id, p) in ready {
        if p.urgency > urgency {
            continue;
        }
        if p.urgency < urgency {
            urgency = p.urgency;
            (whole, next, first) = (None, None, None);
        }
        if !p.incremental {
            whole = whole.or(Some(id));
        } else {
            first = first.or(Some(id));
            if id > last {
                next = next.or(Some(id));
            }
        }
    }
    whole.or(next).or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(urgency: u8, incremental: bool) -> Priority {
        Priority {
            urgency,
            incremental,
        }
    }

    /// The order in which streams of `sizes` frames each finish their frames.
    fn run(streams: &[(u32, Priority, usize)]) -> Vec<u32> {
        let mut left: Vec<(u32, Priority, usize)> = streams.to_vec();
        left.sort_by_key(|s| s.0); // as a BTreeMap yields them
        let (mut last, mut order) = (0, Vec::new());
        while let Some(id) = pick(left.iter().filter(|s| s.2 > 0).map(|s| (s.0, s.1)), last) {
            let s = left
                .iter_mut()
                .find(|s| s.0 == id)
                .expect("picked a ready stream");
            s.2 -= 1;
            if s.1.incremental {
                last = id;
            }
            order.push(id);
        }
        order
    }

    #[test]
    fn lower_urgency_goes_first_whatever_the_ids() {
        let order = run(&[(1, p(5, false), 2), (3, p(1, false), 2), (5, p(3, true), 1)]);
        assert_eq!(order, [3, 3, 5, 1, 1]);
    }

    #[test]
    fn non_incremental_streams_go_whole_in_id_order() {
        let order = run(&[
            (7, p(3, false), 2),
            (1, p(3, false), 3),
            (5, p(3, false), 1),
        ]);
        assert_eq!(order, [1, 1, 1, 5, 7, 7]);
    }

    #[test]
    fn incremental_streams_interleave_round_robin() {
        let order = run(&[(1, p(2, true), 3), (3, p(2, true), 1), (5, p(2, true), 2)]);
        assert_eq!(order, [1, 3, 5, 1, 5, 1]);
    }

    #[test]
    fn within_an_urgency_non_incremental_streams_go_before_incremental_ones() {
        let order = run(&[(1, p(3, true), 2), (3, p(3, false), 2), (5, p(3, true), 1)]);
        assert_eq!(order, [3, 3, 1, 5, 1]);
    }

    #[test]
    fn nothing_ready_picks_nothing() {
        assert_eq!(pick(std::iter::empty(), 0), None);
        // A stream that is not ready (not offered) does not hold the others back.
        assert_eq!(pick([(9, p(7, false))].into_iter(), 0), Some(9));
    }
}
