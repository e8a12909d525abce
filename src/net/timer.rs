//! Deadlines as data. Every timeout class has one fixed duration, so deadlines pushed into
//! a class arrive (almost) in order: a FIFO per class is a sorted queue with O(1) insert.
//! The poll timeout is the nearest head of all queues; no tick scans the connections.
//!
//! Each connection slot has at most one queued entry per class, and it is re-armed lazily
//! (nginx's `timer_set` idea): a connection that makes progress only moves its wanted
//! deadline forward; the queued entry stays and, when it fires early, is re-queued at the
//! wanted deadline. Entries of closed connections (and the rare entry superseded by an
//! earlier deadline) are garbage; the queues are compacted once garbage outnumbers live
//! entries, so memory is O(connections), never O(requests in the last keep-alive period).

use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A point in time in 8 bytes where an `Instant` takes 16 (every idle connection keeps
/// four): nanoseconds since a process-wide origin, plus one so that `Option<Stamp>` is 8
/// bytes too. u64 nanoseconds span 584 years.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp(NonZeroU64);

impl Stamp {
    fn origin() -> Instant {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now)
    }

    /// `t`, or the origin if `t` is earlier (only a few microseconds at start can be).
    pub fn of(t: Instant) -> Stamp {
        let n = t.saturating_duration_since(Self::origin()).as_nanos();
        let n = u64::try_from(n).unwrap_or(u64::MAX - 1).min(u64::MAX - 1);
        Stamp(NonZeroU64::new(n + 1).unwrap_or(NonZeroU64::MIN))
    }

    pub fn instant(self) -> Instant {
        Self::origin() + Duration::from_nanos(self.0.get() - 1)
    }
}

/// The classes are the configuration's table (`config::timeouts`), which `ops::metrics`
/// also counts by; here each gets its own queue.
pub use crate::config::{TimeoutClass as Class, CLASSES};

/// A connection whose wanted deadline has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired {
    pub slot: usize,
    pub generation: u32,
    pub class: Class,
}

/// A queued deadline, in nanoseconds since `Timers::base` (u64 spans 584 years).
#[derive(Clone, Copy, Debug)]
struct Entry {
    deadline: u64,
    slot: u32,
    generation: u32,
}

/// A slot's timer state. `queued[c]` is the deadline of its live entry in queue `c`
/// (0 = none: a deadline is never at the base instant itself, see `nanos`).
#[derive(Clone, Copy, Default)]
struct SlotState {
    generation: u32,
    want: Option<(Class, u64)>,
    queued: [u64; CLASSES],
}

pub struct Timers {
    base: Instant,
    durations: [Duration; CLASSES],
    queues: [VecDeque<Entry>; CLASSES],
    slots: Vec<SlotState>,
    /// Entries in the queues that some slot's `queued` points at.
    live: usize,
}

impl Timers {
    pub fn new(durations: [Duration; CLASSES]) -> Timers {
        Timers {
            base: Instant::now(),
            durations,
            queues: Default::default(),
            slots: Vec::new(),
            live: 0,
        }
    }

    pub fn duration(&self, class: Class) -> Duration {
        self.durations[class as usize]
    }

    /// `at` as nanoseconds since the base, at least 1 (0 marks "none"); saturating, so a
    /// huge duration means "never", not a panic.
    fn nanos(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.base);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    fn deadline(&self, class: Class, since: Instant) -> u64 {
        let dur = self.durations[class as usize];
        let start = self.nanos(since);
        let dur = u64::try_from(dur.as_nanos()).unwrap_or(u64::MAX);
        start.saturating_add(dur)
    }

    fn state(&mut self, slot: usize, generation: u32) -> &mut SlotState {
        if slot >= self.slots.len() {
            self.slots.resize(slot + 1, SlotState::default());
        }
        if self.slots[slot].generation != generation {
            // A new connection in a reused slot: whatever the old one left is garbage.
            let old = std::mem::take(&mut self.slots[slot]);
            self.live -= old.queued.iter().filter(|&&d| d != 0).count();
            self.slots[slot].generation = generation;
        }
        &mut self.slots[slot]
    }

    /// The connection in `slot` now waits in `class`, its countdown started at `since`.
    /// Replaces whatever it waited for before.
    pub fn arm(&mut self, class: Class, since: Instant, slot: usize, generation: u32) {
        let deadline = self.deadline(class, since);
        let c = class as usize;
        let s = self.state(slot, generation);
        s.want = Some((class, deadline));
        let queued = s.queued[c];
        if queued != 0 && queued <= deadline {
            return; // fires no later than needed; `expired` re-queues it if early
        }
        s.queued[c] = deadline;
        if queued == 0 {
            self.live += 1;
        }
        self.push(c, slot, generation, deadline);
    }

    /// What the connection in `slot` waits for, if anything.
    pub fn wanted(&self, slot: usize, generation: u32) -> Option<Class> {
        let s = self.slots.get(slot)?;
        if s.generation != generation {
            return None;
        }
        s.want.map(|(c, _)| c)
    }

    /// The connection in `slot` is gone: its entries become garbage.
    pub fn cancel(&mut self, slot: usize) {
        if let Some(s) = self.slots.get_mut(slot) {
            let old = std::mem::take(s);
            self.live -= old.queued.iter().filter(|&&d| d != 0).count();
            // Keep the generation so a late `wanted` for the old one still says None.
            s.generation = old.generation;
        }
    }

    fn push(&mut self, c: usize, slot: usize, generation: u32, deadline: u64) {
        let q = &mut self.queues[c];
        // A countdown may have started slightly in the past (header from accept); keep the
        // queue sorted by inserting from the back, O(1) in the common case.
        let mut at = q.len();
        while at > 0 && q[at - 1].deadline > deadline {
            at -= 1;
        }
        q.insert(
            at,
            Entry {
                deadline,
                slot: slot as u32,
                generation,
            },
        );
        if self.queued_len() > 2 * self.live + 64 {
            self.compact();
        }
    }

    fn is_live(slots: &[SlotState], c: usize, e: &Entry) -> bool {
        slots
            .get(e.slot as usize)
            .is_some_and(|s| s.generation == e.generation && s.queued[c] == e.deadline)
    }

    /// Drop every garbage entry; amortised O(1) per push, since the queues are at least
    /// half garbage when this runs.
    fn compact(&mut self) {
        let slots = &self.slots;
        for (c, q) in self.queues.iter_mut().enumerate() {
            q.retain(|e| Self::is_live(slots, c, e));
        }
    }

    /// Time until the nearest deadline, rounded up to whole milliseconds so a poll that
    /// wakes "on time" never finds the entry a few microseconds early and spins.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let next = self
            .queues
            .iter()
            .filter_map(|q| q.front())
            .map(|e| e.deadline)
            .min()?;
        let d = next.saturating_sub(self.nanos(now));
        Some(Duration::from_millis(d.div_ceil(1_000_000)))
    }

    /// Collect the connections whose wanted deadline has passed by `now`. Garbage is
    /// dropped; an entry that fired early for a connection that made progress is re-queued.
    pub fn expired(&mut self, now: Instant, out: &mut Vec<Expired>) {
        let now = self.nanos(now);
        for class in Class::ALL {
            let c = class as usize;
            while let Some(e) = self.queues[c].front().copied() {
                if e.deadline > now {
                    break;
                }
                self.queues[c].pop_front();
                if !Self::is_live(&self.slots, c, &e) {
                    continue;
                }
                let slot = e.slot as usize;
                let s = &mut self.slots[slot];
                s.queued[c] = 0;
                self.live -= 1;
                match s.want {
                    Some((w, d)) if w == class && d <= now => {
                        s.want = None;
                        out.push(Expired {
                            slot,
                            generation: e.generation,
                            class,
                        });
                    }
                    Some((w, d)) if w == class => {
                        s.queued[c] = d;
                        self.live += 1;
                        self.push(c, slot, e.generation, d);
                    }
                    // Waiting in another class now: that class has its own entry.
                    _ => {}
                }
            }
        }
    }

    /// Entries in the queues, garbage included.
    pub fn queued_len(&self) -> usize {
        self.queues.iter().map(|q| q.len()).sum()
    }

    /// Entries some connection still waits on.
    pub fn live(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn durations() -> [Duration; CLASSES] {
        let s = Duration::from_secs(1);
        [
            s * 10,
            s * 75,
            s * 30,
            s * 30,
            s * 5,
            s,
            Duration::ZERO,
            s * 5,
        ]
    }

    #[test]
    fn nearest_deadline_drives_the_timeout_and_expiry_is_ordered() {
        let s = Duration::from_secs(1);
        let mut t = Timers::new(durations());
        let now = Instant::now();
        t.arm(Class::KeepAlive, now, 1, 1);
        t.arm(Class::Header, now, 2, 1);
        let next = t.next_timeout(now).unwrap();
        assert!(next <= s * 10 && next > s * 9, "{next:?}");
        let mut out = Vec::new();
        t.expired(now + s * 11, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].slot, out[0].class), (2, Class::Header));
        t.expired(now + s * 80, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(t.queued_len(), 0);
        assert_eq!(t.live(), 0);
    }

    #[test]
    fn an_earlier_start_is_inserted_in_order() {
        let s = Duration::from_secs(1);
        let mut t = Timers::new([s; CLASSES]);
        let now = Instant::now();
        t.arm(Class::Header, now + s, 1, 1);
        t.arm(Class::Header, now, 2, 1);
        let mut out = Vec::new();
        t.expired(now + s + Duration::from_millis(1), &mut out);
        assert_eq!(out.iter().map(|e| e.slot).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn progress_moves_the_deadline_without_queueing_more() {
        let s = Duration::from_secs(1);
        let mut t = Timers::new(durations());
        let now = Instant::now();
        // Many requests whose heads come in two segments: Header then KeepAlive, again and
        // again. Each class keeps its one entry.
        for i in 0..10_000u32 {
            let at = now + Duration::from_micros(i as u64 * 100);
            t.arm(Class::Header, at, 3, 7);
            t.arm(Class::KeepAlive, at, 3, 7);
        }
        assert_eq!(t.queued_len(), 2);
        let mut out = Vec::new();
        // The first KeepAlive entry fires early: re-queued, not expired.
        t.expired(now + s * 75 + Duration::from_millis(500), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(t.wanted(3, 7), Some(Class::KeepAlive));
        t.expired(now + s * 77, &mut out);
        assert_eq!(
            out,
            vec![Expired {
                slot: 3,
                generation: 7,
                class: Class::KeepAlive
            }]
        );
        assert_eq!(t.wanted(3, 7), None);
    }

    #[test]
    fn closed_connections_leave_bounded_garbage() {
        let mut t = Timers::new(durations());
        let now = Instant::now();
        // 100,000 short connections through 16 slots: each armed then closed.
        for i in 0..100_000u32 {
            let slot = (i % 16) as usize;
            t.arm(Class::Header, now, slot, i + 1);
            t.arm(Class::KeepAlive, now, slot, i + 1);
            t.cancel(slot);
        }
        assert_eq!(t.live(), 0);
        assert!(t.queued_len() <= 64 + 2, "{} entries", t.queued_len());
        let mut out = Vec::new();
        t.expired(now + Duration::from_secs(100), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_reused_slot_does_not_inherit_timers() {
        let s = Duration::from_secs(1);
        let mut t = Timers::new(durations());
        let now = Instant::now();
        t.arm(Class::Header, now, 0, 1);
        // Slot 0 reused by generation 2 without a cancel: the old entry is garbage.
        t.arm(Class::KeepAlive, now, 0, 2);
        assert_eq!(t.live(), 1);
        assert_eq!(t.wanted(0, 1), None);
        let mut out = Vec::new();
        t.expired(now + s * 11, &mut out);
        assert!(out.is_empty());
        t.expired(now + s * 76, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].generation, 2);
    }

    #[test]
    fn huge_durations_never_fire_and_never_panic() {
        let mut t = Timers::new([Duration::MAX; CLASSES]);
        let now = Instant::now();
        t.arm(Class::Send, now, 0, 1);
        let mut out = Vec::new();
        t.expired(now + Duration::from_secs(1 << 30), &mut out);
        assert!(out.is_empty());
        assert!(t.next_timeout(now).is_some());
    }
}
