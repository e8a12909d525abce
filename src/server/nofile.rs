//! The descriptor limit: raised as far as allowed, and checked against what a
//! configuration may hold open.

use crate::config::Config;

/// Raise the soft descriptor limit to the hard one; every connection costs one.
pub(super) fn raise_nofile_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            log::warn!("cannot raise RLIMIT_NOFILE: {e}");
        }
    }
}

/// Descriptors a configuration may hold open: per reactor its connections and its open-file
/// cache and its listening sockets (the reactor's and the server's descriptor of each), plus
/// some slack for epoll, eventfds, the log and the pool.
pub fn descriptors_needed(config: &Config) -> u64 {
    let per_reactor =
        config.limits.max_connections + config.open_file_cache.entries + 2 * config.listen.len();
    (per_reactor * config.workers) as u64 + 64
}

pub(super) fn check_nofile_limit(config: &Config) {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let need = descriptors_needed(config);
    if let Some(cur) = lim.current {
        if cur < need {
            log::warn!(
                "RLIMIT_NOFILE is {cur}, below the {need} that workers x (max_connections + \
                 open_file_cache.entries + 2 per listen address) needs"
            );
        }
    }
}
