#!/usr/bin/env python3
"""External conformance checks for vireo: real clients (curl, wget, http.client) and
httplint over every kind of response vireo produces.

Usage: python3 tests/external/check.py PATH_TO_VIREO_BINARY

Prints `PASS name` / `FAIL name: why` / `SKIP name: why` per check, then exactly one line
`external: N passed, M failed`; exits 1 if anything failed.
"""

import email.parser
import email.policy
import gzip
import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PASSED = 0
FAILED = 0


def ok(name):
    global PASSED
    PASSED += 1
    print(f"PASS {name}", flush=True)


def fail(name, why):
    global FAILED
    FAILED += 1
    print(f"FAIL {name}: {why}", flush=True)


def skip(name, why):
    print(f"SKIP {name}: {why}", flush=True)


def check(name, cond, why):
    if cond:
        ok(name)
    else:
        fail(name, why)


# --------------------------------------------------------------------------- fixtures

SMALL = b"".join(b"line %04d of the small text file\n" % i for i in range(40))[:1024]
BIG = b"".join(
    b"%06d the quick brown fox jumps over the lazy dog, again and again\n" % i
    for i in range(4000)
)[: 200 * 1024]
BIN = random.Random(1234).randbytes(3 * 1024 * 1024)
INDEX = b"<!doctype html>\n<html><head><title>vireo</title></head><body><p>hello</p></body></html>\n"
NOT_FOUND = b"<!doctype html>\n<html><head><title>Not found</title></head><body><p>no such page</p></body></html>\n"


def make_docroot(base):
    root = os.path.join(base, "root")
    os.makedirs(os.path.join(root, "noindex", "sub"))
    files = {
        "index.html": INDEX,
        "small.txt": SMALL,
        "big.txt": BIG,
        "blob.bin": BIN,
        "404.html": NOT_FOUND,
        "noindex/a.txt": b"a\n",
        "noindex/b.txt": b"b\n",
    }
    for rel, data in files.items():
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    # Make every file's mtime at least 2 s old, so Last-Modified is a strong validator.
    old = time.time() - 3600
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + dirnames:
            os.utime(os.path.join(dirpath, n), (old, old))
    return root


class Server:
    """vireo on an ephemeral port; with `tls=(cert, key)` also a TLS listener on
    127.0.0.1 (`tls_port`), the plain one then on 127.0.0.2 (one address cannot be both)."""

    def __init__(self, binary, base, name, autoindex, tls=None):
        self.dir = os.path.join(base, name)
        os.makedirs(self.dir)
        os.symlink(os.path.join(base, "root"), os.path.join(self.dir, "root"))
        cfg = os.path.join(self.dir, "vireo.toml")
        plain = "127.0.0.2:0" if tls else "127.0.0.1:0"
        with open(cfg, "w") as f:
            f.write(
                f'listen = "{plain}"\n'
                "workers = 2\n"
                'root = "root"\n'
                f"autoindex = {'true' if autoindex else 'false'}\n"
                "[limits]\n"
                "max_request_line = 8192\n"
                "max_header_bytes = 16384\n"
                "[compression]\n"
                "enabled = true\n"
                "[error_pages]\n"
                '404 = "/404.html"\n'
            )
            if tls:
                f.write(f'[tls]\nlisten = "127.0.0.1:0"\ncert = "{tls[0]}"\nkey = "{tls[1]}"\n')
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "--config", cfg],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=self.dir,
        )
        self.port = None
        self.tls_port = None
        line_box = []
        tls_box = []

        def reader():
            # Other lines (e.g. "reactor 0 started") may come first; TLS lines follow plain.
            for raw_line in iter(self.proc.stdout.readline, b""):
                if raw_line.startswith(b"listening on "):
                    line_box.append(raw_line)
                elif raw_line.startswith(b"listening for TLS on "):
                    tls_box.append(raw_line)
                if line_box and (tls_box or not tls):
                    return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(15)
        line = line_box[0].decode(errors="replace").strip() if line_box else ""
        if not line.startswith("listening on ") or (tls and not tls_box):
            self.stop()
            raise RuntimeError(f"vireo ({name}) did not start: stdout={line!r} tls={tls_box!r}")
        self.port = int(line.rsplit(":", 1)[1])
        if tls_box:
            self.tls_port = int(tls_box[0].decode().strip().rsplit(":", 1)[1])
        # Drain further stdout so the server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


# --------------------------------------------------------------------------- raw HTTP


def raw_exchange(port, request, timeout=10):
    """Send raw request bytes, read until the server closes; return the exact bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(request)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        s.close()


def parse_raw(raw, head_request=False):
    """Split one raw response into (status_line, [(name, value)], body)."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        raise ValueError(f"no end of head in {raw[:200]!r}")
    lines = raw[:end].split(b"\r\n")
    status = lines[0]
    headers = []
    for ln in lines[1:]:
        name, _, value = ln.partition(b":")
        headers.append((name, value.strip(b" \t")))
    rest = raw[end + 4 :]
    code = int(status.split(b" ")[1])
    if head_request or code in (204, 304):
        body = b""
    else:
        cl = [v for n, v in headers if n.lower() == b"content-length"]
        body = rest[: int(cl[0])] if cl else rest
    return status, headers, body


def hget(headers, name):
    for n, v in headers:
        if n.lower() == name.lower().encode():
            return v.decode("latin-1")
    return None


# --------------------------------------------------------------------------- httplint


# httplint "bad" notes that are not defects in the response, with the reason.
KNOWN_FALSE_POSITIVES = {
    # RFC 9110 15.3.7.2: a multipart/byteranges 206 carries Content-Range in each part,
    # not in the top-level head; httplint's check expects one regardless (parts are
    # verified by the curl multipart check).
    ("206 multipart", "PARTIAL_WITHOUT_RANGE"): "Content-Range is in each multipart part",
    # httplint describes every 414 as "bad" (the status itself, not its form); the 414 is
    # what the test asks for (request line over limits.max_request_line).
    ("414", "STATUS_URI_TOO_LONG"): "describes the 414 status itself",
}


def lint(kind, request, raw):
    """Lint one raw response; bad notes fail, warnings are printed."""
    try:
        from httplint import HttpRequestLinter, HttpResponseLinter
    except ImportError:
        fail(f"lint {kind}", "httplint is not installed (pip install httplint)")
        return None
    head_line = request.split(b"\r\n", 1)[0]
    method, target, version = head_line.split(b" ", 2)
    is_head = method == b"HEAD"
    try:
        status, headers, body = parse_raw(raw, head_request=is_head)
    except Exception as e:  # noqa: BLE001
        fail(f"lint {kind}", f"unparseable response: {e}")
        return None
    req_head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    req_headers = []
    for ln in req_head:
        n, _, v = ln.partition(b":")
        req_headers.append((n, v.strip()))
    req = HttpRequestLinter()
    req.process_request_topline(method, b"http://127.0.0.1" + target if target.startswith(b"/") else target, version)
    req.process_headers(req_headers)
    req.finish_content(True)

    resp = HttpResponseLinter()
    resp.request = req
    resp.is_head_response = is_head
    version, code, phrase = (status.split(b" ", 2) + [b""])[:3]
    resp.process_response_topline(version, code, phrase)
    resp.process_headers(headers)
    if body:
        resp.feed_content(body)
    resp.finish_content(True)

    bad = []

    def walk(notes, depth=0):
        for note in notes:
            lvl = note.level.value
            line = f"  [{lvl}] {kind}: {note.summary}"
            why = KNOWN_FALSE_POSITIVES.get((kind, type(note).__name__))
            if lvl == "bad" and why:
                print(f"{line} (not a failure: {why})")
            elif lvl == "bad":
                bad.append(str(note.summary))
                print(line)
            elif lvl == "warning":
                print(line)
            walk(note.subnotes, depth + 1)

    walk(resp.notes)
    check(f"lint {kind}", not bad, "httplint bad notes: " + "; ".join(bad))
    return status, headers, body


# --------------------------------------------------------------------------- checks


def run_curl(base, port):
    if not shutil.which("curl"):
        fail("curl", "curl binary not found (.ci/run installs it)")
        return
    url = f"http://127.0.0.1:{port}"
    out = os.path.join(base, "curl.out")
    hdr = os.path.join(base, "curl.hdr")

    r = subprocess.run(["curl", "-sS", "-r", "100-199", "-o", out, "-D", hdr, f"{url}/small.txt"],
                       capture_output=True, timeout=30)
    data = open(out, "rb").read() if os.path.exists(out) else b""
    check("curl range 100-199", r.returncode == 0 and data == SMALL[100:200],
          f"rc={r.returncode} got {len(data)} bytes {r.stderr.decode(errors='replace').strip()}")

    r = subprocess.run(["curl", "-sS", "-r", "0-0,10-19", "-o", out, "-D", hdr, f"{url}/small.txt"],
                       capture_output=True, timeout=30)
    try:
        head = open(hdr, "rb").read().decode("latin-1")
        ctype = [ln.split(":", 1)[1].strip() for ln in head.split("\r\n")
                 if ln.lower().startswith("content-type:")][-1]
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + open(out, "rb").read())
        parts = [(p["Content-Range"], p.get_payload(decode=True)) for p in msg.iter_parts()]
        want = [(f"bytes 0-0/{len(SMALL)}", SMALL[0:1]), (f"bytes 10-19/{len(SMALL)}", SMALL[10:20])]
        check("curl multipart range 0-0,10-19",
              r.returncode == 0 and ctype.startswith("multipart/byteranges") and parts == want,
              f"rc={r.returncode} ctype={ctype!r} parts={parts!r}")
    except Exception as e:  # noqa: BLE001
        fail("curl multipart range 0-0,10-19", f"parse error: {e!r}")

    r = subprocess.run(["curl", "-sS", "--compressed", "-o", out, "-D", hdr, f"{url}/big.txt"],
                       capture_output=True, timeout=30)
    data = open(out, "rb").read()
    head = open(hdr, "rb").read().decode("latin-1").lower()
    # curl offers every coding it was built with (gzip, br, zstd on Debian) and decodes it.
    coded = any(f"content-encoding: {c}" in head for c in ("gzip", "br", "zstd"))
    check("curl --compressed", r.returncode == 0 and data == BIG and coded,
          f"rc={r.returncode} len={len(data)} encoded={coded}")


def run_wget(base, port):
    if not shutil.which("wget"):
        fail("wget -c resume", "wget binary not found (.ci/run installs it)")
        return
    d = os.path.join(base, "wget")
    os.makedirs(d)
    local = os.path.join(d, "blob.bin")
    with open(local, "wb") as f:
        f.write(BIN[: 1024 * 1024])
    r = subprocess.run(["wget", "-q", "-c", "-O", local, f"http://127.0.0.1:{port}/blob.bin"],
                       capture_output=True, timeout=60, cwd=d)
    data = open(local, "rb").read()
    check("wget -c resume", r.returncode == 0 and data == BIN,
          f"rc={r.returncode} len={len(data)} equal={data == BIN} {r.stderr.decode(errors='replace').strip()}")


def run_http_client(port):
    name = "http.client"
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.connect()
        sock = c.sock

        def req(method, path, headers=None, body=None):
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r, data

        r, data = req("GET", "/small.txt")
        etag = r.getheader("ETag")
        check(f"{name} GET", r.status == 200 and data == SMALL and etag, f"status={r.status} len={len(data)}")
        r, data = req("HEAD", "/small.txt")
        check(f"{name} HEAD", r.status == 200 and data == b"" and r.getheader("Content-Length") == str(len(SMALL)),
              f"status={r.status} cl={r.getheader('Content-Length')}")
        r, data = req("GET", "/small.txt", {"If-None-Match": etag})
        check(f"{name} If-None-Match 304", r.status == 304 and data == b"" and r.getheader("ETag") == etag,
              f"status={r.status} etag={r.getheader('ETag')}")
        r, data = req("GET", "/blob.bin", {"Range": "bytes=1000-1999"})
        check(f"{name} Range", r.status == 206 and data == BIN[1000:2000]
              and r.getheader("Content-Range") == f"bytes 1000-1999/{len(BIN)}",
              f"status={r.status} cr={r.getheader('Content-Range')}")
        r, data = req("GET", "/nope.txt")
        check(f"{name} 404", r.status == 404 and data == NOT_FOUND, f"status={r.status} body={data[:60]!r}")
        r, data = req("OPTIONS", "/small.txt")
        allow = r.getheader("Allow") or ""
        check(f"{name} OPTIONS", r.status in (200, 204) and "GET" in allow and "HEAD" in allow,
              f"status={r.status} allow={allow!r}")
        r, data = req("POST", "/small.txt", {"Content-Type": "text/plain"}, b"hello=world")
        allow = r.getheader("Allow") or ""
        check(f"{name} POST 405", r.status == 405 and "GET" in allow and "POST" not in allow,
              f"status={r.status} allow={allow!r}")
        r, data = req("GET", "/index.html")
        check(f"{name} keep-alive (same socket)", c.sock is sock and r.status == 200 and data == INDEX,
              "connection was replaced" if c.sock is not sock else f"status={r.status}")
        c.close()
    except Exception as e:  # noqa: BLE001
        fail(name, f"{type(e).__name__}: {e}")

    # Pipelined sequence: several safe requests in one write on one connection.
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        reqs = (b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                b"HEAD /big.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /small.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n"
                b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.sendall(reqs)
        f = s.makefile("rb")
        got = []
        for method in ("GET", "HEAD", "GET", "GET"):
            status = f.readline()
            headers = {}
            while True:
                ln = f.readline()
                if ln in (b"\r\n", b"\n", b""):
                    break
                n, _, v = ln.decode("latin-1").partition(":")
                headers[n.strip().lower()] = v.strip()
            n = 0 if method == "HEAD" else int(headers.get("content-length", "0"))
            got.append((int(status.split()[1]), f.read(n)))
        f.close()
        s.close()
        want = [(200, SMALL), (200, b""), (206, SMALL[:10]), (200, INDEX)]
        check(f"{name} pipelined", got == want, f"got {[(st, len(b)) for st, b in got]}")
    except Exception as e:  # noqa: BLE001
        fail(f"{name} pipelined", f"{type(e).__name__}: {e}")


def run_lints(port, port_ai):
    # First learn the ETag of small.txt.
    raw = raw_exchange(port, b"HEAD /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    etag = hget(parse_raw(raw, True)[1], "ETag") or '"x"'
    H = b"Host: 127.0.0.1\r\nUser-Agent: check.py\r\nConnection: close\r\n"
    cases = [
        ("200 file", 200, port, b"GET /small.txt HTTP/1.1\r\n" + H + b"\r\n"),
        ("200 gzip", 200, port, b"GET /big.txt HTTP/1.1\r\n" + H + b"Accept-Encoding: gzip\r\n\r\n"),
        ("200 zstd", 200, port, b"GET /big.txt HTTP/1.1\r\n" + H + b"Accept-Encoding: zstd\r\n\r\n"),
        ("200 br", 200, port, b"GET /big.txt HTTP/1.1\r\n" + H + b"Accept-Encoding: br\r\n\r\n"),
        ("200 index.html", 200, port, b"GET / HTTP/1.1\r\n" + H + b"\r\n"),
        ("200 binary", 200, port, b"GET /blob.bin HTTP/1.1\r\n" + H + b"\r\n"),
        ("206", 206, port, b"GET /small.txt HTTP/1.1\r\n" + H + b"Range: bytes=100-199\r\n\r\n"),
        ("206 multipart", 206, port, b"GET /small.txt HTTP/1.1\r\n" + H + b"Range: bytes=0-0,10-19\r\n\r\n"),
        ("304", 304, port, b"GET /small.txt HTTP/1.1\r\n" + H + b"If-None-Match: " + etag.encode() + b"\r\n\r\n"),
        ("301 redirect", 301, port, b"GET /noindex HTTP/1.1\r\n" + H + b"\r\n"),
        ("403", 403, port, b"GET /noindex/ HTTP/1.1\r\n" + H + b"\r\n"),
        ("404", 404, port, b"GET /missing.txt HTTP/1.1\r\n" + H + b"\r\n"),
        ("405", 405, port, b"POST /small.txt HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc"),
        ("412", 412, port, b"GET /small.txt HTTP/1.1\r\n" + H + b'If-Match: "nope"\r\n\r\n'),
        ("416", 416, port, b"GET /small.txt HTTP/1.1\r\n" + H + b"Range: bytes=999999-\r\n\r\n"),
        ("400", 400, port, b"GET /small.txt HTTP/1.1\r\nUser-Agent: check.py\r\n\r\n"),
        ("414", 414, port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n"),
        ("431", 431, port, b"GET /small.txt HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 17000 + b"\r\n\r\n"),
        ("501", 501, port, b"BREW /small.txt HTTP/1.1\r\n" + H + b"\r\n"),
        ("OPTIONS 204", 204, port, b"OPTIONS /small.txt HTTP/1.1\r\n" + H + b"\r\n"),
        ("HEAD", 200, port, b"HEAD /small.txt HTTP/1.1\r\n" + H + b"\r\n"),
        ("HEAD gzip", 200, port, b"HEAD /big.txt HTTP/1.1\r\n" + H + b"Accept-Encoding: gzip\r\n\r\n"),
        ("autoindex", 200, port_ai, b"GET /noindex/ HTTP/1.1\r\n" + H + b"\r\n"),
    ]
    for kind, want, p, request in cases:
        try:
            raw = raw_exchange(p, request)
        except Exception as e:  # noqa: BLE001
            fail(f"status {kind}", f"{type(e).__name__}: {e}")
            continue
        try:
            code = int(raw.split(b"\r\n", 1)[0].split(b" ")[1])
        except Exception:  # noqa: BLE001
            fail(f"status {kind}", f"unparseable status line: {raw[:80]!r}")
            continue
        if code != want:
            fail(f"status {kind}", f"expected {want}, got {code}")
            continue
        res = lint(kind, request, raw)
        if kind == "200 gzip" and res:
            _, headers, body = res
            try:
                check("gzip body decodes to file", hget(headers, "Content-Encoding") == "gzip"
                      and gzip.decompress(body) == BIG, "mismatch")
            except Exception as e:  # noqa: BLE001
                fail("gzip body decodes to file", repr(e))


# --------------------------------------------------------------------------- TLS


def make_certs(base):
    """A CA and two leaves for localhost/127.0.0.1 made with `openssl req`: ECDSA P-256
    and RSA-2048. Returns (ca.crt, {kind: (chain.crt, leaf.key)}) or raises."""
    d = os.path.join(base, "pki")
    os.makedirs(d)

    def run(*args):
        r = subprocess.run(["openssl", *args], capture_output=True, timeout=60, cwd=d)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {args[0]}: {r.stderr.decode(errors='replace').strip()}")

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    run("req", "-x509", *ec, "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-subj", "/CN=vireo check CA", "-days", "2")
    with open(os.path.join(d, "leaf.ext"), "w") as f:
        f.write("subjectAltName = DNS:localhost, IP:127.0.0.1\n"
                "basicConstraints = critical, CA:FALSE\n"
                "keyUsage = critical, digitalSignature, keyEncipherment\n"
                "extendedKeyUsage = serverAuth\n")
    leaves = {}
    for kind, newkey in (("ecdsa", ec), ("rsa", ["-newkey", "rsa:2048"])):
        run("req", *newkey, "-nodes", "-keyout", f"{kind}.key", "-out", f"{kind}.csr",
            "-subj", "/CN=localhost")
        run("x509", "-req", "-in", f"{kind}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "leaf.ext", "-out", f"{kind}.leaf")
        chain = os.path.join(d, f"{kind}.crt")
        with open(chain, "wb") as f:
            for part in (f"{kind}.leaf", "ca.crt"):
                with open(os.path.join(d, part), "rb") as p:
                    f.write(p.read())
        leaves[kind] = (chain, os.path.join(d, f"{kind}.key"))
    return os.path.join(d, "ca.crt"), leaves


def run_curl_tls(base, port, ca):
    """curl --cacert against the TLS listener: verified chain, exact bytes, ALPN."""
    if not shutil.which("curl"):
        fail("curl https", "curl binary not found (.ci/run installs it)")
        return
    url = f"https://localhost:{port}"
    common = ["curl", "-sS", "--cacert", ca, "--resolve", f"localhost:{port}:127.0.0.1"]
    out = os.path.join(base, "curl-tls.out")

    r = subprocess.run(common + ["-o", out, "-w", "%{http_code} %{http_version} %{ssl_verify_result}",
                                 f"{url}/small.txt"], capture_output=True, timeout=30)
    data = open(out, "rb").read() if os.path.exists(out) else b""
    got = r.stdout.decode(errors="replace")
    # curl offers h2 first, and vireo takes it ([http2] enabled by default).
    check("curl https GET", r.returncode == 0 and data == SMALL and got == "200 2 0",
          f"rc={r.returncode} out={got!r} len={len(data)} {r.stderr.decode(errors='replace').strip()}")

    # Offered only http/1.1: the server must pick it (ALPN fallback).
    r = subprocess.run(common + ["-v", "--http1.1", "-o", out, "-w", "%{http_version}", f"{url}/big.txt"],
                       capture_output=True, timeout=30)
    data = open(out, "rb").read() if os.path.exists(out) else b""
    verbose = r.stderr.decode(errors="replace")
    alpn = [ln for ln in verbose.splitlines() if "ALPN" in ln and "server" in ln]
    check("curl https ALPN http/1.1", r.returncode == 0 and data == BIG and r.stdout == b"1.1"
          and alpn and "http/1.1" in alpn[0],
          f"rc={r.returncode} version={r.stdout!r} alpn={alpn!r}")

    r = subprocess.run(common + ["--compressed", "-o", out, "-D", out + ".hdr", f"{url}/big.txt"],
                       capture_output=True, timeout=30)
    data = open(out, "rb").read() if os.path.exists(out) else b""
    head = open(out + ".hdr", "rb").read().decode("latin-1").lower() if os.path.exists(out + ".hdr") else ""
    coded = any(f"content-encoding: {c}" in head for c in ("gzip", "br", "zstd"))
    check("curl https --compressed", r.returncode == 0 and data == BIG and coded,
          f"rc={r.returncode} len={len(data)} encoded={coded}")

    r = subprocess.run(common + ["-r", "1000-1999", "-o", out, f"{url}/blob.bin"],
                       capture_output=True, timeout=30)
    data = open(out, "rb").read() if os.path.exists(out) else b""
    check("curl https range", r.returncode == 0 and data == BIN[1000:2000],
          f"rc={r.returncode} len={len(data)}")

    r = subprocess.run(common + ["--tlsv1.2", "--tls-max", "1.2", "-o", out, f"{url}/small.txt"],
                       capture_output=True, timeout=30)
    data = open(out, "rb").read() if os.path.exists(out) else b""
    check("curl https TLS 1.2", r.returncode == 0 and data == SMALL,
          f"rc={r.returncode} {r.stderr.decode(errors='replace').strip()}")

    r = subprocess.run(["curl", "-sS", "-o", out, "--resolve", f"localhost:{port}:127.0.0.1",
                        f"{url}/small.txt"], capture_output=True, timeout=30)
    check("curl https rejects an unknown CA", r.returncode == 60,
          f"rc={r.returncode} (60 = peer certificate cannot be authenticated)")


def s_client(port, ca, extra, request=b""):
    """`openssl s_client` to the TLS port: (returncode, stdout + stderr)."""
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
            "-CAfile", ca, "-verify_return_error", "-alpn", "http/1.1", *extra]
    if request:
        args.append("-ign_eof")
    r = subprocess.run(args, input=request, capture_output=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def run_openssl_tls(port, ca, kind):
    if not shutil.which("openssl"):
        fail("openssl s_client", "openssl binary not found")
        return
    req = b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    for proto, flag in (("TLSv1.3", "-tls1_3"), ("TLSv1.2", "-tls1_2")):
        name = f"openssl s_client {kind} {flag}"
        rc, out = s_client(port, ca, [flag], req)
        good = "Verify return code: 0 (ok)" in out and f"New, {proto}, Cipher is" in out
        check(f"{name} handshake", rc == 0 and good and "ALPN protocol: http/1.1" in out,
              f"rc={rc} {out[-600:]!r}")
        check(f"{name} GET", "HTTP/1.1 200 OK" in out and SMALL.decode() in out,
              f"no 200 with the file in {out[-300:]!r}")
    # No version forced: the best both sides have.
    rc, out = s_client(port, ca, [])
    check(f"openssl s_client {kind} default is TLSv1.3",
          rc == 0 and "New, TLSv1.3, Cipher is" in out,
          f"rc={rc} {out[-400:]!r}")


def run_tls(binary, base, servers):
    try:
        ca, leaves = make_certs(base)
    except Exception as e:  # noqa: BLE001
        fail("make certificates (openssl req)", str(e))
        return
    for kind, pair in leaves.items():
        try:
            srv = Server(binary, base, f"tls-{kind}", autoindex=False, tls=pair)
        except Exception as e:  # noqa: BLE001
            fail(f"start vireo with TLS ({kind})", str(e))
            continue
        servers.append(srv)
        ok(f"start vireo with TLS ({kind})")
        if kind == "ecdsa":
            run_curl_tls(base, srv.tls_port, ca)
        run_openssl_tls(srv.tls_port, ca, kind)
        raw = raw_exchange(srv.tls_port, b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        check(f"plain HTTP to the TLS port ({kind})",
              raw.startswith(b"HTTP/1.1 400") and b"plain HTTP sent to an HTTPS port" in raw,
              f"got {raw[:120]!r}")


def main():
    if len(sys.argv) != 2:
        print("usage: check.py PATH_TO_VIREO_BINARY", file=sys.stderr)
        sys.exit(2)
    binary = os.path.abspath(sys.argv[1])
    base = tempfile.mkdtemp(prefix="vireo-ext-")
    servers = []
    try:
        make_docroot(base)
        try:
            main_srv = Server(binary, base, "plain", autoindex=False)
            servers.append(main_srv)
            ai_srv = Server(binary, base, "autoindex", autoindex=True)
            servers.append(ai_srv)
        except Exception as e:  # noqa: BLE001
            fail("start vireo", str(e))
        else:
            ok("start vireo")
            run_curl(base, main_srv.port)
            run_wget(base, main_srv.port)
            run_http_client(main_srv.port)
            run_lints(main_srv.port, ai_srv.port)
            run_tls(binary, base, servers)
            for srv in servers:
                alive = srv.proc.poll() is None
                check(f"vireo still running ({os.path.basename(srv.dir)})", alive,
                      f"exited with {srv.proc.returncode}")
    finally:
        for srv in servers:
            srv.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"external: {PASSED} passed, {FAILED} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
