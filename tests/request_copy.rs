//! An HTTP/1.2..1.9 request head is parsed from a copy with the minor digit rewritten;
//! the copy must hold that head only, not the pipelined requests (or body) behind it.
//! Its own test binary: the counting allocator sees every allocation of the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use vireo::http::request::{parse, Limits};

/// Records the largest single allocation.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records a size.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Largest = Largest;

#[test]
fn a_later_minor_copies_only_its_head() {
    let one = b"GET /x HTTP/1.2\r\nHost: a\r\n\r\n";
    let buf = one.repeat(2000); // 58 KB of pipelined requests
    let limits = Limits {
        max_request_line: 8192,
        max_header_bytes: 1 << 20,
        max_body_bytes: 0,
    };
    LARGEST.store(0, Ordering::Relaxed);
    let head = parse(&buf, &limits).expect("valid").expect("complete");
    let largest = LARGEST.load(Ordering::Relaxed);
    assert_eq!(head.head_len, one.len());
    assert!(
        largest < 1024,
        "parsing one {}-byte head allocated {largest} bytes at once",
        one.len()
    );
}
