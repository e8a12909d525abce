//! TLS figures: handshakes by result, version and failure reason, the pool time of
//! handshake steps, handshakes in flight. Process-wide atomics (a handshake is rare next to
//! a request: one add each), shown once a TLS listener exists.

use super::metrics::{family, sample, Histogram};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

pub const FAILURES: usize = 6;

/// Why a handshake ended without a connection.
#[derive(Clone, Copy, Debug)]
pub enum Failure {
    /// Plain HTTP on the TLS port (answered 400).
    PlainHttp,
    /// The first bytes were not a TLS record.
    NotTls,
    /// rustls refused the client's messages (bad record, no common protocol, ...).
    Protocol,
    /// The client closed or reset mid-handshake.
    Eof,
    /// The header timeout ran out mid-handshake.
    Timeout,
    /// The pool job died.
    Internal,
}

const NAMES: [&str; FAILURES] = [
    "plain_http",
    "not_tls",
    "protocol",
    "eof",
    "timeout",
    "internal",
];

pub struct TlsFigures {
    pub enabled: AtomicBool,
    /// Handshake steps queued or running on the pool: TLS accepts pause at
    /// `tls.max_pending_handshakes`, so the pool's queue stays bounded.
    pub in_flight: AtomicUsize,
    pub full: AtomicU64,
    pub resumed: AtomicU64,
    pub tls12: AtomicU64,
    pub tls13: AtomicU64,
    pub failed: [AtomicU64; FAILURES],
    /// Handshake steps run on the pool.
    pub offloaded_steps: AtomicU64,
    /// Private-key operations (signatures) seen on a reactor thread: must stay 0.
    pub reactor_signatures: AtomicU64,
    /// Private-key operations anywhere else (the pool).
    pub pool_signatures: AtomicU64,
    /// Pool time of each handshake step.
    pub step_time: Histogram,
}

pub static TLS: TlsFigures = TlsFigures {
    enabled: AtomicBool::new(false),
    in_flight: AtomicUsize::new(0),
    full: AtomicU64::new(0),
    resumed: AtomicU64::new(0),
    tls12: AtomicU64::new(0),
    tls13: AtomicU64::new(0),
    failed: [const { AtomicU64::new(0) }; FAILURES],
    offloaded_steps: AtomicU64::new(0),
    reactor_signatures: AtomicU64::new(0),
    pool_signatures: AtomicU64::new(0),
    step_time: Histogram::new(),
};

pub fn fail(f: Failure) {
    TLS.failed[f as usize].fetch_add(1, Ordering::Relaxed);
}

/// Append the TLS series (nothing without a TLS listener).
pub fn render(out: &mut String) {
    let t = &TLS;
    if !t.enabled.load(Ordering::Relaxed) {
        return;
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let handshakes = "vireo_tls_handshakes_total";
    family(out, handshakes, "counter", "TLS handshakes, by result.");
    sample(out, handshakes, "result=\"full\"", load(&t.full));
    sample(out, handshakes, "result=\"resumed\"", load(&t.resumed));
    for (name, v) in NAMES.iter().zip(&t.failed) {
        let labels = format!("result=\"failed\",reason=\"{name}\"");
        sample(out, handshakes, &labels, load(v));
    }
    let versions = "vireo_tls_versions_total";
    let help = "Established TLS connections, by version.";
    family(out, versions, "counter", help);
    sample(out, versions, "version=\"1.2\"", load(&t.tls12));
    sample(out, versions, "version=\"1.3\"", load(&t.tls13));
    let in_flight = "vireo_tls_handshakes_in_flight";
    let help = "Handshake steps queued or running on the offload pool.";
    family(out, in_flight, "gauge", help);
    sample(out, in_flight, "", t.in_flight.load(Ordering::Relaxed));
    let offloaded = "vireo_tls_handshake_steps_offloaded_total";
    family(
        out,
        offloaded,
        "counter",
        "Handshake steps run on the pool.",
    );
    sample(out, offloaded, "", load(&t.offloaded_steps));
    let signatures = "vireo_tls_signatures_total";
    let help = "Handshake signatures by the thread that made them (reactor: always 0).";
    family(out, signatures, "counter", help);
    sample(out, signatures, "thread=\"pool\"", load(&t.pool_signatures));
    sample(
        out,
        signatures,
        "thread=\"reactor\"",
        load(&t.reactor_signatures),
    );
    t.step_time.render(
        out,
        "vireo_tls_handshake_step_seconds",
        "Pool time of one TLS handshake step.",
    );
}

thread_local! {
    static REACTOR_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Called once by each reactor thread: private-key operations seen on it are counted.
pub fn mark_reactor_thread() {
    REACTOR_THREAD.with(|r| r.set(true));
}

/// A private-key operation (a handshake signature) is being made on this thread.
pub fn note_signature() {
    let counter = match REACTOR_THREAD.with(|r| r.get()) {
        true => &TLS.reactor_signatures,
        false => &TLS.pool_signatures,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}
