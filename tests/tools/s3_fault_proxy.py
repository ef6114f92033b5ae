#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of an S3 server, for tests.

    s3_fault_proxy.py --upstream 127.0.0.1:PORT --rules FILE --log FILE
                      [--port-file FILE] [--stop-cmd CMD] [--start-cmd CMD]

Listens on 127.0.0.1 (a free port, written to --port-file) and forwards
every request byte for byte to the upstream server, so SigV4 signatures
stay valid: the client is pointed at the proxy and signs the proxy's
address as Host; the server accepts any Host for path-style requests.
Nothing is rewritten; requests and answers are framed by Content-Length
or chunked encoding, connections are kept alive as the client asks.

Faults come from the rules file, read again whenever it changes; one rule
a line, the first matching rule with a count left applies:

    METHOD REGEX FAULT COUNT [ARG]

  METHOD  GET, PUT, POST, HEAD, DELETE or * for any
  REGEX   searched (Python re) in the request target "/bucket/key?query"
  FAULT   500         answer 500 InternalError, request not forwarded
          503         answer 503 SlowDown, request not forwarded
          slow        forward, then hold the answer ARG ms before sending it
          stall       forward, send the answer's headers and half its body,
                      then hold the rest ARG ms
          reset       read the request, then reset the connection (RST),
                      request not forwarded
          reset-after forward (the server acts on it), then reset the
                      connection instead of answering
          truncate    forward; send the headers (Content-Length as the
                      server said) and only half of the body, then close
          stop        run --stop-cmd (the server goes away) before
                      forwarding; with ARG > 0, run --start-cmd ARG ms later
  COUNT   how many matching requests get the fault

The log has one line per request: "METHOD TARGET STATUS" or
"FAULT NAME METHOD TARGET", and "SENT METHOD TARGET" when a held answer
leaves; tests count them. Standard library only.
"""
import argparse
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time

LOCK = threading.Lock()


class Rules:
    def __init__(self, path):
        self.path = path
        self.sig = None
        self.rules = []

    def _load(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.rules, self.sig = [], None
            return
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        if sig == self.sig:
            return
        self.sig = sig
        rules = []
        with open(self.path) as f:
            for line in f:
                parts = line.split()
                if not parts or parts[0].startswith("#"):
                    continue
                if len(parts) < 4:
                    raise SystemExit(f"s3_fault_proxy: bad rule: {line.strip()}")
                method, regex, fault, count = parts[:4]
                arg = int(parts[4]) if len(parts) > 4 else 0
                rules.append([method, re.compile(regex), fault, int(count), arg])
        self.rules = rules

    def match(self, method, target):
        with LOCK:
            self._load()
            for r in self.rules:
                if r[3] > 0 and r[0] in ("*", method) and r[1].search(target):
                    r[3] -= 1
                    return r[2], r[4]
        return None, 0


def log(args, text):
    with LOCK:
        with open(args.log, "a") as f:
            f.write(text + "\n")


def recv_until(sock, buf, marker):
    """Read until marker is in buf; returns (head, rest) or (None, buf) at EOF."""
    while marker not in buf:
        data = sock.recv(65536)
        if not data:
            return None, buf
        buf += data
    i = buf.index(marker) + len(marker)
    return buf[:i], buf[i:]


def recv_exact(sock, buf, n):
    while len(buf) < n:
        data = sock.recv(max(65536, n - len(buf)))
        if not data:
            raise ConnectionError("closed in the middle of a body")
        buf += data
    return buf[:n], buf[n:]


def headers_of(head):
    lines = head.decode("latin-1").split("\r\n")
    h = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            h[k.strip().lower()] = v.strip()
    return lines[0], h


def read_body(sock, buf, h, no_body=False):
    """Raw body bytes as framed by the headers; returns (body, rest, to_eof)."""
    if no_body:
        return b"", buf, False
    if "chunked" in h.get("transfer-encoding", "").lower():
        out = b""
        while True:
            line, buf = recv_until(sock, buf, b"\r\n")
            if line is None:
                raise ConnectionError("closed in a chunked body")
            out += line
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    line, buf = recv_until(sock, buf, b"\r\n")
                    if line is None:
                        raise ConnectionError("closed in chunked trailers")
                    out += line
                    if line == b"\r\n":
                        return out, buf, False
            data, buf = recv_exact(sock, buf, size + 2)
            out += data
    if "content-length" in h:
        body, buf = recv_exact(sock, buf, int(h["content-length"]))
        return body, buf, False
    return None, buf, True


def reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def error_reply(status, reason, code, message):
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>").encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Upstream:
    def __init__(self, addr):
        self.addr = addr
        self.sock = None
        self.buf = b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock, self.buf = None, b""

    def exchange(self, raw, method):
        """Send one request, return (head, body) of the answer."""
        for attempt in (0, 1):
            fresh = self.sock is None
            if fresh:
                self.sock = socket.create_connection(self.addr, timeout=300)
                self.buf = b""
            try:
                self.sock.sendall(raw)
                head, self.buf = recv_until(self.sock, self.buf, b"\r\n\r\n")
                if head is None:
                    raise ConnectionError("upstream closed")
                break
            except (ConnectionError, OSError):
                self.close()
                if fresh or attempt:
                    raise
        status_line, h = headers_of(head)
        status = int(status_line.split()[1])
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        body, self.buf, to_eof = read_body(self.sock, self.buf, h, no_body)
        if to_eof:
            chunks = [self.buf]
            while True:
                d = self.sock.recv(65536)
                if not d:
                    break
                chunks.append(d)
            body = b"".join(chunks)
            self.close()
        elif h.get("connection", "").lower() == "close":
            self.close()
        return head, body, status


def serve(client, args, rules):
    up = Upstream(args.upstream)
    buf = b""
    try:
        while True:
            head, buf = recv_until(client, buf, b"\r\n\r\n")
            if head is None:
                return
            req_line, h = headers_of(head)
            method, target = req_line.split()[:2]
            body, buf, _ = read_body(client, buf, h, "content-length" not in h and
                                     "chunked" not in h.get("transfer-encoding", ""))
            raw = head + body
            fault, arg = rules.match(method, target)
            if fault:
                log(args, f"FAULT {fault} {method} {target}")
            if fault in ("500", "503"):
                client.sendall(error_reply(500, "Internal Server Error", "InternalError",
                                           "injected") if fault == "500" else
                               error_reply(503, "Slow Down", "SlowDown", "injected"))
                continue
            if fault == "reset":
                reset(client)
                return
            if fault == "stop":
                subprocess.run(args.stop_cmd, shell=True, check=False)
                if arg > 0:
                    threading.Timer(arg / 1000.0, subprocess.run, (args.start_cmd,),
                                    {"shell": True, "check": False}).start()
            try:
                rhead, rbody, status = up.exchange(raw, method)
            except (ConnectionError, OSError) as e:
                log(args, f"{method} {target} upstream-error {e.__class__.__name__}")
                reset(client)
                return
            log(args, f"{method} {target} {status}")
            if fault == "reset-after":
                reset(client)
                return
            if fault == "slow":
                time.sleep(arg / 1000.0)
                log(args, f"SENT {method} {target}")
            if fault == "truncate" and rbody:
                client.sendall(rhead + rbody[: len(rbody) // 2])
                client.close()
                return
            if fault == "stall" and rbody:
                client.sendall(rhead + rbody[: len(rbody) // 2])
                time.sleep(arg / 1000.0)
            client.sendall(rhead + rbody if fault != "stall" else rbody[len(rbody) // 2:])
            if up.sock is None and headers_of(rhead)[1].get("connection", "").lower() == "close":
                client.close()
                return
    except (ConnectionError, OSError):
        pass
    finally:
        up.close()
        try:
            client.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the S3 server")
    ap.add_argument("--rules", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--stop-cmd", default="false")
    ap.add_argument("--start-cmd", default="false")
    args = ap.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    args.upstream = (host, int(port))
    rules = Rules(args.rules)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.port))
    ls.listen(64)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{ls.getsockname()[1]}\n")
        os.rename(args.port_file + ".tmp", args.port_file)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c, args, rules), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
