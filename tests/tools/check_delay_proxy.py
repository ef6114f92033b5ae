#!/usr/bin/env python3
"""Checks tests/tools/delay_proxy against a local server: that a request
and its answer take at least one round trip (and a new connection one
more, for its handshake), that bytes cross both ways unchanged, and that
an end of stream crosses too.

    check_delay_proxy.py PROXY_BINARY
"""
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

RTT_MS = 40


def serve(lsock):
    """Per connection: read a command line. 'ping' answers 'pong' at
    once, on the same connection, as often as asked. 'sink' reads to the
    end of stream, then answers the sha256 of what it read. 'source N'
    sends N pseudo-random bytes and closes."""
    def handle(c):
        f = c.makefile('rb')
        while True:
            line = f.readline()
            if not line:
                break
            cmd = line.split()
            if cmd[0] == b'ping':
                c.sendall(b'pong\n')
            elif cmd[0] == b'sink':
                h = hashlib.sha256()
                while True:
                    b = f.read1(1 << 20)
                    if not b:
                        break
                    h.update(b)
                c.sendall(h.hexdigest().encode() + b'\n')
                break
            elif cmd[0] == b'source':
                left = int(cmd[1])
                seed = 0
                while left:
                    b = hashlib.sha256(str(seed).encode()).digest() * 4096
                    b = b[:left]
                    c.sendall(b)
                    left -= len(b)
                    seed += 1
                break
        c.close()

    while True:
        c, _ = lsock.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def expect(cond, what):
    if not cond:
        print('FAIL:', what)
        sys.exit(1)
    print('ok:', what)


def main():
    lsock = socket.socket()
    lsock.bind(('127.0.0.1', 0))
    lsock.listen(16)
    threading.Thread(target=serve, args=(lsock,), daemon=True).start()
    up = lsock.getsockname()[1]

    proxy = subprocess.Popen([sys.argv[1], '--upstream', f'127.0.0.1:{up}',
                              '--rtt-ms', str(RTT_MS)], stdout=subprocess.PIPE)
    try:
        port = int(proxy.stdout.readline())
        rtt = RTT_MS / 1000

        t0 = time.monotonic()
        s = socket.create_connection(('127.0.0.1', port))
        f = s.makefile('rb')
        s.sendall(b'ping\n')
        expect(f.readline() == b'pong\n', 'an answer crosses the proxy')
        first = time.monotonic() - t0
        expect(first >= 2 * rtt, f'a new connection pays its handshake and a round trip '
                                 f'({first * 1000:.0f} ms >= {2 * RTT_MS} ms)')
        times = []
        for _ in range(5):
            t0 = time.monotonic()
            s.sendall(b'ping\n')
            expect(f.readline() == b'pong\n', 'a later answer crosses the proxy')
            times.append(time.monotonic() - t0)
        expect(min(times) >= rtt, f'each request waits a round trip '
                                  f'({min(times) * 1000:.0f} ms >= {RTT_MS} ms)')
        expect(max(times) < 10 * rtt, f'and not ten ({max(times) * 1000:.0f} ms)')
        s.close()

        # 64 MiB up, then an end of stream; the server answers after it.
        s = socket.create_connection(('127.0.0.1', port))
        h = hashlib.sha256()
        s.sendall(b'sink\n')
        blob = os.urandom(1 << 20)
        for i in range(64):
            b = bytes([i]) + blob[1:]
            h.update(b)
            s.sendall(b)
        s.shutdown(socket.SHUT_WR)
        got = s.makefile('rb').readline().strip().decode()
        expect(got == h.hexdigest(), '64 MiB upstream arrive unchanged, then their end of stream')
        s.close()

        # 64 MiB down, then the server's close.
        n = 64 << 20
        s = socket.create_connection(('127.0.0.1', port))
        s.sendall(b'source %d\n' % n)
        h = hashlib.sha256()
        got = 0
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            h.update(b)
            got += len(b)
        want = hashlib.sha256()
        seed, left = 0, n
        while left:
            b = (hashlib.sha256(str(seed).encode()).digest() * 4096)[:left]
            want.update(b)
            left -= len(b)
            seed += 1
        expect(got == n and h.hexdigest() == want.hexdigest(),
               '64 MiB downstream arrive unchanged, then the close')
        s.close()
    finally:
        proxy.kill()
        proxy.wait()


if __name__ == '__main__':
    main()
