//! What a request means for one site: the router turns a parsed request into a reply,
//! `files` maps normalised paths to open files under the root (cached per reactor), and
//! `autoindex` renders directory listings (on the offload pool). No sockets here.
//!
//! A `Site` owns everything the router needs for one site on one reactor: the resolved
//! configuration, the resolver, the open-file cache, the header rules (inside the config)
//! and the offload handle. The reactor holds one per site (`hosts::Sites`) and lends the
//! one a request's Host picks, `&mut`, to the connection it drives; nothing here is shared
//! between threads except the offload pool and its cache.

pub mod auth;
pub mod autoindex;
pub mod cache;
pub mod files;
pub mod hosts;
pub mod https;
pub mod route;
pub mod rules;

use crate::config::Config;
use crate::http::negotiate::Coding;
use crate::http::response::{Body, Reply};
use crate::offload::{JobError, Notifier, Offload, Submitted};
use crate::ops::metrics::Registry;
use files::{OpenCache, Resolver};
use route::Job;
use rules::HeaderRules;
use std::io;
use std::sync::Arc;

pub struct Site {
    config: Arc<Config>,
    /// Shared with the listing jobs of this site (they resolve under the same root).
    resolver: Arc<Resolver>,
    files: OpenCache,
    rules: HeaderRules,
    /// The offload pool and cache; None when neither compression nor autoindex is on.
    offload: Option<Arc<Offload>>,
    /// Served on the metrics listener's connections (only `/metrics`).
    registry: Option<Arc<Registry>>,
    /// Reused buffers (no allocation per request): the normalised request path and a
    /// second one for lookups made while that path is still in use (error pages,
    /// `.gz` sidecars).
    path: Vec<u8>,
    scratch: Vec<u8>,
    /// The password check the next `respond` was parked on (`Conn` hands it over).
    verdict: Option<auth::Verdict>,
    /// Where this site's responses are counted (`Registry::site_slot`); 0 = `default`.
    metrics_slot: usize,
}

impl Site {
    pub fn new(
        config: Arc<Config>,
        offload: Option<Arc<Offload>>,
        registry: Option<Arc<Registry>>,
    ) -> io::Result<Site> {
        auth::warn_cleartext(&config.auth);
        Ok(Site {
            resolver: Arc::new(Resolver::new(&config.root, &config.index)?),
            files: OpenCache::new(&config.open_file_cache),
            rules: HeaderRules::new(&config.headers),
            config,
            offload,
            registry,
            path: Vec::with_capacity(1024),
            scratch: Vec::with_capacity(1024),
            verdict: None,
            metrics_slot: 0,
        })
    }

    /// Count this site's responses in slot `slot` of the reactor's stats.
    pub fn with_metrics_slot(self, slot: usize) -> Site {
        Site {
            metrics_slot: slot,
            ..self
        }
    }

    pub fn metrics_slot(&self) -> usize {
        self.metrics_slot
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn offload(&self) -> Option<&Arc<Offload>> {
        self.offload.as_ref()
    }

    /// The next `respond` re-answers the request whose password check gave `v`.
    pub fn set_verdict(&mut self, v: auth::Verdict) {
        self.verdict = Some(v);
    }
}

/// What became of a job a reply waits for.
pub enum Started {
    /// On the pool: the connection parks; the completion arrives on its reactor's channel
    /// under (slot, generation), and `Waiting::finish` builds the reply.
    Parked(Waiting),
    /// Refused (the pool is over budget): answer this at once instead.
    Now(Reply),
}

/// A reply waiting for its body.
pub struct Waiting {
    reply: Reply,
    listing: bool,
    /// A password check for these credentials: its request is routed again, not finished.
    auth: Option<auth::CredKey>,
    /// The metrics slot of the site that answers.
    site: usize,
}

impl Site {
    /// Hand `job` to the pool for the connection (slot, generation) of the reactor behind
    /// `notifier`. `reply` is the router's answer with `Body::Pending`.
    pub fn start(
        &self,
        job: Job,
        reply: Reply,
        notifier: &Notifier,
        slot: usize,
        generation: u32,
    ) -> Started {
        debug_assert!(matches!(reply.body, Body::Pending));
        match job {
            Job::Encode {
                key,
                file,
                len,
                identity_etag,
            } => {
                let submitted = match &self.offload {
                    Some(o) => o.submit(key, file, notifier, slot, generation),
                    None => Submitted::Rejected(file), // the router only asks when there is a pool
                };
                match submitted {
                    Submitted::Parked => Started::Parked(Waiting {
                        reply,
                        listing: false,
                        auth: None,
                        site: self.metrics_slot,
                    }),
                    Submitted::Rejected(file) => {
                        // Over budget after all (another reactor won the race): identity.
                        let mut r = reply;
                        r.headers.coding = Coding::Identity;
                        r.headers.etag = Some(identity_etag);
                        r.headers.accept_ranges = true;
                        r.body = if len == 0 {
                            Body::Empty
                        } else {
                            Body::File {
                                file,
                                start: 0,
                                end: len,
                            }
                        };
                        Started::Now(r)
                    }
                }
            }
            Job::Listing { key, dir } => {
                let parked = self.offload.as_ref().is_some_and(|o| {
                    autoindex::submit(o, key, dir, &self.resolver, notifier, slot, generation)
                });
                if parked {
                    Started::Parked(Waiting {
                        reply,
                        listing: true,
                        auth: None,
                        site: self.metrics_slot,
                    })
                } else {
                    // The pool is full: building the page here would block the loop.
                    Started::Now(autoindex::error_reply(503))
                }
            }
            // HTTP/1.1 and HTTP/2 connections start their exchanges themselves (before
            // this): any other caller answers 502 instead of blocking.
            Job::Proxy { .. } => Started::Now(Reply {
                close: false,
                ..Reply::error(502)
            }),
            Job::Auth(job) => {
                let key = job.key;
                let parked = self
                    .offload
                    .as_ref()
                    .is_some_and(|o| auth::submit(o, job, notifier, slot, generation));
                if parked {
                    Started::Parked(Waiting {
                        reply,
                        listing: false,
                        auth: Some(key),
                        site: self.metrics_slot,
                    })
                } else {
                    // Over budget: never a bcrypt check on the loop.
                    Started::Now(autoindex::error_reply(503))
                }
            }
        }
    }
}

impl Waiting {
    /// The metrics slot of the site that answers (`Site::metrics_slot`).
    pub fn site(&self) -> usize {
        self.site
    }

    pub fn is_auth(&self) -> bool {
        self.auth.is_some()
    }

    /// A password check: its verdict, for routing the request again (`Site::set_verdict`).
    pub fn verdict(&self, result: &Result<Arc<[u8]>, JobError>) -> Option<auth::Verdict> {
        self.auth.map(|key| auth::Verdict {
            key,
            ok: matches!(result, Ok(d) if d[..] == [1]),
        })
    }

    /// The reply, now that its job finished.
    pub fn finish(self, result: Result<Arc<[u8]>, JobError>) -> Reply {
        match result {
            Ok(data) => Reply {
                body: Body::Shared(data),
                ..self.reply
            },
            Err(e) if self.listing => {
                if e.status >= 500 {
                    log::error!("{}", e.message);
                } else {
                    log::debug!("{}", e.message);
                }
                autoindex::error_reply(e.status)
            }
            Err(e) => {
                log::error!("compression failed: {}", e.message);
                Reply {
                    close: true,
                    ..Reply::error(500)
                }
            }
        }
    }
}
