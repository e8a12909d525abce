#!/usr/bin/env python3
"""An HTTP/2 client (the `h2` package) for tests/it/h2_send.rs: the send side as a client
sees it.

usage: h2send_client.py HOST PORT [--tls CA_PEM] [--out DIR] JSON

JSON = {"reqs": [{"path": "/x", "headers": [[k, v], ...]}, ...], "updates": [[i, "u=0"]]}:
every request on one connection at once (client windows wide open), after a raw
PRIORITY_UPDATE frame (RFC 9218 7.1) per `updates` entry for request i's stream, which is
not open yet; bodies go to DIR/<i>. Prints
  resp I status=S len=N        per request
  order I ...                  the order the streams ended in
  runs I:FRAMES ...            the DATA frames received, as runs of one stream's frames
"""
import json
import os
import socket
import ssl
import struct
import sys

import h2.config
import h2.connection
import h2.events
import h2.settings


def main():
    args = sys.argv[1:]
    ca = out_dir = None
    if "--tls" in args:
        i = args.index("--tls")
        ca = args[i + 1]
        del args[i : i + 2]
    if "--out" in args:
        i = args.index("--out")
        out_dir = args[i + 1]
        del args[i : i + 2]
    host, port, spec = args[0], int(args[1]), json.loads(args[2])
    reqs = spec["reqs"]
    sock = socket.create_connection((host, port), timeout=60)
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    c.increment_flow_control_window(2**31 - 1 - 65535)
    sock.sendall(c.data_to_send())
    for i, field in spec.get("updates", []):
        payload = struct.pack(">I", 2 * i + 1) + field.encode()
        head = struct.pack(">I", len(payload))[1:] + bytes([0x10, 0]) + struct.pack(">I", 0)
        sock.sendall(head + payload)
    ids = []
    for r in reqs:
        sid = c.get_next_available_stream_id()
        h = [
            (":method", "GET"),
            (":scheme", "https" if ca else "http"),
            (":authority", host),
            (":path", r["path"]),
        ] + [tuple(x) for x in r.get("headers", [])]
        c.send_headers(sid, h, end_stream=True)
        ids.append(sid)
    sock.sendall(c.data_to_send())
    status = {sid: None for sid in ids}
    bodies = {sid: bytearray() for sid in ids}
    order, runs = [], []
    while len(order) < len(ids):
        data = sock.recv(1 << 16)
        if not data:
            raise EOFError("server closed the connection")
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status[ev.stream_id] = dict(ev.headers).get(b":status", b"0").decode()
            elif isinstance(ev, h2.events.DataReceived):
                bodies[ev.stream_id] += ev.data
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                i = ids.index(ev.stream_id)
                if ev.data:
                    if runs and runs[-1][0] == i:
                        runs[-1][1] += 1
                    else:
                        runs.append([i, 1])
            elif isinstance(ev, h2.events.StreamEnded):
                order.append(ids.index(ev.stream_id))
            elif isinstance(ev, h2.events.StreamReset):
                order.append(ids.index(ev.stream_id))
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise EOFError("GOAWAY %s" % ev.error_code)
        out = c.data_to_send()
        if out:
            sock.sendall(out)
    for i, sid in enumerate(ids):
        print("resp %d status=%s len=%d" % (i, status[sid], len(bodies[sid])))
        if out_dir:
            with open(os.path.join(out_dir, str(i)), "wb") as f:
                f.write(bodies[sid])
    print("order " + " ".join(str(i) for i in order))
    print("runs " + " ".join("%d:%d" % (i, n) for i, n in runs))
    c.close_connection()
    sock.sendall(c.data_to_send())
    sock.close()


if __name__ == "__main__":
    main()
