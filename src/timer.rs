//! Deadlines as data. Every timeout class has one fixed duration, so deadlines pushed into
//! a class arrive in order: a FIFO per class is a sorted queue with O(1) insert. Nothing is
//! ever removed early: an entry carries the (slot, generation) it was armed for and the
//! deadline, and is ignored on expiry if the connection has since moved on (lazy
//! cancellation, as nginx's timer tree does with its `timer_set` check). The poll timeout is
//! the nearest head of all queues; no tick scans the connections.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Timeout classes, each with its own duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// From accept (or the first byte of a keep-alive request) to a complete head.
    Header = 0,
    /// Idle between requests.
    KeepAlive = 1,
    /// No progress reading a request body.
    Body = 2,
    /// No progress writing a response.
    Send = 3,
    /// Lingering close: reading what the client still sends after our last response.
    Linger = 4,
    /// Graceful drain: an idle keep-alive connection gets this grace to send a request
    /// already on its way (answered with `Connection: close`) before it is closed.
    Drain = 5,
}

pub const CLASSES: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub deadline: Instant,
    pub slot: usize,
    pub generation: u32,
    pub class: Class,
}

pub struct Timers {
    durations: [Duration; CLASSES],
    queues: [VecDeque<Entry>; CLASSES],
}

impl Timers {
    pub fn new(durations: [Duration; CLASSES]) -> Timers {
        Timers {
            durations,
            queues: Default::default(),
        }
    }

    pub fn duration(&self, class: Class) -> Duration {
        self.durations[class as usize]
    }

    /// Arm `class` for a connection whose countdown started at `since`; returns the deadline
    /// the caller must remember to recognise this entry on expiry.
    pub fn arm(&mut self, class: Class, since: Instant, slot: usize, generation: u32) -> Instant {
        let deadline = since + self.durations[class as usize];
        let q = &mut self.queues[class as usize];
        // `since` may lie slightly in the past (header countdown from accept); keep the
        // queue sorted by inserting from the back, which is O(1) in the common case.
        let mut at = q.len();
        while at > 0 && q[at - 1].deadline > deadline {
            at -= 1;
        }
        q.insert(
            at,
            Entry {
                deadline,
                slot,
                generation,
                class,
            },
        );
        deadline
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
        let d = next.saturating_duration_since(now);
        let ms = d.as_nanos().div_ceil(1_000_000);
        Some(Duration::from_millis(ms as u64))
    }

    /// Pop every entry due at `now` (stale ones included: the caller checks them).
    pub fn expired(&mut self, now: Instant, out: &mut Vec<Entry>) {
        for q in &mut self.queues {
            while let Some(e) = q.front() {
                if e.deadline > now {
                    break;
                }
                out.push(*e);
                q.pop_front();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.queues.iter().map(|q| q.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_deadline_drives_the_timeout_and_expiry_is_ordered() {
        let s = Duration::from_secs(1);
        let mut t = Timers::new([s * 10, s * 75, s * 30, s * 30, s * 5, s]);
        let now = Instant::now();
        t.arm(Class::KeepAlive, now, 1, 1);
        t.arm(Class::Header, now, 2, 1);
        assert_eq!(t.next_timeout(now), Some(s * 10));
        let mut out = Vec::new();
        t.expired(now + s * 11, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].slot, 2);
        t.expired(now + s * 80, &mut out);
        assert_eq!(out.len(), 2);
        assert!(t.is_empty());
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
}
