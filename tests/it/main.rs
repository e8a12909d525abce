//! One integration binary: every test starts the real vireo binary on 127.0.0.1:0 with its
//! own config and docroot, and talks HTTP to it over real TCP.

mod auth;
mod autoindex;
mod cli;
mod client;
mod codings;
mod cold;
mod compression;
mod dates;
mod errors;
mod faults;
mod files;
mod h2;
mod h2_send;
mod https;
mod keepalive;
mod lifecycle;
mod limits;
mod listeners;
mod operations;
mod paths;
mod proxy;
mod proxy_h2;
mod proxy_health;
mod proxy_relay;
mod proxy_ws;
mod redirects;
mod semantics;
mod sites;
mod split;
mod support;
mod timeouts;
mod timers;
mod tls;
mod upstream_support;
