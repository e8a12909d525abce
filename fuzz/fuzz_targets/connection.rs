//! A whole connection over an in-memory stream (vireo::net::harness): the input is split at
//! arbitrary points, the client's receive window opens and shuts, timers fire. The
//! connection must close after the client's FIN, never write after its half-close, answer
//! with well-formed responses no more numerous than the requests, and send the same bytes
//! however the input was split. See `harness::exercise` for the input layout.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use vireo::net::harness::{exercise, world, Harness};

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
        if let Err(e) = exercise(&mut w.borrow_mut().harnesses, data) {
            panic!("{e}");
        }
    });
});
