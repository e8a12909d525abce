#!/usr/bin/env python3
"""An HTTP/2 client (the `h2` package) for tests/it/proxy_h2.rs: streams through the proxy.

usage: h2proxy_client.py HOST PORT [--tls CA_PEM] [--out DIR] JSON

JSON = {"streams": [S, ...], "sequential": false, "stall_ms": N}
  S = {"path": "/x", "method": "GET", "headers": [[k, v], ...],
       "body_len": N            # request body: N bytes, byte i = i % 251
       "content_length": true,  # announce it (else the body is sent without one)
       "reset": "headers",      # reset the stream (CANCEL) once its response headers arrive
       "until": "text",         # gunzip the body as it arrives; once it holds "text",
       "then": S}               #   print `seen I ms=T` and open stream S (appended)
Streams are opened all at once on one connection (or one after the other with
"sequential"). Request bodies are sent as the server's flow-control windows allow; with
"stall_ms", a stream whose body could not move for that long prints `stalled I sent=N`
(once), N being the body bytes sent so far.

Prints, as streams end: `resp I status=S len=N ms=T` (the body goes to DIR/I),
`reset I code=C` (the server reset it), `cancelled I` (we did), `hdr I name: value`;
then `order I J ...` (the order in which they ended) and `alive` if a PING was still
answered after the last stream.
"""
import json
import os
import select
import socket
import ssl
import sys
import time
import zlib

import h2.config
import h2.connection
import h2.events
import h2.settings


def pattern(n):
    return (bytes(range(251)) * (n // 251 + 1))[:n]


def main():
    args = sys.argv[1:]
    ca = out = None
    while args and args[0].startswith("--"):
        if args[0] == "--tls":
            ca = args[1]
        elif args[0] == "--out":
            out = args[1]
        args = args[2:]
    host, port, spec = args[0], int(args[1]), json.loads(args[2])
    sock = socket.create_connection((host, port), timeout=30)
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    c.increment_flow_control_window(2**31 - 1 - 65535)
    sock.sendall(c.data_to_send())

    specs = spec["streams"]
    sequential = spec.get("sequential", False)
    t0 = time.monotonic()
    ids = {}  # stream id -> index
    bodies = {}  # stream id -> bytearray
    status = {}
    sending = {}  # stream id -> [data, pos]
    order = []
    lines = []
    gunzip = {}  # stream id -> [decompressobj, decoded so far] while "until" is unseen

    def open_stream(i):
        s = specs[i]
        sid = c.get_next_available_stream_id()
        ids[sid] = i
        bodies[sid] = bytearray()
        n = s.get("body_len")
        hdrs = [
            (":method", s.get("method", "GET")),
            (":path", s["path"]),
            (":scheme", "https" if ca else "http"),
            (":authority", "localhost"),
        ]
        if n is not None and s.get("content_length", True):
            hdrs.append(("content-length", str(n)))
        hdrs += [tuple(h) for h in s.get("headers", [])]
        c.send_headers(sid, hdrs, end_stream=n is None)
        if s.get("until") is not None:
            gunzip[sid] = [zlib.decompressobj(wbits=31), b""]
        if n is not None:
            sending[sid] = [pattern(n), 0]

    def send_more():
        moved = False
        for sid in list(sending):
            data, pos = sending[sid]
            while True:
                room = min(c.local_flow_control_window(sid), c.max_outbound_frame_size)
                left = len(data) - pos
                if left == 0:
                    c.end_stream(sid)
                    del sending[sid]
                    break
                if room <= 0:
                    sending[sid][1] = pos
                    break
                n = min(room, left)
                c.send_data(sid, data[pos:pos + n])
                pos += n
                moved = True
        return moved

    def ended(sid):
        order.append(ids[sid])
        sending.pop(sid, None)
        if sequential and len(order) < len(specs):
            open_stream(len(order))

    if sequential:
        open_stream(0)
    else:
        for i in range(len(specs)):
            open_stream(i)
    stall_ms = spec.get("stall_ms")
    stalled = set()
    last_move = time.monotonic()
    send_more()
    sock.sendall(c.data_to_send())
    while len(order) < len(specs):
        if stall_ms is not None and not (ca and sock.pending()):
            # Poll, so that a body stuck on its window is noticed.
            if not select.select([sock], [], [], 0.05)[0]:
                if send_more():
                    last_move = time.monotonic()
                elif (time.monotonic() - last_move) * 1000 >= stall_ms:
                    for sid, (_, pos) in sending.items():
                        if sid not in stalled:
                            stalled.add(sid)
                            print(f"stalled {ids[sid]} sent={pos}", flush=True)
                out_data = c.data_to_send()
                if out_data:
                    sock.sendall(out_data)
                continue
        data = sock.recv(1 << 16)
        if not data:
            print("eof")
            break
        for e in c.receive_data(data):
            sid = getattr(e, "stream_id", None)
            if isinstance(e, h2.events.ResponseReceived):
                i = ids[sid]
                for k, v in e.headers:
                    k, v = k.decode(), v.decode()
                    if k == ":status":
                        status[sid] = v
                    else:
                        lines.append(f"hdr {i} {k}: {v}")
                if specs[i].get("reset") == "headers":
                    c.reset_stream(sid, 8)  # CANCEL
                    print(f"cancelled {i}")
                    ended(sid)
            elif isinstance(e, h2.events.DataReceived):
                if sid in ids and ids[sid] not in order:
                    bodies[sid] += e.data
                if sid in gunzip:
                    d = gunzip[sid]
                    try:
                        d[1] += d[0].decompress(e.data)
                    except zlib.error as err:
                        print(f"not-gzip {ids[sid]} {err}")
                        del gunzip[sid]
                        d = [None, b""]
                    sp = specs[ids[sid]]
                    if sid in gunzip and sp["until"].encode() in d[1]:
                        del gunzip[sid]
                        ms = int((time.monotonic() - t0) * 1000)
                        print(f"seen {ids[sid]} ms={ms}")
                        if sp.get("then") is not None:
                            specs.append(sp["then"])
                            open_stream(len(specs) - 1)
                c.acknowledge_received_data(e.flow_controlled_length, sid)
            elif isinstance(e, h2.events.StreamEnded):
                if ids.get(sid) in order:
                    continue
                i = ids[sid]
                ms = int((time.monotonic() - t0) * 1000)
                print(f"resp {i} status={status.get(sid)} len={len(bodies[sid])} ms={ms}")
                if out:
                    with open(os.path.join(out, str(i)), "wb") as f:
                        f.write(bodies[sid])
                ended(sid)
            elif isinstance(e, h2.events.StreamReset):
                if ids.get(sid) in order:
                    continue
                print(f"reset {ids[sid]} code={int(e.error_code)}")
                ended(sid)
            elif isinstance(e, h2.events.ConnectionTerminated):
                print(f"goaway code={int(e.error_code)}")
        if send_more():
            last_move = time.monotonic()
        out_data = c.data_to_send()
        if out_data:
            sock.sendall(out_data)
    for l in lines:
        print(l)
    print("order " + " ".join(str(i) for i in order))
    # The connection still works after all that.
    c.ping(b"12345678")
    sock.sendall(c.data_to_send())
    try:
        while True:
            data = sock.recv(1 << 16)
            if not data:
                break
            if any(isinstance(e, h2.events.PingAckReceived) for e in c.receive_data(data)):
                print("alive")
                break
    except OSError:
        pass
    sys.stdout.flush()


main()
