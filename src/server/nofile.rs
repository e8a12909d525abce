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

/// Descriptors a configuration may hold open: per reactor its connections (metrics
/// connections included: reactor 0 counts them against its `max_connections`), one
/// open-file cache per site (the default one and each `[[site]]`, redirect sites included:
/// each `Site` has its own) and its listening sockets: every address, plain and TLS, has
/// one SO_REUSEPORT socket per reactor, held twice (the reactor's descriptor and the
/// server's). Plus the metrics listener (the server's and reactor 0's descriptor), the
/// socket duplicates of cold-window jobs and some slack for epoll, eventfds, the log and
/// the pool.
///
/// One generation's worth: during a reload the old reactors drain their connections while
/// the new ones accept, so for that while up to twice the connections and caches are open.
pub fn descriptors_needed(config: &Config) -> u64 {
    let caches = config.open_file_cache.entries * (1 + config.sites.len());
    let listeners = 2 * config.all_listen().len();
    let per_reactor = config.limits.max_connections + caches + listeners;
    let metrics = if config.metrics.is_some() { 2 } else { 0 };
    (per_reactor * config.workers + metrics + crate::offload::MAX_COLD_SOCKETS) as u64 + 64
}

pub(super) fn check_nofile_limit(config: &Config) {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let need = descriptors_needed(config);
    if let Some(cur) = lim.current {
        if cur < need {
            log::warn!(
                "RLIMIT_NOFILE is {cur}, below the {need} that workers x (max_connections + sites x \
                 open_file_cache.entries + 2 per listen and tls.listen address) + 2 for metrics \
                 + 128 needs; a reload briefly keeps the old generation's connections and caches \
                 open beside the new one's, up to twice that"
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

    #[test]
    fn every_listener_counts_plain_tls_and_metrics() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("public")).expect("mkdir");
        // Certificate files are read by `tls::`, not by the config: none are needed here.
        let text = "workers = 2\nlisten = [\"127.0.0.1:0\", \"[::1]:0\"]\n\
                    [limits]\nmax_connections = 100\n[open_file_cache]\nentries = 10\n\
                    [tls]\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]\n\
                    cert = \"c.pem\"\nkey = \"k.pem\"\n\
                    [metrics]\nlisten = \"127.0.0.1:0\"\n";
        let c = Config::from_toml(text, dir.path(), "t.toml").expect("valid");
        // 5 addresses x 2 descriptors per reactor, 2 for the metrics listener.
        assert_eq!(descriptors_needed(&c), 2 * (100 + 10 + 5 * 2) + 2 + 64 + 64);
        let plain = text.split("[tls]").next().expect("head");
        let c = Config::from_toml(plain, dir.path(), "t.toml").expect("valid");
        assert_eq!(descriptors_needed(&c), 2 * (100 + 10 + 2 * 2) + 64 + 64);
    }
}
