//! vireo: an HTTP/1.1 static file server shaped like nginx.
//!
//! **Data path** (one reactor thread, no locks): the kernel spreads new connections over
//! the reactors, each of which has its own SO_REUSEPORT socket on every `listen` address.
//! A reactor accepts until WouldBlock, registers each socket once (READABLE | WRITABLE, edge triggered) and keeps it in a slab under a
//! `generation << 32 | slot` token. On readiness the connection reads until a short read,
//! parses with httparse (`Ok(None)` means "need more"), asks its reactor's `Site` for a
//! `Reply` (status, typed headers, a body source; no wire bytes), has the one HTTP/1.1
//! encoder (`http::h1`) write the head into its reused buffer, sends head and any in-memory
//! body with one writev and streams files with sendfile, capped per turn. Pipelined requests already buffered are answered in order before going back to
//! `epoll_wait`, whose timeout is the nearest connection deadline.
//!
//! **Offload path**: when the router wants an encoded body (zstd, br, gzip) that is neither
//! cached nor on disk as a sidecar, or a directory listing that is not cached, the
//! connection parks and the
//! reactor's context hands the job (token and generation included) to the rayon pool in
//! `offload`. The job answers on the reactor's channel and rings its `mio::Waker`; the
//! reactor drains the channel until empty and resumes the connection if its generation
//! still matches. Concurrent misses for one file or directory join one job; the result
//! lands in a shared LRU.
//!
//! Layers, as folders; arrows point down only (a module uses the rows below its own):
//!
//! | folder | what it owns |
//! |---|---|
//! | `server`, `main` | threads, listening sockets, signals, reload |
//! | `net/` | `reactor` (a Poll, its slab of connections, `timer`s), `conn` (one connection's phases: requests, body, parked, closing, lingering), `recv` (read buffer, readiness), `send` (writev + sendfile tail, budgets, `Transport`), `account` (counters, access-log lines), `listener`, `harness` (a reactor for one `conn`, or one `h2` connection, over an in-memory stream) |
//! | `site/` | `Site` (per reactor and site: config, resolver, caches, rules, offload handle), `hosts` (`Sites`: the site a request's Host picks), `route` (request -> `Reply`), `files` (paths -> open files under the root), `cache` (the per-reactor open-file cache), `rules` (`[[headers]]`, `[[redirects]]`), `auth` (Basic auth; bcrypt on the pool), `autoindex` (listings) |
//! | `upstream/` | the reverse proxy's other side: `Health` (passive health and per-server counters, atomics shared by a generation's reactors), `pool` (a reactor's upstream sockets in its own Poll, keep-alive pools, balancing), `request` (the upstream request re-serialised from the parsed head), `exchange` (one exchange's state machine, bounded buffers both ways), `tunnel` (the byte tunnel a `101` makes), `checker` (active health checks and re-resolution on one thread per generation); `net/conn/proxy` moves the client's bytes |
//! | `offload/` | the rayon pool, its jobs (compression, listings, password checks), their shared cache; `codec` (gzip, zstd, br) |
//! | `ops/` | `accesslog` (writer thread, per-reactor buffers), `metrics` (Prometheus) |
//! | `config/` | the validated configuration, one file per section; the table of timeout classes |
//! | `http/` | pure bytes: `upstream_response` (strict upstream response heads), request parsing, path normalisation, tokens, negotiation (Accept-Encoding, Range, conditionals), `response` (`Reply` and its typed headers), `h1` (the one HTTP/1.1 encoder) |

pub mod config;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod http;
pub mod net;
pub mod offload;
pub mod ops;
pub mod server;
pub mod site;
#[doc(hidden)]
pub mod testkit;
pub mod tls;
pub mod upstream;

pub use config::Config;
pub use server::Server;
