#!/usr/bin/env python3
"""A slow HTTP/1.1 upstream for benches/compare (proxy-slow, proxy-idle-rss).

GET /anything/MS answers 200 with a 2-byte body after MS milliseconds (default 0); every
connection is kept alive until the client closes it (or sends `Connection: close`). asyncio,
one thread: each waiting request costs a timer, not a thread. Usage: slow-upstream.py PORT
"""

import asyncio
import re
import sys

BODY = b"ok"


async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            line, _, rest = head.partition(b"\r\n")
            parts = line.split()
            if len(parts) != 3:
                break
            m = re.search(rb"(?im)^content-length:\s*(\d+)", rest)
            if m:
                await reader.readexactly(int(m.group(1)))
            tail = parts[1].rstrip(b"/").rsplit(b"/", 1)[-1]
            ms = int(tail) if tail.isdigit() else 0
            if ms:
                await asyncio.sleep(ms / 1000)
            close = re.search(rb"(?im)^connection:\s*close", rest) is not None
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s"
                         % (len(BODY), b"Connection: close\r\n" if close else b"", BODY))
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
