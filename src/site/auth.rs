//! Basic authentication (RFC 7617) for `[[auth]]` paths, with the bcrypt work off the loop.
//!
//! A bcrypt check costs tens of milliseconds of CPU, so a reactor never runs one: the
//! router either answers from the cache of successful checks (`Verified`, one per process,
//! shared by all reactors), or hands an `AuthJob` to the pool (a `Kind::Auth` job, within
//! its own budget, `limits.max_password_checks`) and parks the connection. The request's head stays in the connection's inbox; when the job's
//! `Verdict` arrives the same request is routed again with it, so a successful check
//! continues to the normal reply (with its own compression or listing job if it needs
//! one) and a failed one gets the 401.
//!
//! The cache never holds a password: entries are keyed by a keyed hash (SipHash with
//! random per-process keys) of the htpasswd file's fingerprint, the user, the password and
//! the stored hash, so a reload that changes the file (a user removed, a line edited)
//! misses every entry of the old one; entries expire after `VERIFIED_TTL`. A check of an
//! unknown user (against the decoy hash) never consults or fills the cache.

use crate::config::AuthRule;
use crate::offload::{Job, Kind, Notifier, Offload, Output};
use crate::site::route::Target;
use crate::site::rules::{sidecar_stems, CODINGS};
use hashlink::LruCache;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a successful check is trusted without running bcrypt again.
pub const VERIFIED_TTL: Duration = Duration::from_secs(300);
/// Most cached successful checks (a few dozen bytes each).
const VERIFIED_CAP: usize = 4096;

/// A keyed hash of (users file, user, password, stored hash, decoy or not): 128 bits from
/// two independently keyed SipHash instances, so a guessed password cannot collide its way
/// into a cached entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CredKey(u64, u64);

impl CredKey {
    /// `users`: the file's `Users::fingerprint`; `decoy`: `hash` is not `user`'s own.
    fn of(users: u64, user: &[u8], password: &[u8], hash: &str, decoy: bool) -> CredKey {
        static KEYS: OnceLock<(RandomState, RandomState)> = OnceLock::new();
        let (a, b) = KEYS.get_or_init(|| (RandomState::new(), RandomState::new()));
        let parts = (users, user, password, hash, decoy);
        CredKey(a.hash_one(parts), b.hash_one(parts))
    }
}

/// Successful checks, least recently used evicted first.
pub struct Verified(Mutex<LruCache<CredKey, Instant>>);

/// The process's successful checks: kept across reloads (a changed hash is another key).
fn verified() -> &'static Verified {
    static VERIFIED: OnceLock<Verified> = OnceLock::new();
    VERIFIED.get_or_init(Verified::default)
}

impl Default for Verified {
    fn default() -> Self {
        Verified(Mutex::new(LruCache::new(VERIFIED_CAP)))
    }
}

impl Verified {
    pub fn hit(&self, key: &CredKey, now: Instant) -> bool {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match c.get(key) {
            Some(at) if now.saturating_duration_since(*at) < VERIFIED_TTL => true,
            Some(_) => {
                c.remove(key);
                false
            }
            None => false,
        }
    }

    pub fn insert(&self, key: CredKey) {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        c.insert(key, Instant::now());
    }
}

/// Listeners are plain HTTP until TLS exists: say so once per process (Sites are built
/// per reactor and per reload; the logger starts after the configuration is loaded).
pub fn warn_cleartext(rules: &[AuthRule]) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Some(r) = rules.first() {
        if !WARNED.swap(true, Ordering::Relaxed) {
            log::warn!(
                "[[auth]] {:?} (and {} more): Basic auth over cleartext HTTP sends passwords \
                 readable on the wire; it is meant for TLS listeners",
                r.path,
                rules.len() - 1
            );
        }
    }
}

/// A bcrypt check for the pool. The password lives only as long as the job.
pub struct AuthJob {
    pub key: CredKey,
    pub password: Box<[u8]>,
    pub hash: Box<str>,
    /// The user is not in the file: `hash` is another user's, checked only so that the
    /// answer takes as long as for a wrong password (no timing tells which names exist);
    /// the verdict is always no.
    pub decoy: bool,
}

impl Job for AuthJob {
    /// The body is `[1]` for a match (then cached), `[0]` otherwise; never cached itself.
    fn run(self) -> Output {
        Ok((vec![u8::from(self.check(verified()))], false))
    }
}

impl AuthJob {
    /// True when the password matches (then cached in `verified`).
    fn check(&self, verified: &Verified) -> bool {
        if self.decoy {
            // Run only for its time: never a success, never cached.
            let _ = bcrypt::verify(&self.password, &self.hash);
            return false;
        }
        let ok = bcrypt::verify(&self.password, &self.hash).unwrap_or_else(|e| {
            // `--check` validated every hash; keep serving (as a refusal) if one is odd.
            log::error!("bcrypt: {e}");
            false
        });
        if ok {
            verified.insert(self.key);
        }
        ok
    }
}

/// Run `job` on the pool for the connection (slot, generation), joining a check in
/// flight for the same credentials. False when over budget (nothing was started).
pub fn submit(
    offload: &Arc<Offload>,
    job: AuthJob,
    notifier: &Notifier,
    slot: usize,
    generation: u32,
) -> bool {
    let id = [job.key.0.to_le_bytes(), job.key.1.to_le_bytes()].concat();
    offload.submit_job(Kind::Auth, id.into(), job, notifier, slot, generation)
}

/// Is this password check cached (counted as a hit or a miss)?
fn cached(offload: &Offload, key: &CredKey, now: Instant) -> bool {
    let hit = verified().hit(key, now);
    offload.count_lookup(Kind::Auth, hit);
    hit
}

/// A finished check, handed back to the router for the request that waited for it.
#[derive(Clone, Copy, Debug)]
pub struct Verdict {
    pub key: CredKey,
    pub ok: bool,
}

/// What a request's credentials allow.
pub enum Gate<'a> {
    /// No rule covers the path, or the credentials are good.
    Open,
    /// Answer 401 with this rule's challenge.
    Denied(&'a AuthRule),
    /// Run this check on the pool first.
    Verify(AuthJob),
}

/// Decide for `target` given the request's `Authorization` value (`scratch` holds the path
/// rules match). `verdict`: the check this request was parked on, if any.
pub fn gate<'a>(
    rules: &'a [AuthRule],
    target: &Target,
    scratch: &mut Vec<u8>,
    authorization: Option<&[u8]>,
    offload: Option<&Arc<Offload>>,
    verdict: Option<Verdict>,
    now: Instant,
) -> Gate<'a> {
    if rules.is_empty() {
        return Gate::Open;
    }
    // Rules match the decoded, normalised path like `[[headers]]`: `/` + target (+ `/`
    // for a directory), so `/%73taging/` or `/x/../staging/` cannot dodge `/staging/`.
    scratch.clear();
    scratch.push(b'/');
    scratch.extend_from_slice(&target.rel);
    if target.trailing && !target.rel.is_empty() {
        scratch.push(b'/');
    }
    // Most specific rule first (`config::auth::build_auth`): the first match wins,
    // ASCII case-insensitively, since a case-folding filesystem serves `/ADMIN/` from
    // `/admin/` (on one that does not, the stricter match costs nothing). A sidecar asked for by name
    // (`/data.json.gz`) is judged as the file it stands for (`/data.json`) first: its
    // bytes are that file's, so whatever protects the file protects them; only when no
    // rule covers the file do the sidecar's own rules (`/**/*.gz`) apply.
    let mut stems = [0; CODINGS.len() + 1];
    let mut n = 0;
    for len in sidecar_stems(scratch) {
        stems[n] = len;
        n += 1;
    }
    let Some(rule) = stems[..n].iter().rev().find_map(|&len| {
        let path = &scratch[..len];
        rules.iter().find(|r| r.pattern.matches_ignore_case(path))
    }) else {
        return Gate::Open;
    };
    let Some((user, password)) = authorization.and_then(basic_credentials) else {
        return Gate::Denied(rule);
    };
    let known = std::str::from_utf8(&user)
        .ok()
        .and_then(|u| rule.users.hash_of(u));
    let decoy = known.is_none();
    let Some(hash) = known.or_else(|| rule.users.decoy()) else {
        return Gate::Denied(rule);
    };
    let key = CredKey::of(rule.users.fingerprint(), &user, &password, hash, decoy);
    if let Some(v) = verdict.filter(|v| v.key == key) {
        return if v.ok && !decoy {
            Gate::Open
        } else {
            Gate::Denied(rule)
        };
    }
    match offload {
        // An unknown user is never let in from the cache, whatever it holds (a removed
        // user's copied line has the decoy's very hash).
        Some(o) if !decoy && cached(o, &key, now) => Gate::Open,
        _ => Gate::Verify(AuthJob {
            key,
            password: password.into(),
            hash: hash.into(),
            decoy,
        }),
    }
}

/// `Basic <base64(user:password)>` (RFC 7617 2): the scheme is case-insensitive, the
/// user ends at the first ':'. None for anything else.
fn basic_credentials(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"Basic ") {
        return None;
    }
    let mut decoded = decode_base64(rest.trim_ascii())?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let password = decoded.split_off(colon + 1);
    decoded.pop();
    Some((decoded, password))
}

/// Standard base64 (RFC 4648 4), padding optional; None on any other byte.
fn decode_base64(s: &[u8]) -> Option<Vec<u8>> {
    let s = s
        .strip_suffix(b"==")
        .or_else(|| s.strip_suffix(b"="))
        .unwrap_or(s);
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded() {
        // RFC 7617 2: "Aladdin:open sesame".
        let (u, p) = basic_credentials(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap();
        assert_eq!((&u[..], &p[..]), (&b"Aladdin"[..], &b"open sesame"[..]));
        let (u, p) = basic_credentials(b"basic   YTpiOmM").unwrap(); // unpadded
        assert_eq!((&u[..], &p[..]), (&b"a"[..], &b"b:c"[..]));
        let (u, p) = basic_credentials(b"Basic Og==").unwrap(); // ":"
        assert!(u.is_empty() && p.is_empty());
        for bad in [
            &b"Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ=="[..],
            b"Basic",
            b"Basic QWxhZGRpbg==", // no ':'
            b"Basic QWxh*GRpbjpvcGVuIHNlc2FtZQ==",
            b"Basic Q",
            b"BasicQWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        ] {
            assert!(basic_credentials(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn cred_keys_depend_on_every_part_and_verified_expire() {
        let k = CredKey::of(1, b"u", b"p", "h", false);
        assert_eq!(k, CredKey::of(1, b"u", b"p", "h", false));
        assert_ne!(k, CredKey::of(1, b"u", b"q", "h", false));
        assert_ne!(k, CredKey::of(1, b"u", b"p", "g", false));
        assert_ne!(k, CredKey::of(1, b"up", b"", "h", false));
        assert_ne!(
            k,
            CredKey::of(2, b"u", b"p", "h", false),
            "another users file"
        );
        assert_ne!(k, CredKey::of(1, b"u", b"p", "h", true), "a decoy check");
        let v = Verified::default();
        let now = Instant::now();
        assert!(!v.hit(&k, now));
        v.insert(k);
        assert!(v.hit(&k, now));
        assert!(!v.hit(&k, now + VERIFIED_TTL + Duration::from_secs(1)));
        assert!(!v.hit(&k, now), "an expired entry is dropped");
    }

    /// Issue 21: a decoy check (an unknown user, checked against another user's hash) is
    /// never a success and never cached, even with that user's right password.
    #[test]
    fn a_decoy_check_is_never_a_success_nor_cached() {
        let hash: Box<str> = bcrypt::hash("pw", 4).unwrap().into();
        let v = Verified::default();
        let job = |decoy| AuthJob {
            key: CredKey::of(1, b"gone", b"pw", &hash, decoy),
            password: (*b"pw").into(),
            hash: hash.clone(),
            decoy,
        };
        let (j, now) = (job(true), Instant::now());
        assert!(!j.check(&v));
        assert!(!v.hit(&j.key, now));
        let j = job(false);
        assert!(j.check(&v) && v.hit(&j.key, now));
    }
}
