//! `[[auth]]`: Basic authentication (RFC 7617) for request paths, with users from an
//! htpasswd file of bcrypt hashes. One builder per section, so `[[site.auth]]` reuses it.
//!
//! The htpasswd file is read and checked here, at load (start, reload, `--check`): a
//! request never touches the disk, and a file vireo could not verify is refused with its
//! line number instead of locking everybody out at run time.

use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

use super::headers::PathPattern;
use super::parse::Src;
use super::ConfigError;

/// One `[[auth]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    path: Spanned<String>,
    realm: Spanned<String>,
    htpasswd: Spanned<String>,
}

/// Most `[[auth]]` rules per site.
pub const MAX_AUTH_RULES: usize = 1000;
/// Largest htpasswd file accepted: it is held in memory by every generation.
pub const MAX_HTPASSWD_BYTES: u64 = 1 << 20;
/// bcrypt costs accepted (`htpasswd -B -C` allows 4..=17); a higher one would hold a pool
/// thread for minutes per check.
const COSTS: std::ops::RangeInclusive<u32> = 4..=17;

/// One validated `[[auth]]` rule.
#[derive(Debug, Clone)]
pub struct AuthRule {
    pub pattern: PathPattern,
    /// The configured path (the most specific matching one wins, see `build_auth`).
    pub path: Box<str>,
    pub realm: Box<str>,
    pub htpasswd: PathBuf,
    pub users: Users,
    /// The `WWW-Authenticate` line of its 401, as a header block (`[[headers]]` style).
    pub challenge: Arc<[Box<[u8]>]>,
}

/// User name -> bcrypt hash, as read from one htpasswd file. Debug prints the names only.
#[derive(Clone, Default)]
pub struct Users(Arc<Table>);

#[derive(Default)]
struct Table {
    hashes: HashMap<Box<str>, Box<str>>,
    /// The costliest hash (the first in the file of that cost).
    decoy: Option<Box<str>>,
    /// The lowest and highest bcrypt cost in the file.
    costs: Option<(u32, u32)>,
    /// A hash of the file's bytes (see `Users::fingerprint`).
    fingerprint: u64,
}

impl Users {
    /// Parse an htpasswd file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Users, String> {
        use std::hash::{Hash, Hasher};
        let mut table = parse_htpasswd(bytes)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        table.fingerprint = h.finish();
        Ok(Users(Arc::new(table)))
    }

    /// Names the file's content (a fixed-key hash of its bytes): cached successful checks
    /// are keyed with it, so a reload that changes the file (a user removed, a password
    /// changed) drops them all, and one that keeps it keeps them.
    pub fn fingerprint(&self) -> u64 {
        self.0.fingerprint
    }

    pub fn hash_of(&self, user: &str) -> Option<&str> {
        self.0.hashes.get(user).map(|h| &**h)
    }

    /// The hash an unknown user's password is checked against, so that the refusal takes
    /// as long as a known user's: the file's costliest, so that no known user's check
    /// takes longer (with mixed costs a cheaper user still answers faster; see
    /// `mixed_costs`).
    pub fn decoy(&self) -> Option<&str> {
        self.0.decoy.as_deref()
    }

    /// `(lowest, highest)` bcrypt cost when the file mixes costs: then a known user with
    /// a cheaper hash is answered faster than an unknown one, and timing tells names.
    pub fn mixed_costs(&self) -> Option<(u32, u32)> {
        self.0.costs.filter(|(lo, hi)| lo != hi)
    }
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_set().entries(self.0.hashes.keys()).finish()
    }
}

/// Validate the rules, read their htpasswd files (relative to `base`, the config file's
/// directory) and order them most specific first: the longest literal prefix (what comes
/// before the first `*`; a pattern without `*` is all prefix) first, of equal prefixes
/// the longer pattern, of equal patterns the first in the file. So `/admin/` (prefix 7)
/// wins over `/**/*.pdf` (prefix 1) for `/admin/x.pdf`: a glob that names a file type
/// never widens a directory's rule. Rules match ASCII case-insensitively (see `gate`).
pub(super) fn build_auth(
    raw: Vec<RawAuth>,
    base: &Path,
    src: &Src,
) -> Result<Arc<[AuthRule]>, ConfigError> {
    if let Some(r) = raw.get(MAX_AUTH_RULES) {
        return Err(src.invalid(
            r.path.span(),
            "auth",
            format!("at most {MAX_AUTH_RULES} [[auth]] rules"),
        ));
    }
    let mut rules = Vec::with_capacity(raw.len());
    for r in raw {
        let path = r.path.get_ref();
        let pattern = PathPattern::parse(path)
            .map_err(|msg| src.invalid(r.path.span(), "auth.path", format!("{path:?}: {msg}")))?;
        let realm = r.realm.get_ref();
        check_realm(realm).map_err(|msg| {
            src.invalid(r.realm.span(), "auth.realm", format!("{realm:?}: {msg}"))
        })?;
        let file = base.join(r.htpasswd.get_ref());
        let users = read_htpasswd(&file).map_err(|msg| {
            src.invalid(
                r.htpasswd.span(),
                "auth.htpasswd",
                format!("{}: {msg}", file.display()),
            )
        })?;
        let line = format!("WWW-Authenticate: Basic realm=\"{realm}\", charset=\"UTF-8\"\r\n");
        rules.push(AuthRule {
            pattern,
            path: path.as_str().into(),
            realm: realm.as_str().into(),
            htpasswd: file,
            users,
            challenge: Arc::from(vec![line.into_bytes().into_boxed_slice()]),
        });
    }
    // Stable: of two equally specific rules, the first in the file wins.
    rules.sort_by_key(|r| std::cmp::Reverse((literal_prefix(&r.path).len(), r.path.len())));
    Ok(rules.into())
}

/// The part of a rule's path before its first glob metacharacter (`*`).
fn literal_prefix(path: &str) -> &str {
    path.find('*').map_or(path, |i| &path[..i])
}

/// What is worth a warning in valid rules (at start, reload and `--check`): an htpasswd
/// file that mixes bcrypt costs (once per file).
pub(super) fn warnings(rules: &[AuthRule], out: &mut Vec<String>) {
    for (i, r) in rules.iter().enumerate() {
        let Some((lo, hi)) = r.users.mixed_costs() else {
            continue;
        };
        if rules[..i].iter().any(|o| o.htpasswd == r.htpasswd) {
            continue;
        }
        out.push(format!(
            "[[auth]] {:?}: {}: bcrypt costs {lo} to {hi} in one file; an unknown user is \
             checked against a cost-{hi} hash, so a user with a cheaper hash is answered \
             faster and timing tells which names exist (re-create the hashes with one cost, \
             `htpasswd -B -C {hi}`)",
            r.path,
            r.htpasswd.display()
        ));
    }
}

/// A realm goes inside a quoted-string: printable ASCII without `"` or `\`.
fn check_realm(realm: &str) -> Result<(), String> {
    if realm.is_empty() {
        return Err("must not be empty".into());
    }
    if !realm
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err("only printable ASCII without '\"' or '\\'".into());
    }
    Ok(())
}

/// Read an htpasswd file: `user:hash` lines, blank lines and `#` comments ignored.
fn read_htpasswd(file: &Path) -> Result<Users, String> {
    use std::io::Read;
    let f = std::fs::File::open(file).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    // One byte more than allowed tells "too large" without trusting the size in stat.
    f.take(MAX_HTPASSWD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_HTPASSWD_BYTES {
        return Err(format!("larger than {MAX_HTPASSWD_BYTES} bytes"));
    }
    Users::parse(&bytes)
}

fn parse_htpasswd(bytes: &[u8]) -> Result<Table, String> {
    let mut users = Table::default();
    let mut lines_of: HashMap<Box<str>, usize> = HashMap::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) || line.starts_with(b"#") {
            continue;
        }
        let line = std::str::from_utf8(line).map_err(|_| format!("line {n}: not UTF-8"))?;
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("line {n}: no ':' between user and hash"));
        };
        if user.is_empty() {
            return Err(format!("line {n}: empty user name"));
        }
        let cost = check_hash(hash).map_err(|why| format!("line {n}: user {user:?}: {why}"))?;
        if let Some(first) = lines_of.insert(user.into(), n) {
            return Err(format!(
                "line {n}: user {user:?} is already defined on line {first}"
            ));
        }
        let (lo, hi) = users.costs.unwrap_or((cost, 0));
        if cost > hi {
            users.decoy = Some(hash.into());
        }
        users.costs = Some((lo.min(cost), hi.max(cost)));
        users.hashes.insert(user.into(), hash.into());
    }
    Ok(users)
}

/// Only bcrypt (`htpasswd -B`): the other schemes htpasswd writes are weak or unsalted.
/// The hash's cost when it is good.
fn check_hash(hash: &str) -> Result<u32, String> {
    const REDO: &str = "only bcrypt hashes are supported (re-create with `htpasswd -B`)";
    let scheme = if hash.starts_with("$apr1$") {
        "MD5 ($apr1$)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1 ({SHA})"
    } else if hash.starts_with("$1$") || hash.starts_with("$5$") || hash.starts_with("$6$") {
        "crypt(3) ($1$/$5$/$6$)"
    } else if !["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
        if hash.is_empty() {
            return Err(format!("no hash; {REDO}"));
        }
        "crypt (DES) or plain text"
    } else {
        let parts = hash
            .parse::<bcrypt::HashParts>()
            .map_err(|e| format!("malformed bcrypt hash: {e}"))?;
        let cost = parts.get_cost();
        if !COSTS.contains(&cost) {
            return Err(format!(
                "bcrypt cost {cost} is outside {}..={}",
                COSTS.start(),
                COSTS.end()
            ));
        }
        return Ok(cost);
    };
    Err(format!("{scheme} is not supported; {REDO}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "$2y$04$L6Bc/AlTQHyd9liGgGEZyOFLPHNgyxeEPfgYfBCVxJ7JIlwxyVU3u";

    #[test]
    fn htpasswd_lines_are_checked_with_their_number() {
        let ok = parse_htpasswd(format!("# c\n\nalice:{H}\r\nbob:{H}\n").as_bytes()).unwrap();
        assert_eq!(ok.hashes.len(), 2);
        for (text, needle) in [
            (
                format!("a:{H}\nb:$apr1$xyz$abc\n"),
                "line 2: user \"b\": MD5",
            ),
            ("\nc:{SHA}abc=\n".into(), "line 2: user \"c\": SHA-1"),
            (
                "d:abJnggxhB/yWI\n".into(),
                "line 1: user \"d\": crypt (DES)",
            ),
            ("e:$6$salt$x\n".into(), "crypt(3)"),
            (
                format!("a:{H}\n#\na:{H}\n"),
                "line 3: user \"a\" is already defined on line 1",
            ),
            ("nocolon\n".into(), "line 1: no ':'"),
            (":x\n".into(), "line 1: empty user"),
            ("a:$2y$04$short\n".into(), "line 1: user \"a\": malformed"),
            (format!("a:{}\n", H.replacen("$04$", "$31$", 1)), "cost 31"),
        ] {
            let e = parse_htpasswd(text.as_bytes()).map(|_| ()).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn rules_are_ordered_most_specific_first_and_checked_in_place() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path().join("h");
        std::fs::write(&h, format!("a:{H}\n")).unwrap();
        let h = h.display().to_string();
        let rule = |p: &str, realm: &str| {
            format!("[[auth]]\npath = {p:?}\nrealm = {realm:?}\nhtpasswd = {h:?}\n")
        };
        let text = rule("/a/", "x") + &rule("/a/b/", "y") + &rule("/a/", "z");
        let c = crate::config::tests::load(&text).unwrap();
        let realms: Vec<&str> = c.auth.iter().map(|r| &*r.realm).collect();
        assert_eq!(realms, ["y", "x", "z"]);
        // Issue 21: ranked by literal prefix, then pattern length, not by length alone.
        let text = rule("/**/*.pdf", "staff")
            + &rule("/admin/", "admins")
            + &rule("/admin/**/*.pdf", "pdfs")
            + &rule("/admin/*", "any")
            + &rule("/ad", "short");
        let c = crate::config::tests::load(&text).unwrap();
        let realms: Vec<&str> = c.auth.iter().map(|r| &*r.realm).collect();
        assert_eq!(realms, ["pdfs", "any", "admins", "short", "staff"]);
        assert_eq!(literal_prefix("/admin/**/*.pdf"), "/admin/");
        assert_eq!(literal_prefix("/a/b"), "/a/b");
        assert_eq!(c.auth[0].users.hash_of("a"), Some(H));
        assert!(format!("{:?}", c.auth[0].users).contains("\"a\""));
        assert!(
            !format!("{:?}", c.auth[0]).contains(H),
            "hashes stay out of Debug"
        );
        for (text, needle) in [
            (rule("a/", "x"), "line 2, column 8: `auth.path`"),
            (rule("/a/", "x\"y"), "line 3, column 9: `auth.realm`"),
            (rule("/a/", "x") + "user = \"u\"\n", "unknown field `user`"),
            (rule("/a/", "r").replace(&h, "nope"), "`auth.htpasswd`"),
        ] {
            let e = crate::config::tests::load(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    /// Issue 21: the decoy an unknown user is checked against is the costliest hash, so
    /// no known user's check takes longer than an unknown one's.
    #[test]
    fn the_decoy_is_the_costliest_hash_and_mixed_costs_are_told() {
        let slow = bcrypt::hash("pw", 5).unwrap();
        let mut text: String = (0..20).map(|i| format!("u{i}:{H}\n")).collect();
        text += &format!("slow:{slow}\n");
        let users = Users::parse(text.as_bytes()).unwrap();
        assert_eq!(users.decoy(), Some(&*slow));
        assert_eq!(users.mixed_costs(), Some((4, 5)));
        let users = Users::parse(format!("a:{H}\nb:{H}\n").as_bytes()).unwrap();
        assert_eq!((users.decoy(), users.mixed_costs()), (Some(H), None));
        let again = Users::parse(format!("a:{H}\nb:{H}\n").as_bytes()).unwrap();
        let other = Users::parse(format!("a:{H}\n").as_bytes()).unwrap();
        assert_eq!(users.fingerprint(), again.fingerprint());
        assert_ne!(users.fingerprint(), other.fingerprint());
        assert_eq!(Users::parse(b"# none\n").unwrap().decoy(), None);
    }

    #[test]
    fn realms_must_fit_a_quoted_string() {
        assert!(check_realm("staging area").is_ok());
        for bad in ["", "a\"b", "a\\b", "é", "a\tb"] {
            assert!(check_realm(bad).is_err(), "{bad:?}");
        }
    }
}
