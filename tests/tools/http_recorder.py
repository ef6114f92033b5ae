#!/usr/bin/env python3
"""A tiny HTTP endpoint on 127.0.0.1 for monitoring tests: records every
request (method, path, body) as one JSON line in LOG, answers 200, except
/hang (never answers within a minute) and /fail (answers 500).

  http_recorder.py LOG PORTFILE     (prints the chosen port into PORTFILE)
"""
import http.server
import json
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode(errors="replace") if n else ""
        with open(sys.argv[1], "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path, "body": body,
                                "agent": self.headers.get("User-Agent", "")}) + "\n")
        if self.path.startswith("/hang"):
            time.sleep(60)
            return
        code = 500 if self.path.startswith("/fail") else 200
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    do_GET = do_POST = do_HEAD = handle_any

    def log_message(self, *a):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[2], "w") as f:
    f.write(str(srv.server_address[1]))
srv.serve_forever()
