//! Fault injection for the tests (cargo feature `fault-injection` only; never in a normal
//! build). A request carrying `X-Vireo-Fault: panic` panics inside the connection's
//! handling (the reactor must contain it); `X-Vireo-Fault: reactor` makes the reactor panic
//! outside that containment (the process must exit 1). `VIREO_FAULT_BUILD_FAIL=N` fails the
//! N-th reactor built in the process (counting from 0), to break a reload halfway.
//! `VIREO_FAULT_COLD_DELAY_MS=N` makes every cold-window job wait N ms before it starts, as
//! behind a hung disk.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

thread_local! {
    static REACTOR_FAULT: Cell<bool> = const { Cell::new(false) };
}

static BUILDS: AtomicUsize = AtomicUsize::new(0);

/// Called with each parsed request head.
pub fn on_request(head: &[u8]) {
    if memchr::memmem::find(head, b"\r\nX-Vireo-Fault: panic\r\n").is_some() {
        panic!("injected fault: panic");
    }
    if memchr::memmem::find(head, b"\r\nX-Vireo-Fault: reactor\r\n").is_some() {
        REACTOR_FAULT.with(|f| f.set(true));
    }
}

/// A reactor fault was requested on this thread (cleared by asking).
pub fn take_reactor_fault() -> bool {
    REACTOR_FAULT.with(|f| f.replace(false))
}

/// Whether building this reactor must fail.
pub fn fail_build() -> bool {
    let n = BUILDS.fetch_add(1, Ordering::SeqCst);
    std::env::var("VIREO_FAULT_BUILD_FAIL")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        == Some(n)
}

/// How long a cold-window job waits before it starts (`VIREO_FAULT_COLD_DELAY_MS`).
pub fn cold_delay() -> Option<std::time::Duration> {
    std::env::var("VIREO_FAULT_COLD_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(std::time::Duration::from_millis)
}
