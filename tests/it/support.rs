//! A real vireo process on an ephemeral loopback port, and a raw HTTP client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(30);

pub struct TestServer {
    pub addr: SocketAddr,
    /// The metrics listener, when the config enables one.
    pub metrics: Option<SocketAddr>,
    pub child: Child,
    pub dir: tempfile::TempDir,
    /// Lines the server printed: stdout always, stderr with `start_logged`.
    pub output: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// Start vireo with `extra` TOML appended to a base config (workers = 2, port 0) and a
    /// fresh docroot, populated by `setup` before the server starts.
    pub fn start_with(extra: &str, setup: impl FnOnce(&Path)) -> TestServer {
        Self::start_wrapped(&[], extra, setup)
    }

    /// Like `start_with`, with the binary run under a wrapper command (e.g. `prlimit`).
    pub fn start_wrapped(wrapper: &[&str], extra: &str, setup: impl FnOnce(&Path)) -> TestServer {
        Self::start_full(wrapper, extra, setup, None, &[])
    }

    /// Like `start_with`, with `RUST_LOG=rust_log` and stderr collected in `output` (see
    /// `wait_output`), and extra environment variables.
    pub fn start_logged(
        rust_log: &str,
        env: &[(&str, &str)],
        extra: &str,
        setup: impl FnOnce(&Path),
    ) -> TestServer {
        Self::start_full(&[], extra, setup, Some(rust_log), env)
    }

    fn start_full(
        wrapper: &[&str],
        extra: &str,
        setup: impl FnOnce(&Path),
        rust_log: Option<&str>,
        env: &[(&str, &str)],
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("mkdir root");
        setup(&root);
        let has_workers = extra.lines().any(|l| l.trim_start().starts_with("workers"));
        // A top-level `listen` in `extra` replaces the default one.
        let has_listen = extra
            .lines()
            .take_while(|l| !l.trim_start().starts_with('['))
            .any(|l| l.trim_start().starts_with("listen"));
        let cfg = format!(
            "{}root = \"root\"\n{}{extra}\n",
            if has_listen {
                ""
            } else {
                "listen = \"127.0.0.1:0\"\n"
            },
            if has_workers { "" } else { "workers = 2\n" }
        );
        let cfg_path = dir.path().join("vireo.toml");
        std::fs::write(&cfg_path, cfg).expect("write config");
        let mut cmd = match wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(env!("CARGO_BIN_EXE_vireo"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_vireo")),
        };
        let mut child = cmd
            .arg("--config")
            .arg(&cfg_path)
            .env("RUST_LOG", rust_log.unwrap_or("error"))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(if rust_log.is_some() {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("spawn vireo");
        let output = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let out = output.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("vireo: {l}");
                    out.lock().expect("lock").push(l);
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut metrics = None;
        let addr = loop {
            let line = lines
                .next()
                .expect("vireo exited before listening")
                .expect("read stdout");
            if let Some(a) = line.strip_prefix("metrics on http://") {
                metrics = a.strip_suffix("/metrics").and_then(|a| a.parse().ok());
            }
            if let Some(a) = line.strip_prefix("listening on ") {
                break a.parse().expect("address");
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        let out = output.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                out.lock().expect("lock").push(l);
            }
        });
        TestServer {
            addr,
            metrics,
            child,
            dir,
            output,
        }
    }

    /// Wait (bounded) for an output line matching `pred`; returns it.
    pub fn wait_output(&self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.output.lock().expect("lock").iter().find(|l| pred(l)) {
                return l.clone();
            }
            assert!(
                start.elapsed() < within,
                "no such output line within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every `listening on` address printed so far (`addr` first), once there are at least
    /// `n` (waits, bounded): one per configured address at start, then one per address a
    /// reload opens.
    pub fn listening(&self, n: usize) -> Vec<SocketAddr> {
        self.wait_listening("listening on ", Some(self.addr), n)
    }

    /// `first` (if any), then every address printed after `prefix` so far, once there are
    /// at least `n` (waits, bounded).
    fn wait_listening(&self, prefix: &str, first: Option<SocketAddr>, n: usize) -> Vec<SocketAddr> {
        let start = Instant::now();
        loop {
            let mut all: Vec<SocketAddr> = first.into_iter().collect();
            all.extend(self.output.lock().expect("lock").iter().filter_map(|l| {
                l.strip_prefix(prefix)
                    .map(|a| a.parse::<SocketAddr>().expect("address"))
            }));
            if all.len() >= n {
                return all;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "only {} `{prefix}` lines",
                all.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait (bounded) until `vireo_reloads_total{result}` reaches `n` (needs `[metrics]`).
    pub fn wait_reloads(&self, result: &str, n: u64) {
        let label = format!("result=\"{result}\"");
        let start = Instant::now();
        while metric(&scrape(self), "vireo_reloads_total", &label) < n {
            assert!(
                start.elapsed() < TIMEOUT,
                "reload {result} #{n} never counted"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn start(extra: &str) -> TestServer {
        Self::start_with(extra, default_files)
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn signal(&self, sig: i32) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        let sig = match sig {
            15 => rustix::process::Signal::TERM,
            2 => rustix::process::Signal::INT,
            1 => rustix::process::Signal::HUP,
            10 => rustix::process::Signal::USR1,
            _ => panic!("signal {sig}"),
        };
        rustix::process::kill_process(pid, sig).expect("kill");
    }

    /// Wait for the process to exit, with a deadline.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < within {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A few files most tests use.
pub fn default_files(root: &Path) {
    std::fs::write(root.join("index.html"), b"<h1>home</h1>\n").expect("write");
    std::fs::write(root.join("small.txt"), b"hello, vireo\n").expect("write");
    std::fs::write(root.join("with space.txt"), b"spaced\n").expect("write");
    std::fs::create_dir(root.join("dir")).expect("mkdir");
    std::fs::write(root.join("dir/index.html"), b"dir index\n").expect("write");
    std::fs::create_dir(root.join("empty")).expect("mkdir");
}

pub fn set_mtime(path: &Path, t: std::time::SystemTime) {
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    f.set_modified(t).expect("set mtime");
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    #[allow(dead_code)] // handy in assertion messages
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP/1.1 client over any byte stream: plain TCP by default, or TLS (`TlsClient`).
pub struct Client<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(TIMEOUT)).expect("timeout");
        Client::over(stream)
    }
}

impl<S: Read + Write> Client<S> {
    /// A client over an already connected stream.
    pub fn over(stream: S) -> Client<S> {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
        self.stream.flush().expect("flush");
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        // EINTR: a read with SO_RCVTIMEO is not restarted after a signal handler ran in
        // this process, whatever SA_RESTART says; try again.
        let n = loop {
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r.expect("read (timed out?)"),
            }
        };
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Read one response; `head_request` means no body follows whatever the headers say.
    pub fn read_response_to(&mut self, head_request: bool) -> Response {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.fill() > 0,
                "connection closed before a full head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("ascii head");
        self.buf.drain(..end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header colon");
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        let mut resp = Response {
            status,
            head,
            headers,
            body: Vec::new(),
        };
        if status == 100 {
            return resp;
        }
        let len: usize = if head_request || status == 304 || status == 204 {
            0
        } else {
            resp.header("content-length")
                .map(|v| v.parse().expect("content-length"))
                .unwrap_or(0)
        };
        while self.buf.len() < len {
            assert!(self.fill() > 0, "connection closed mid-body");
        }
        resp.body = self.buf.drain(..len).collect();
        resp
    }

    pub fn read_response(&mut self) -> Response {
        self.read_response_to(false)
    }

    /// GET `path` on this connection and read the answer.
    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.read_response()
    }

    /// Everything until the server closes (for Connection: close checks).
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.buf);
        self.stream.read_to_end(&mut rest).expect("read to close");
        rest
    }

    /// True if the server closed the connection (EOF) with nothing more to read.
    pub fn is_closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    Client::connect(addr).get(path)
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

pub fn metrics_addr(s: &TestServer) -> std::net::SocketAddr {
    s.metrics.expect("metrics listener")
}

/// Sum of a metric over all its label sets.
pub fn metric(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(label))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .expect("value") as u64
        })
        .sum()
}

pub fn scrape(s: &TestServer) -> String {
    let r = get(metrics_addr(s), "/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    String::from_utf8(r.body).expect("utf8")
}

// --------------------------------------------------------------------------- TLS

pub use rustls::client::ClientSessionStore;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// The client side of one TLS connection over blocking TCP.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;
/// The raw HTTP client over TLS.
pub type TlsClient = Client<TlsStream>;

/// A leaf's names (SANs, the first also the CN), pointing at its issuer's key.
fn leaf_params(names: &[&str]) -> rcgen::CertificateParams {
    let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(sans).expect("leaf params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    params.use_authority_key_identifier_extension = true;
    params
}

/// A certificate authority made at test time (ECDSA P-256). RSA keys are not offered:
/// rcgen generates them only with its `aws_lc_rs` feature, which is not enabled.
pub struct TestCa {
    pub cert_pem: String,
    cert_der: rustls::pki_types::CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        TestCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses, the first also the CN):
    /// (chain PEM leaf first then the CA, private key PEM).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let mut params = leaf_params(names);
        params
            .key_usages
            .push(rcgen::KeyUsagePurpose::DigitalSignature);
        params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        (cert.pem() + &self.cert_pem, key.serialize_pem())
    }

    /// A server certificate for `names` with an RSA-4096 key (aws-lc-rs makes the key;
    /// rcgen on ring cannot): the costliest common signature, ~5 ms of a core.
    pub fn leaf_rsa4096(&self, names: &[&str]) -> (String, String) {
        use aws_lc_rs::encoding::AsDer;
        let k = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa4096).expect("rsa");
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&k).expect("der");
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_ref().to_vec());
        let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
            .expect("rcgen key");
        let cert = leaf_params(names)
            .signed_by(&key, &self.issuer)
            .expect("leaf cert");
        (cert.pem() + &self.cert_pem, key.serialize_pem())
    }

    /// Write a leaf for `names` as `dir/<stem>.crt` and `dir/<stem>.key`.
    pub fn write_leaf(&self, dir: &Path, stem: &str, names: &[&str]) {
        let (chain, key) = self.leaf(names);
        std::fs::write(dir.join(format!("{stem}.crt")), chain).expect("write cert");
        std::fs::write(dir.join(format!("{stem}.key")), key).expect("write key");
    }

    /// A root store trusting only this CA.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert_der.clone()).expect("add CA");
        roots
    }

    /// A client configuration trusting this CA.
    pub fn client_config(&self, opts: &TlsOpts) -> Arc<ClientConfig> {
        let builder = if opts.tls12_only {
            ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        } else {
            ClientConfig::builder()
        };
        let mut cfg = builder
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        cfg.alpn_protocols = opts.alpn.clone();
        cfg.resumption = match &opts.sessions {
            Some(store) => rustls::client::Resumption::store(store.clone()),
            None => rustls::client::Resumption::disabled(),
        };
        Arc::new(cfg)
    }
}

/// How a test TLS client behaves.
#[derive(Default, Clone)]
pub struct TlsOpts {
    /// ALPN protocols offered; empty = no ALPN extension.
    pub alpn: Vec<Vec<u8>>,
    /// Sessions shared by every connection made with this config (see `session_store`);
    /// None = never resume.
    pub sessions: Option<Arc<dyn ClientSessionStore>>,
    /// Offer TLS 1.2 only.
    pub tls12_only: bool,
}

/// An in-memory client session store, for resumption tests.
pub fn session_store() -> Arc<dyn ClientSessionStore> {
    Arc::new(rustls::client::ClientSessionMemoryCache::new(32))
}

/// A TLS connection whose handshake is not done yet (it happens on first I/O); `name` is
/// the SNI name and the name the certificate is checked against (an IP sends no SNI).
pub fn tls_stream(addr: SocketAddr, cfg: &Arc<ClientConfig>, name: &str) -> TlsStream {
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    sock.set_write_timeout(Some(TIMEOUT)).expect("timeout");
    let name = ServerName::try_from(name.to_string()).expect("server name");
    let conn = ClientConnection::new(cfg.clone(), name).expect("client connection");
    StreamOwned::new(conn, sock)
}

/// Connect and finish the handshake; the error is whatever the handshake failed with.
pub fn tls_handshake(
    addr: SocketAddr,
    cfg: &Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<TlsStream> {
    let mut s = tls_stream(addr, cfg, name);
    while s.conn.is_handshaking() {
        match s.conn.complete_io(&mut s.sock) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => {
                r?;
            }
        }
    }
    Ok(s)
}

/// vireo with one `[tls]` listener and the `TestCa` that signed its certificate.
pub struct TlsServer {
    pub server: TestServer,
    /// The TLS listener (`server.addr` stays the plain one).
    pub tls_addr: SocketAddr,
    pub ca: TestCa,
    /// Trusts `ca`, no ALPN, no resumption.
    pub client: Arc<ClientConfig>,
}

impl std::ops::Deref for TlsServer {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl std::ops::DerefMut for TlsServer {
    fn deref_mut(&mut self) -> &mut TestServer {
        &mut self.server
    }
}

impl TestServer {
    /// Like `start_with`, plus `[tls]` on 127.0.0.2:0 with a fresh CA's certificate for
    /// `localhost`, `127.0.0.1` and `127.0.0.2` (`tls.crt`/`tls.key` next to the config);
    /// `tls_extra` lines go into `[tls]`. Not 127.0.0.1:0 like the plain listener: config
    /// rejects one address in both lists, port 0 included.
    pub fn start_tls(extra: &str, tls_extra: &str, setup: impl FnOnce(&Path)) -> TlsServer {
        let ca = TestCa::new("vireo test CA");
        let section = format!(
            "{extra}\n[tls]\nlisten = \"127.0.0.2:0\"\ncert = \"tls.crt\"\nkey = \"tls.key\"\n{tls_extra}"
        );
        let server = TestServer::start_with(&section, |root| {
            let dir = root.parent().expect("tempdir");
            ca.write_leaf(dir, "tls", &["localhost", "127.0.0.1", "127.0.0.2"]);
            setup(root);
        });
        let tls_addr = server.tls_listening(1)[0];
        let client = ca.client_config(&TlsOpts::default());
        TlsServer {
            server,
            tls_addr,
            ca,
            client,
        }
    }

    /// Every `listening for TLS on` address printed so far, once there are at least `n`.
    pub fn tls_listening(&self, n: usize) -> Vec<SocketAddr> {
        self.wait_listening("listening for TLS on ", None, n)
    }
}

impl TlsServer {
    /// A TLS connection (handshake done) with the default client config and SNI `localhost`.
    pub fn connect_tls(&self) -> TlsClient {
        Client::over(tls_handshake(self.tls_addr, &self.client, "localhost").expect("handshake"))
    }
}

/// Drop the `len`-byte file at `path` from the page cache; false where the filesystem keeps
/// evicted pages (tmpfs: nothing to test). Checked with a RWF_NOWAIT read of the last byte
/// only: that read starts readahead around the page it probes, so it must not touch the
/// first page of a window the server will probe (every 2 MiB from 0). Retried for up to 5 s:
/// pages the server just read may still be locked by readahead on a loaded machine.
pub fn evict_file(path: &Path, len: usize) -> bool {
    let f = std::fs::File::open(path).expect("open");
    f.sync_all().expect("fsync");
    for _ in 0..500 {
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
        let mut b = [0u8; 1];
        let mut bufs = [std::io::IoSliceMut::new(&mut b)];
        let last = len as u64 - 1;
        let r = rustix::io::preadv2(&f, &mut bufs, last, rustix::io::ReadWriteFlags::NOWAIT);
        if matches!(r, Err(rustix::io::Errno::AGAIN)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
