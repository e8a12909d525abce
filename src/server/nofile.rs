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

/// Descriptors a configuration may hold open: per reactor its connections, one open-file
/// cache per site (the default one and each `[[site]]`, redirect sites included: each
/// `Site` has its own) and its listening sockets (the reactor's and the server's
/// descriptor of each), plus the socket duplicates of cold-window jobs and some slack for
/// epoll, eventfds, the log and the pool.
pub fn descriptors_needed(config: &Config) -> u64 {
    let caches = config.open_file_cache.entries * (1 + config.sites.len());
    let per_reactor = config.limits.max_connections + caches + 2 * config.listen.len();
    (per_reactor * config.workers + crate::offload::MAX_COLD_SOCKETS) as u64 + 64
}

pub(super) fn check_nofile_limit(config: &Config) {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let need = descriptors_needed(config);
    if let Some(cur) = lim.current {
        if cur < need {
            log::warn!(
                "RLIMIT_NOFILE is {cur}, below the {need} that workers x (max_connections + sites x \
                 open_file_cache.entries + 2 per listen address) needs"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::descriptors_needed;
    use crate::config::Config;

    #[test]
    fn every_site_has_its_own_open_file_cache_per_worker() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("public")).expect("mkdir");
        let base = "workers = 3\nlisten = \"127.0.0.1:0\"\n\
                    [limits]\nmax_connections = 100\n[open_file_cache]\nentries = 10\n";
        let one = Config::from_toml(base, dir.path(), "t.toml").expect("valid");
        // 3 x (100 + 10 + 2) + 64 cold-window sockets + 64
        assert_eq!(descriptors_needed(&one), 3 * 112 + 64 + 64);
        let sites = format!(
            "{base}[[site]]\nhosts = [\"a.org\"]\nroot = \"public\"\n\
             [[site]]\nhosts = [\"w.a.org\"]\nredirect = \"https://a.org\"\n"
        );
        let three = Config::from_toml(&sites, dir.path(), "t.toml").expect("valid");
        assert_eq!(descriptors_needed(&three), 3 * (100 + 3 * 10 + 2) + 64 + 64);
    }
}
