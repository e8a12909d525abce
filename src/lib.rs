//! vireo: an HTTP/1.1 static file server shaped like nginx.
//!
//! **Data path** (one reactor thread, no locks): the kernel spreads new connections over
//! one SO_REUSEPORT listener per reactor. A reactor accepts until WouldBlock, registers each
//! socket once (READABLE | WRITABLE, edge triggered) and keeps it in a slab under a
//! `generation << 32 | slot` token. On readiness the connection reads until a short read,
//! parses with httparse (`Ok(None)` means "need more"), asks the router for a reply, writes
//! the head (and any small body) with one writev and streams files with sendfile, capped
//! per turn. Pipelined requests already buffered are answered in order before going back to
//! `epoll_wait`, whose timeout is the nearest connection deadline.
//!
//! **Offload path**: when the router wants a gzip body that is neither cached nor on disk as
//! `file.gz`, or a directory listing that is not cached, the connection parks and the
//! reactor's context hands the job (token and generation included) to the rayon pool in
//! `offload`. The job answers on the reactor's channel and rings its `mio::Waker`; the
//! reactor drains the channel until empty and resumes the connection if its generation
//! still matches. Concurrent misses for one file or directory join one job; the result
//! lands in a shared LRU.
//!
//! Module rooms (a module uses only what its row allows): `http` is pure bytes; `files`
//! maps paths to open files (and caches them per reactor) and errno to `FileError`;
//! `route` turns a request into a reply (`autoindex` renders listings); `offload` runs
//! compression and listings and owns their cache; `conn` owns one socket; `reactor` owns a
//! Poll, the slab, the timers (`timer`), its access-log buffer (`accesslog`) and its
//! counters (`metrics`); `server` owns the threads, the listening sockets and signals;
//! `harness` plays a reactor for one `conn` over an in-memory stream (fuzzer and tests).

pub mod accesslog;
pub mod autoindex;
pub mod config;
pub mod conn;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod files;
#[doc(hidden)]
pub mod harness;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod offload;
pub mod reactor;
pub mod route;
pub mod server;
pub mod timer;

pub use config::Config;
pub use server::Server;
