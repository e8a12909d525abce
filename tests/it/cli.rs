use std::process::Command;

fn vireo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vireo"))
        .args(args)
        .output()
        .expect("run vireo")
}

#[test]
fn version_prints_the_crate_version() {
    let o = vireo(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("vireo {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_accepts_the_shipped_config() {
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/config/vireo.toml");
    let o = vireo(&["--check", "--config", cfg]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn check_names_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("public")).expect("mkdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "root = \"public\"\n[limits]\nmax_conections = 5\n").expect("write");
    let o = vireo(&["--check", "--config", path.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("line 3") && err.contains("max_conections"),
        "{err}"
    );

    std::fs::write(&path, "root = \"public\"\n[timeouts]\nheader = \"ten\"\n").expect("write");
    let o = vireo(&["--check", "--config", path.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("line 3") && err.contains("timeouts.header"),
        "{err}"
    );
}

#[test]
fn bind_failure_exits_nonzero_with_a_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("public")).expect("mkdir");
    let path = dir.path().join("v.toml");
    std::fs::write(&path, format!("listen = \"{addr}\"\nroot = \"public\"\n")).expect("write");
    let o = vireo(&["--config", path.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot listen on") && err.contains(&addr.to_string()),
        "{err}"
    );
}

/// `vireo --check` on a config with `text` (and a `public` root); (exit code, stderr).
fn check(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("public")).expect("mkdir");
    let path = dir.path().join("v.toml");
    std::fs::write(&path, format!("root = \"public\"\n{text}")).expect("write");
    let o = vireo(&["--check", "--config", path.to_str().expect("utf8")]);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_refuses_durations_longer_than_a_year() {
    for (text, key) in [
        (
            "[timeouts]\nkeepalive = \"100000000000h\"\n",
            "timeouts.keepalive",
        ),
        ("[timeouts]\nheader = \"8761h\"\n", "timeouts.header"),
        (
            "[timeouts]\nshutdown = \"99999999999999999999s\"\n",
            "timeouts.shutdown",
        ),
        (
            "[open_file_cache]\nvalid = \"18446744073709551615ms\"\n",
            "open_file_cache.valid",
        ),
        (
            "[open_file_cache]\ncheck = \"600000m\"\n",
            "open_file_cache.check",
        ),
    ] {
        let (code, err) = check(text);
        assert_eq!(code, Some(1), "{text}: {err}");
        assert!(
            err.contains(key) && err.contains("at most 1 year") && err.contains("line 3"),
            "{text}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, err) = check("[timeouts]\nkeepalive = \"8760h\"\n");
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn check_accepts_hidden_deny_or_allow_only() {
    for ok in ["deny", "allow"] {
        let (code, err) = check(&format!("hidden = \"{ok}\"\n"));
        assert_eq!(code, Some(0), "{ok}: {err}");
    }
    let (code, err) = check("hidden = \"yes\"\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("line 2") && err.contains("`hidden`"), "{err}");
}

/// With openat2 made to fail at the probe, vireo says once, at start, at warn level that
/// it falls back, and still serves files.
#[cfg(feature = "fault-injection")]
#[test]
fn the_openat2_fallback_is_announced_once() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("public")).expect("mkdir");
    std::fs::write(dir.path().join("public/f.txt"), b"fallback\n").expect("write");
    let path = dir.path().join("v.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\nroot = \"public\"\nworkers = 3\n",
    )
    .expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vireo"))
        .arg("--config")
        .arg(&path)
        .env("VIREO_FAULT_NO_OPENAT2", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr: std::net::SocketAddr = loop {
        let line = lines.next().expect("exited early").expect("read");
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.parse().expect("addr");
        }
    };
    let r = crate::support::get(addr, "/f.txt");
    assert_eq!((r.status, &r.body[..]), (200, &b"fallback\n"[..]));
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    let warned: Vec<&str> = err.lines().filter(|l| l.contains("openat2")).collect();
    assert_eq!(warned.len(), 1, "{err}");
    assert!(warned[0].contains("WARN"), "{err}");
}
