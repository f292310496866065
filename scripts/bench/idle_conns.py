#!/usr/bin/env python3
"""Open N keep-alive connections to HOST:PORT, send one GET /admin/bench (with a bearer token) on
each and read its answer, then hold them all open, idle, until killed. Writes "<ok> ok <failed>
failed" to READY_FILE once every connection has its answer (scripts/bench-targets.sh reads the
server's RSS then).

    idle_conns.py HOST PORT N TOKEN READY_FILE
"""
import asyncio, resource, sys


async def one(host, port, request, sem):
    async with sem:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            return writer if head.startswith(b"HTTP/1.1 200") else None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None


async def main():
    host, port, n, token, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    request = (f"GET /admin/bench HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
               "Connection: keep-alive\r\n\r\n").encode()
    sem = asyncio.Semaphore(256)
    conns = await asyncio.gather(*(one(host, port, request, sem) for _ in range(n)))
    ok = sum(1 for c in conns if c is not None)
    with open(ready, "w") as f:
        f.write(f"{ok} ok {n - ok} failed\n")
    await asyncio.sleep(3600)


asyncio.run(main())
