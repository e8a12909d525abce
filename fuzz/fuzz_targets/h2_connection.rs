//! The connection fuzzer's HTTP/2 mode (vireo::net::harness::h2::exercise_h2): frames after
//! a valid preface and SETTINGS exchange, delivered in arbitrary pieces to one `H2Conn`
//! over an in-memory stream. It must not panic, must close after the client's FIN, never
//! write after its half-close, send frames that decode (HPACK included), and give the same
//! responses however the input was split (where no read-dependent budget came into it).
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use vireo::net::harness::h2::exercise_h2;
use vireo::net::harness::{world, Harness};

struct World {
    harnesses: Vec<Harness>,
    _dir: tempfile::TempDir,
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new({
        let dir = tempfile::tempdir().unwrap();
        let harnesses = world(dir.path()).unwrap();
        World { harnesses, _dir: dir }
    });
}

fuzz_target!(|data: &[u8]| {
    WORLD.with(|w| {
        if let Err(e) = exercise_h2(&mut w.borrow_mut().harnesses, data) {
            panic!("{e}");
        }
    });
});
