#!/usr/bin/env python3
"""A real HTTP/2 client (the `h2` package) for tests/it/h2.rs.

usage: h2client.py SCENARIO HOST PORT [--tls CA_PEM] [--out DIR] [JSON]

Prints plain lines on stdout (`resp I status=S len=N`, `hdr I name: value`, `order I ...`,
or `key value`). Scenarios:
  get      JSON = [{"path": "/x", "method": "GET", "headers": [[k, v], ...]}, ...]: every
           request on one connection at once; bodies go to DIR/<i>; prints per request
           status, headers, length, and the order the streams ended in.
  window   JSON = {"path": "/x"}: client window 1 KiB, then 0, then opened again; prints
           what arrived at each stage.
  reset    JSON = {"n": 500, "path": "/x"}: open and reset n streams; prints the GOAWAY.
  alpn     prints the protocol ALPN chose (offering JSON = ["h2", "http/1.1"]).
"""
import json
import os
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


def connect(host, port, ca, alpn=("h2",)):
    sock = socket.create_connection((host, port), timeout=60)
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(list(alpn))
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    return sock


def h2conn(sock, window=None):
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    settings = {}
    if window is not None:
        settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = window
    else:
        settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = 2**31 - 1
        c.increment_flow_control_window(2**31 - 1 - 65535)
    c.update_settings(settings)
    sock.sendall(c.data_to_send())
    return c


def pump(sock, c):
    data = sock.recv(1 << 16)
    if not data:
        raise EOFError("server closed the connection")
    events = c.receive_data(data)
    out = c.data_to_send()
    if out:
        sock.sendall(out)
    return events


def request_headers(host, r):
    h = [
        (":method", r.get("method", "GET")),
        (":scheme", r.get("scheme", "https")),
        (":authority", r.get("authority", host)),
        (":path", r["path"]),
    ]
    h += [tuple(x) for x in r.get("headers", [])]
    return h


def scenario_get(host, port, ca, out_dir, reqs):
    sock = connect(host, port, ca)
    c = h2conn(sock)
    ids = []
    for r in reqs:
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, request_headers(host, r), end_stream=True)
        ids.append(sid)
    sock.sendall(c.data_to_send())
    res = {sid: {"status": None, "headers": {}, "len": 0} for sid in ids}
    bodies = {sid: bytearray() for sid in ids}
    order = []
    while len(order) < len(ids):
        for ev in pump(sock, c):
            if isinstance(ev, h2.events.ResponseReceived):
                for k, v in ev.headers:
                    k, v = k.decode(), v.decode()
                    if k == ":status":
                        res[ev.stream_id]["status"] = int(v)
                    else:
                        res[ev.stream_id]["headers"][k] = v
            elif isinstance(ev, h2.events.DataReceived):
                bodies[ev.stream_id] += ev.data
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                order.append(ids.index(ev.stream_id))
            elif isinstance(ev, h2.events.StreamReset):
                res[ev.stream_id]["reset"] = int(ev.error_code)
                order.append(ids.index(ev.stream_id))
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise EOFError("GOAWAY %s" % ev.error_code)
        out = c.data_to_send()
        if out:
            sock.sendall(out)
    results = []
    for i, sid in enumerate(ids):
        res[sid]["len"] = len(bodies[sid])
        if out_dir:
            with open(os.path.join(out_dir, str(i)), "wb") as f:
                f.write(bodies[sid])
        results.append(res[sid])
    c.close_connection()
    sock.sendall(c.data_to_send())
    sock.close()
    return {"responses": results, "order": order}


def ping_roundtrip(sock, c, tag, got, sid):
    """A PING answered: whatever the server queued before it has arrived."""
    c.ping(tag)
    sock.sendall(c.data_to_send())
    while True:
        for ev in pump(sock, c):
            if isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                got[0] += len(ev.data)
            if isinstance(ev, h2.events.PingAckReceived) and ev.ping_data == tag:
                return


def scenario_window(host, port, ca, path):
    sock = connect(host, port, ca)
    c = h2conn(sock, window=1024)
    # Wait for the server's ACK of our SETTINGS so the 1 KiB window is in force.
    acked = False
    while not acked:
        for ev in pump(sock, c):
            if isinstance(ev, h2.events.SettingsAcknowledged):
                acked = True
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, request_headers(host, {"path": path}), end_stream=True)
    sock.sendall(c.data_to_send())
    got = [0]
    while got[0] < 1024:
        for ev in pump(sock, c):
            if isinstance(ev, h2.events.DataReceived):
                got[0] += len(ev.data)
    ping_roundtrip(sock, c, b"window01", got, sid)
    first = got[0]
    # A window of 0: the stream's window goes to -1024 (RFC 9113 6.9.2).
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    sock.sendall(c.data_to_send())
    ping_roundtrip(sock, c, b"window02", got, sid)
    # 1024 brings it back to 0 only: still nothing.
    c.increment_flow_control_window(1024, stream_id=sid)
    sock.sendall(c.data_to_send())
    ping_roundtrip(sock, c, b"window03", got, sid)
    at_zero = got[0]
    # Now open it wide (and the connection window too).
    c.increment_flow_control_window(1 << 30, stream_id=sid)
    c.increment_flow_control_window(1 << 30)
    sock.sendall(c.data_to_send())
    body = bytearray()
    ended = False
    while not ended:
        for ev in pump(sock, c):
            if isinstance(ev, h2.events.DataReceived):
                body += ev.data
            if isinstance(ev, h2.events.StreamEnded):
                ended = True
    sock.close()
    return {"first": first, "at_zero": at_zero, "total": at_zero + len(body)}


def scenario_reset(host, port, ca, n, path):
    sock = connect(host, port, ca)
    c = h2conn(sock)
    sock.sendall(c.data_to_send())
    sent = 0
    goaway = None
    try:
        for _ in range(n):
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, request_headers(host, {"path": path}), end_stream=True)
            c.reset_stream(sid)
            sent += 1
            sock.sendall(c.data_to_send())
    except (BrokenPipeError, ConnectionResetError, h2.exceptions.ProtocolError):
        pass
    try:
        while goaway is None:
            for ev in pump(sock, c):
                if isinstance(ev, h2.events.ConnectionTerminated):
                    goaway = int(ev.error_code)
    except (EOFError, ConnectionResetError, h2.exceptions.ProtocolError):
        pass
    return {"sent": sent, "goaway": goaway}


def scenario_alpn(host, port, ca, offer):
    sock = connect(host, port, ca, alpn=offer)
    proto = sock.selected_alpn_protocol()
    sock.close()
    return {"alpn": proto}


def main():
    args = sys.argv[1:]
    ca = None
    out_dir = None
    if "--tls" in args:
        i = args.index("--tls")
        ca = args[i + 1]
        del args[i : i + 2]
    if "--out" in args:
        i = args.index("--out")
        out_dir = args[i + 1]
        del args[i : i + 2]
    scenario, host, port = args[0], args[1], int(args[2])
    spec = json.loads(args[3]) if len(args) > 3 else None
    if scenario == "get":
        r = scenario_get(host, port, ca, out_dir, spec)
    elif scenario == "window":
        r = scenario_window(host, port, ca, spec["path"])
    elif scenario == "reset":
        r = scenario_reset(host, port, ca, spec["n"], spec["path"])
    elif scenario == "alpn":
        r = scenario_alpn(host, port, ca, spec)
    else:
        raise SystemExit("unknown scenario " + scenario)
    if scenario == "get":
        for i, x in enumerate(r["responses"]):
            print("resp %d status=%s len=%d reset=%s" % (i, x["status"], x["len"], x.get("reset", "-")))
            for k, v in sorted(x["headers"].items()):
                print("hdr %d %s: %s" % (i, k, v))
        print("order " + " ".join(str(i) for i in r["order"]))
    else:
        for k, v in r.items():
            print("%s %s" % (k, v))


if __name__ == "__main__":
    main()
