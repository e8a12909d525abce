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
