//! A whole connection over an in-memory stream (vireo::net::harness): the input is split at
//! arbitrary points, the client's receive window opens and shuts, timers fire. The
//! connection must close after the client's FIN, never write after its half-close, answer
//! with well-formed responses no more numerous than the requests, and send the same bytes
//! however the input was split. See `harness::exercise` for the input layout. With bit 7
//! of byte 0 set the input drives an HTTP/2 connection instead (`harness::h2::exercise_h2`:
//! frames after a fixed preface and SETTINGS; frames that decode, same responses however
//! split where no read-dependent budget came into it).
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use vireo::net::harness::h2::exercise_h2;
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
        let hs = &mut w.borrow_mut().harnesses;
        let r = match data.first() {
            Some(f) if f & 0x80 != 0 => exercise_h2(hs, data),
            _ => exercise(hs, data),
        };
        if let Err(e) = r {
            panic!("{e}");
        }
    });
});
