//! What an operator sees: the access log (its writer thread and per-reactor buffers) and
//! the Prometheus metrics.

pub mod accesslog;
pub mod metrics;
pub mod tls_metrics;
