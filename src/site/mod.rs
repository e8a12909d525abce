//! What a request means for one site: the router turns a parsed request into a reply,
//! `files` maps normalised paths to open files under the root (cached per reactor), and
//! `autoindex` renders directory listings (on the offload pool). No sockets here.
//!
//! A `Site` owns everything the router needs for one site on one reactor: the resolved
//! configuration, the resolver, the open-file cache, the header rules (inside the config)
//! and the offload handle. The reactor holds one and lends it, `&mut`, to the connection it
//! drives; nothing here is shared between threads except the offload pool and its cache.

pub mod autoindex;
pub mod files;
pub mod route;

use crate::config::Config;
use crate::offload::Offload;
use crate::ops::metrics::Registry;
use files::{OpenCache, Resolver};
use std::io;
use std::sync::Arc;

pub struct Site {
    config: Arc<Config>,
    resolver: Resolver,
    files: OpenCache,
    /// The offload pool and cache; None when neither compression nor autoindex is on.
    offload: Option<Arc<Offload>>,
    /// Served on the metrics listener's connections (only `/metrics`).
    registry: Option<Arc<Registry>>,
    /// Reused buffers (no allocation per request): the normalised request path and a
    /// second one for lookups made while that path is still in use (error pages,
    /// `.gz` sidecars).
    path: Vec<u8>,
    scratch: Vec<u8>,
}

impl Site {
    pub fn new(
        config: Arc<Config>,
        offload: Option<Arc<Offload>>,
        registry: Option<Arc<Registry>>,
    ) -> io::Result<Site> {
        Ok(Site {
            resolver: Resolver::new(&config.root, &config.index)?,
            files: OpenCache::new(&config.open_file_cache),
            config,
            offload,
            registry,
            path: Vec::with_capacity(1024),
            scratch: Vec::with_capacity(1024),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn offload(&self) -> Option<&Arc<Offload>> {
        self.offload.as_ref()
    }
}
