//! Which representation of a file to send: whether it is worth compressing, the coding
//! negotiated with the client and where its bytes come from (cache, sidecar file, a job on
//! the pool), and the identity reply with its validators and ranges.

use super::*;

impl Router<'_> {
    /// Is this file worth compressing for this client at all (decides `Vary`)?
    pub(super) fn compressible(&self, head: &RequestHead, meta: &FileMeta) -> bool {
        let c = &self.config.compression;
        c.enabled
            && (!self.http10 || c.http10)
            && meta.len >= c.min_bytes.max(1)
            && negotiate::mime_matches(meta.mime, &c.types)
            && (meta.len <= offload::MAX_INPUT || c.precompressed)
            && head.method != Method::Options
    }

    /// The best coding the client accepts that has a source. Codings made on the fly
    /// (`compression.codings`) are offered in their configured order, then the others as
    /// sidecars only; a coding without a source gives way to the next acceptable one.
    /// None means identity.
    pub(super) fn negotiated_source(
        &mut self,
        accept: Option<&[u8]>,
        meta: &FileMeta,
        target: &Target,
    ) -> Option<Source> {
        let c = &self.config.compression;
        let mut offered = [(Coding::Identity, false); ALL_CODINGS.len()];
        let mut n = 0;
        for &k in c.codings.iter().chain(ALL_CODINGS.iter()) {
            let on_the_fly = c.codings.contains(&k);
            if !offered[..n].iter().any(|&(o, _)| o == k) && (on_the_fly || c.precompressed) {
                offered[n] = (k, on_the_fly);
                n += 1;
            }
        }
        while n > 0 {
            let mut codings = [Coding::Identity; ALL_CODINGS.len()];
            for (i, &(k, _)) in offered[..n].iter().enumerate() {
                codings[i] = k;
            }
            let coding = negotiate::choose_encoding(accept, &codings[..n])?;
            let i = codings[..n].iter().position(|&k| k == coding)?;
            if let Some(s) = self.encoded_source(meta, target, coding, offered[i].1) {
                return Some(s);
            }
            offered.copy_within(i + 1..n, i);
            n -= 1;
        }
        None
    }

    /// Where a body in `coding` can come from, cheapest first (a job only when `job_ok`);
    /// None when it has none.
    pub(super) fn encoded_source(
        &mut self,
        meta: &FileMeta,
        target: &Target,
        coding: Coding,
        job_ok: bool,
    ) -> Option<Source> {
        let offload = self.offload?;
        let found = |from| Some(Source { coding, from });
        if let Some(data) = offload.lookup(&key_of(meta, coding)) {
            return found(From::Cached(data));
        }
        // nginx's gzip_static: `file.gz` beside `file`, not older than it. For an index
        // file the target is the directory, so the index name is added:
        // `dir/index.html.gz`, never `dir.gz`.
        let index = match meta.index {
            Some(i) if target.trailing => self.resolver.index_name(i),
            _ => None,
        };
        if self.config.compression.precompressed && (index.is_some() || !target.trailing) {
            self.scratch.clear();
            self.scratch.extend_from_slice(&target.rel);
            if let Some(name) = index {
                if !target.rel.is_empty() {
                    self.scratch.push(b'/');
                }
                self.scratch.extend_from_slice(name);
            }
            self.scratch.extend_from_slice(coding.sidecar_ext());
            let side = self.resolver.open_relative(self.scratch);
            if let Ok(Resolved::File(side)) = side {
                if side.mtime >= meta.mtime {
                    return found(From::Sidecar(side));
                }
            }
        }
        if job_ok
            && meta.len <= offload::MAX_INPUT
            && offload.pending(offload::Kind::Compress) < offload.budget(offload::Kind::Compress)
        {
            return found(From::Job);
        }
        None
    }

    /// 200, 206 or 416 for the identity representation.
    pub(super) fn identity(
        &mut self,
        head: &RequestHead,
        buf: &[u8],
        meta: FileMeta,
        mut headers: Headers,
    ) -> Reply {
        let v = Validators {
            etag: meta.etag.as_str().as_bytes(),
            last_modified: headers.last_modified,
        };
        let mut ranges = Vec::new();
        let range = match head.range {
            Some(r)
                if head
                    .if_range
                    .is_none_or(|ir| self.if_range_matches(ir.get(buf), &v, &meta)) =>
            {
                negotiate::parse_range(r.get(buf), meta.len, MAX_RANGES, &mut ranges)
            }
            _ => RangeResult::Ignore,
        };
        let (status, body) = match range {
            RangeResult::Unsatisfiable => {
                let mut r = self.error(416);
                r.headers.content_range = Some(ContentRange::Unsatisfied(meta.len));
                return r;
            }
            RangeResult::Satisfiable if ranges.len() == 1 => {
                let r = ranges[0];
                headers.content_range = Some(ContentRange::Part(r, meta.len));
                let body = Body::File {
                    file: meta.file,
                    start: r.start,
                    end: r.end + 1,
                };
                (206, body)
            }
            RangeResult::Satisfiable => {
                let boundary = negotiate::boundary_from_etag(meta.etag.as_str().as_bytes());
                let mut heads = Vec::new();
                let mp = negotiate::multipart_layout(
                    &ranges, meta.len, meta.mime, &boundary, &mut heads,
                );
                headers.content_type = Some(ContentType::Owned(
                    negotiate::multipart_content_type(&boundary).into_boxed_str(),
                ));
                let body = Body::Multipart {
                    file: meta.file,
                    heads,
                    parts: mp.parts,
                    trailer: mp.trailer,
                };
                debug_assert_eq!(body.len(), mp.content_length);
                (206, body)
            }
            RangeResult::Ignore => (200, whole(meta)),
        };
        Reply {
            status,
            headers,
            body,
            close: false,
        }
    }
}

/// Every coding vireo knows (the sidecar-only fallbacks come in this order).
const ALL_CODINGS: [Coding; 3] = rules::CODINGS;

/// An encoded representation the router found for a request.
pub(super) struct Source {
    pub(super) coding: Coding,
    pub(super) from: From,
}

pub(super) enum From {
    /// In the offload cache.
    Cached(Arc<[u8]>),
    /// A precompressed file beside the original (`Coding::sidecar_ext`).
    Sidecar(FileMeta),
    /// To be encoded on the pool.
    Job,
}

pub(super) fn key_of(meta: &FileMeta, coding: Coding) -> Key {
    Key {
        dev: meta.dev,
        ino: meta.ino,
        len: meta.len,
        mtime: meta.mtime,
        mtime_nanos: meta.mtime_nanos,
        coding,
    }
}
