//! Sockets and the event loop: `reactor` owns a Poll, its connections and their `timer`s;
//! `conn` is one connection's state machine, `recv` its read buffer, `send` its send path
//! (writev, sendfile, budgets), `body` the response body both protocols send from (with its
//! page-cache probe), and `account` its counters and log lines; `listener` binds
//! SO_REUSEPORT sockets; `harness` plays a reactor for one connection over an in-memory stream (fuzzer, tests).

pub mod account;
pub mod affinity;
pub mod body;
pub mod conn;
pub mod h2;
#[doc(hidden)]
pub mod harness;
pub mod link;
pub mod listener;
pub mod reactor;
pub mod recv;
pub mod send;
pub mod timer;
pub mod tls;
