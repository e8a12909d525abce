//! Faults that must not stop service (cargo feature `fault-injection`: run with
//! `cargo test --features fault-injection`; without it these tests are ignored).

use crate::support::*;
use std::io::Read;
use std::time::{Duration, Instant};

const SIGTERM: i32 = 15;
const SIGHUP: i32 = 1;
const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

#[test]
#[cfg_attr(not(feature = "fault-injection"), ignore)]
fn a_panic_closes_its_connection_and_every_reactor_keeps_serving() {
    let s = TestServer::start_logged("error", &[], METRICS, default_files);
    let mut c = s.connect();
    c.send(b"GET /small.txt?boom HTTP/1.1\r\nHost: t\r\nX-Vireo-Fault: panic\r\n\r\n");
    let mut rest = Vec::new();
    let _ = c.stream.read_to_end(&mut rest); // EOF (or a reset): closed either way
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    // The error log names the request and the panic.
    let line = s.wait_output(TIMEOUT, |l| l.contains("panic handling"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("\"GET /small.txt?boom HTTP/1.1\""), "{line}");
    assert!(line.contains("injected fault: panic"), "{line}");
    let before = scrape(&s);
    for _ in 0..40 {
        assert_eq!(get(s.addr, "/small.txt").status, 200);
    }
    let m = scrape(&s);
    assert_eq!(metric(&m, "vireo_panics_total", ""), 1, "{m}");
    // Both reactors took new connections (40 fresh ones all on one socket: p = 2^-39).
    for r in ["reactor=\"0\"", "reactor=\"1\""] {
        let d = metric(&m, "vireo_connections_accepted_total", r)
            - metric(&before, "vireo_connections_accepted_total", r);
        assert!(d > 0, "{r} accepted nothing: {m}");
    }
}

#[test]
#[cfg_attr(not(feature = "fault-injection"), ignore)]
fn a_reactor_that_dies_ends_the_process_with_status_1_at_once() {
    let big = pattern(32 << 20, 5);
    // No backtrace: symbolising one in a debug build can take seconds on a busy machine.
    let mut s = TestServer::start_logged("error", &[("RUST_BACKTRACE", "0")], "", move |root| {
        std::fs::write(root.join("big.bin"), &big).expect("write");
    });
    // Downloads nobody reads, on both reactors: a graceful stop would wait 30 s for them.
    let mut downloads: Vec<Client> = (0..10).map(|_| s.connect()).collect();
    for d in &mut downloads {
        d.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut b = [0u8; 1];
        assert_eq!(d.stream.read(&mut b).expect("first byte"), 1);
    }
    let mut c = s.connect();
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nX-Vireo-Fault: reactor\r\n\r\n");
    let start = Instant::now();
    let status = s
        .wait_exit(Duration::from_secs(5))
        .expect("still running 5 s after a reactor died");
    assert_eq!(status.code(), Some(1), "{status:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        std::net::TcpStream::connect(s.addr).is_err(),
        "still listening"
    );
    s.wait_output(TIMEOUT, |l| {
        l.contains("ERROR") && l.contains("a reactor stopped unexpectedly")
    });
}

#[test]
#[cfg_attr(not(feature = "fault-injection"), ignore)]
fn a_reload_failing_halfway_keeps_the_old_set_and_sigterm_still_exits() {
    // Reactors 0 and 1 start; the reload builds 2 and fails building 3 (its second).
    let mut s = TestServer::start_logged(
        "error",
        &[("VIREO_FAULT_BUILD_FAIL", "3")],
        METRICS,
        |root| std::fs::write(root.join("which.txt"), b"old").expect("write"),
    );
    let root2 = s.dir.path().join("root2");
    std::fs::create_dir(&root2).expect("mkdir");
    std::fs::write(root2.join("which.txt"), b"new").expect("write");
    let cfg = s.dir.path().join("vireo.toml");
    let text = std::fs::read_to_string(&cfg).expect("read cfg");
    std::fs::write(&cfg, text.replace("root = \"root\"", "root = \"root2\"")).expect("write");
    s.signal(SIGHUP);
    s.wait_reloads("failed", 1);
    s.wait_output(TIMEOUT, |l| {
        l.contains("reload failed, keeping the running configuration")
    });
    for _ in 0..40 {
        assert_eq!(get(s.addr, "/which.txt").body, b"old");
    }
    s.signal(SIGTERM);
    let status = s.wait_exit(Duration::from_secs(5)).expect("SIGTERM hung");
    assert!(status.success(), "{status:?}");
}

/// SO_INCOMING_CPU of every listening socket the server holds on `port`, one per socket
/// (a socket's descriptors share it), read through duplicates taken with pidfd_getfd(2):
/// the option is not visible from outside the process any other way.
fn incoming_cpus(pid: u32, port: u16) -> Vec<(String, usize)> {
    use rustix::process::{pidfd_getfd, pidfd_open, Pid, PidfdFlags, PidfdGetfdFlags};
    let raw = Pid::from_raw(pid as i32).expect("pid");
    let pidfd = pidfd_open(raw, PidfdFlags::empty()).expect("pidfd_open");
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fd dir") {
        let Ok(e) = e else { continue };
        // A descriptor closed since the listing is simply gone.
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue;
        };
        let link = link.to_string_lossy().into_owned();
        let Some(n) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if !link.starts_with("socket:") {
            continue;
        }
        let Ok(fd) = pidfd_getfd(&pidfd, n, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let s = socket2::Socket::from(fd);
        let local = s.local_addr().ok().and_then(|a| a.as_socket());
        if local.map(|a| a.port()) != Some(port) || !s.is_listener().unwrap_or(false) {
            continue;
        }
        out.push((link, s.cpu_affinity().expect("SO_INCOMING_CPU")));
    }
    out.sort();
    out.dedup();
    out
}

#[test]
#[cfg_attr(not(feature = "fault-injection"), ignore)]
fn a_failed_reload_turning_pin_workers_on_leaves_the_sockets_unsteered() {
    // Reactors 0 and 1 start; the first reload fails building 2, its first.
    let s = TestServer::start_logged(
        "error",
        &[("VIREO_FAULT_BUILD_FAIL", "2")],
        &format!("pin_workers = false\n{METRICS}"),
        default_files,
    );
    let pid = s.child.id();
    let before = incoming_cpus(pid, s.addr.port());
    assert_eq!(before.len(), 2, "one socket per reactor: {before:?}");
    let cfg = s.dir.path().join("vireo.toml");
    let text = std::fs::read_to_string(&cfg).expect("read cfg");
    let on = text.replace("pin_workers = false", "pin_workers = true");
    assert_ne!(on, text);
    std::fs::write(&cfg, on).expect("write cfg");
    s.signal(SIGHUP);
    s.wait_reloads("failed", 1);
    assert_eq!(
        incoming_cpus(pid, s.addr.port()),
        before,
        "a failed reload steered the running sockets"
    );
    // The same file again: this reload succeeds and steers them to CPUs this process may use.
    s.signal(SIGHUP);
    s.wait_reloads("ok", 1);
    let allowed = rustix::thread::sched_getaffinity(None).expect("affinity");
    let after = incoming_cpus(pid, s.addr.port());
    assert_eq!(after.len(), 2, "{after:?}");
    for (sock, cpu) in &after {
        assert!(
            *cpu < rustix::thread::CpuSet::MAX_CPU && allowed.is_set(*cpu),
            "{sock}: SO_INCOMING_CPU {cpu}"
        );
    }
    assert_eq!(get(s.addr, "/small.txt").status, 200);
}
