#!/usr/bin/env python3
"""s3proxy.py: a fault-injecting HTTP/1.1 proxy between ferry and an S3 server (tests only).

    python3 tests/s3proxy.py --upstream http://127.0.0.1:PORT [--port 0] [--control-port 0]
                             [--rules FILE] [--ready-file FILE]

Forwards every request to the upstream unchanged (the Host header too, so SigV4 still
verifies), keeping connections alive on both sides, and applies scripted faults. Rules
come from the control port (HTTP) or from a JSON rules file, reread when it changes.

Control API (on --control-port, loopback only):
    GET    /stats            counters as JSON (per method: requests, bytes up/down; fired)
    GET    /rules            the rules as JSON
    POST   /rules            body: one rule or a list; appended
    PUT    /rules            body: a list; replaces all rules
    DELETE /rules            drop all rules
    POST   /reset            drop rules and zero the counters

A rule (JSON object); all match fields are optional:
    method   "PUT"           HTTP method to match
    key      "lock"          substring of the path (bucket/key)
    query    "uploadId"      substring of the query string
    header   "if-none-match" the request carries this header
    nth      3               skip the first nth-1 matching requests (default 1)
    count    2               fire this many times (default 1; -1 = for ever)
    every    3               from the nth match on, fire only on every 3rd match
                             (intermittent faults, e.g. a 412 now and then)
    action   one of:
      500          answer 500 InternalError (XML body), upstream not called
      503          answer 503 SlowDown (XML body), upstream not called
      reset        read the request, then reset the connection (RST)
      stall        sleep `seconds`, then forward normally
      stall_reply  forward, then sleep `seconds` before answering
      drop         forward to upstream (applied!), then reset instead of answering
      strip_cond   remove If-Match / If-None-Match, then forward (a store that ignores them)
      412          answer 412 PreconditionFailed, upstream not called
      bad_length   forward, answer with a Content-Length larger than the body, close
      truncate     forward, send half of the body, close
      garbage_xml  forward, replace a 200 body with malformed XML
      flip_byte    flip one bit in the middle of the request body, then forward (bytes
                   damaged on the way, after the client computed its checksums)
      sse_kms      forward, answer with `x-amz-server-side-encryption: aws:kms` added (an
                   SSE-KMS bucket, whose ETags are no MD5s of the bytes)
      count        forward normally: the rule only counts the requests it matches (fired),
                   e.g. UploadPartCopy by "header": "x-amz-copy-source"
    seconds  2.5             for stall / stall_reply
Only the first rule that fires applies to a request.
"""
import argparse
import http.client
import json
import os
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

LOCK = threading.Lock()
RULES = []          # dicts, with private counters "_seen" and "_fired"
STATS = {}
RULES_FILE = None
RULES_MTIME = None
UPSTREAM = None     # (host, port)
LOCAL = threading.local()

ACTIONS = {"500", "503", "reset", "stall", "stall_reply", "drop", "strip_cond", "412",
           "bad_length", "truncate", "garbage_xml", "flip_byte", "sse_kms", "count"}


def fresh_stats():
    return {"requests": 0, "bytes_up": 0, "bytes_down": 0, "methods": {}, "fired": {},
            "upstream_requests": 0}


def check_rule(r):
    if not isinstance(r, dict):
        raise ValueError("a rule must be a JSON object")
    if r.get("action") not in ACTIONS:
        raise ValueError("unknown action %r (expected one of %s)" % (r.get("action"), sorted(ACTIONS)))
    for k in r:
        if k not in ("method", "key", "query", "header", "nth", "count", "every", "action",
                     "seconds"):
            raise ValueError("unknown rule field %r" % k)
    r = dict(r)
    r.setdefault("nth", 1)
    r.setdefault("count", 1)
    r.setdefault("every", 1)
    if not isinstance(r["every"], int) or r["every"] < 1:
        raise ValueError("every must be a positive integer")
    r["_seen"] = 0
    r["_fired"] = 0
    return r


def public_rules():
    return [{k: v for k, v in r.items() if not k.startswith("_")} | {"fired": r["_fired"]}
            for r in RULES]


def reload_rules_file():
    global RULES_MTIME, RULES
    if not RULES_FILE:
        return
    try:
        m = os.stat(RULES_FILE).st_mtime_ns
    except FileNotFoundError:
        return
    if m == RULES_MTIME:
        return
    try:
        with open(RULES_FILE) as f:
            text = f.read()
        data = json.loads(text) if text.strip() else []
        if isinstance(data, dict):
            data = [data]
        RULES = [check_rule(r) for r in data]
        RULES_MTIME = m
    except (ValueError, OSError) as e:
        sys.stderr.write("s3proxy: bad rules file %s: %s\n" % (RULES_FILE, e))
        RULES_MTIME = m


def pick_rule(method, path, query, headers):
    """The rule that fires for this request (counters updated), or None."""
    with LOCK:
        reload_rules_file()
        for r in RULES:
            if r.get("method") and r["method"].upper() != method:
                continue
            if r.get("key") and r["key"] not in path:
                continue
            if r.get("query") and r["query"] not in query:
                continue
            if r.get("header") and headers.get(r["header"]) is None:
                continue
            r["_seen"] += 1
            if r["_seen"] < r["nth"]:
                continue
            if r["count"] >= 0 and r["_fired"] >= r["count"]:
                continue
            if (r["_seen"] - r["nth"]) % r["every"] != 0:
                continue
            r["_fired"] += 1
            STATS["fired"][r["action"]] = STATS["fired"].get(r["action"], 0) + 1
            return dict(r)
    return None


def count(method, up, down):
    with LOCK:
        m = STATS["methods"].setdefault(method, {"requests": 0, "bytes_up": 0, "bytes_down": 0})
        m["bytes_up"] += up
        m["bytes_down"] += down
        STATS["bytes_up"] += up
        STATS["bytes_down"] += down


def count_request(method):
    with LOCK:
        STATS["requests"] += 1
        m = STATS["methods"].setdefault(method, {"requests": 0, "bytes_up": 0, "bytes_down": 0})
        m["requests"] += 1


def error_xml(code, message):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '<RequestId>s3proxy-%d</RequestId></Error>' % (code, message, int(time.time() * 1000))).encode()


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "s3proxy"

    def log_message(self, fmt, *args):  # quiet: tests read stats, not logs
        pass

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            out = b""
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reset(self):
        """Abort the client connection with a TCP RST."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def upstream(self, method, body, headers):
        conn = getattr(LOCAL, "conn", None)
        for attempt in (1, 2):
            if conn is None:
                conn = http.client.HTTPConnection(UPSTREAM[0], UPSTREAM[1], timeout=120)
                LOCAL.conn = conn
            try:
                conn.putrequest(method, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                if body or method in ("PUT", "POST"):
                    if not any(k.lower() == "content-length" for k, _ in headers):
                        conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body if body else None)
                resp = conn.getresponse()
                data = resp.read()
                with LOCK:
                    STATS["upstream_requests"] += 1
                return resp.status, resp.reason, resp.getheaders(), data
            except (http.client.HTTPException, OSError):
                conn.close()
                conn = None
                LOCAL.conn = None
                if attempt == 2:
                    raise
        raise RuntimeError("unreachable")

    def reply(self, status, reason, headers, data, head=False, length=None, send=None):
        self.send_response_only(status, reason)
        skip = {"content-length", "transfer-encoding", "connection", "keep-alive"}
        if head and length is None:  # a HEAD's Content-Length is the object's size
            length = next((v for k, v in headers if k.lower() == "content-length"), 0)
        for k, v in headers:
            if k.lower() not in skip:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data) if length is None else length))
        out = data if send is None else send
        # headers and body in one write, as a server answers: on a loaded machine a gap
        # between two writes can outlast a client's 1 s low-speed window by itself
        self._headers_buffer.append(b"\r\n")
        if not head and out:
            self._headers_buffer.append(out)
        self.flush_headers()
        self.wfile.flush()
        count(self.command, 0, 0 if head else len(out))

    def handle_any(self):
        method = self.command
        count_request(method)
        body = self.read_body()
        count(method, len(body), 0)
        split = urlsplit(self.path)
        hdrs = {k.lower(): v for k, v in self.headers.items()}
        rule = pick_rule(method, split.path, split.query, hdrs)
        action = rule["action"] if rule else None
        head = method == "HEAD"

        if action in ("500", "503", "412"):
            code, msg = {"500": ("InternalError", "We encountered an internal error (s3proxy)."),
                         "503": ("SlowDown", "Please reduce your request rate."),
                         "412": ("PreconditionFailed",
                                 "At least one of the pre-conditions you specified did not hold")}[action]
            data = error_xml(code, msg)
            self.reply(int(action), {"500": "Internal Server Error", "503": "Slow Down",
                                     "412": "Precondition Failed"}[action],
                       [("Content-Type", "application/xml")], data, head=head)
            return
        if action == "reset":
            self.reset()
            return
        if action == "stall":
            time.sleep(float(rule.get("seconds", 1)))
        if action == "flip_byte" and body:
            body = body[:len(body) // 2] + bytes([body[len(body) // 2] ^ 1]) + body[len(body) // 2 + 1:]

        fwd = []
        for k, v in self.headers.items():
            lk = k.lower()
            if lk in ("connection", "keep-alive", "transfer-encoding", "proxy-connection"):
                continue
            if action == "strip_cond" and lk in ("if-match", "if-none-match"):
                continue
            fwd.append((k, v))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            fwd.append(("Content-Length", str(len(body))))
        try:
            status, reason, rheaders, data = self.upstream(method, body, fwd)
        except Exception as e:  # upstream down: a gateway error, like a real front end
            data = error_xml("BadGateway", "s3proxy: upstream failed: %s" % e)
            self.reply(502, "Bad Gateway", [("Content-Type", "application/xml")], data, head=head)
            return

        if action == "drop":
            self.reset()
            return
        if action == "stall_reply":
            time.sleep(float(rule.get("seconds", 1)))
        if action == "bad_length" and not head:
            self.reply(status, reason, rheaders, data, length=len(data) + 100)
            self.reset()
            return
        if action == "truncate" and not head:
            self.reply(status, reason, rheaders, data, send=data[:len(data) // 2])
            self.reset()
            return
        if action == "garbage_xml" and 200 <= status < 300 and not head:
            data = b'<?xml version="1.0"?><ListBucketResult><Contents><Key>x</Ke'
            rheaders = [(k, v) for k, v in rheaders if k.lower() != "etag"] + \
                       [("Content-Type", "application/xml")]
        if action == "sse_kms":
            rheaders = list(rheaders) + [("x-amz-server-side-encryption", "aws:kms")]
        self.reply(status, reason, rheaders, data, head=head)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Control(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, code, obj):
        data = (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        text = self.rfile.read(n).decode() if n else ""
        return json.loads(text) if text.strip() else []

    def do_GET(self):
        with LOCK:
            if self.path.startswith("/stats"):
                self.send_json(200, STATS)
            elif self.path.startswith("/rules"):
                self.send_json(200, public_rules())
            else:
                self.send_json(404, {"error": "no such path %s" % self.path})

    def change_rules(self, replace):
        global RULES
        try:
            data = self.body_json()
            if isinstance(data, dict):
                data = [data]
            new = [check_rule(r) for r in data]
        except ValueError as e:
            self.send_json(400, {"error": str(e)})
            return
        with LOCK:
            RULES = new if replace else RULES + new
            self.send_json(200, public_rules())

    def do_POST(self):
        global RULES, STATS
        if self.path.startswith("/rules"):
            self.change_rules(False)
        elif self.path.startswith("/reset"):
            self.body_json()
            with LOCK:
                RULES = []
                STATS = fresh_stats()
                self.send_json(200, STATS)
        else:
            self.send_json(404, {"error": "no such path %s" % self.path})

    def do_PUT(self):
        if self.path.startswith("/rules"):
            self.change_rules(True)
        else:
            self.send_json(404, {"error": "no such path %s" % self.path})

    def do_DELETE(self):
        global RULES
        with LOCK:
            RULES = []
            self.send_json(200, [])


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    global UPSTREAM, RULES_FILE, STATS
    ap = argparse.ArgumentParser(description="fault-injecting S3 proxy for tests")
    ap.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT of the real server")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--rules", help="JSON rules file, reread when it changes")
    ap.add_argument("--ready-file", help="write 'PORT CONTROL_PORT' here once listening")
    a = ap.parse_args()
    u = urlsplit(a.upstream)
    if u.scheme != "http" or u.hostname not in ("127.0.0.1", "localhost"):
        ap.error("upstream must be http://127.0.0.1:PORT")
    UPSTREAM = (u.hostname, u.port or 80)
    RULES_FILE = a.rules
    STATS = fresh_stats()
    proxy = Server(("127.0.0.1", a.port), Proxy)
    control = Server(("127.0.0.1", a.control_port), Control)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    ports = "%d %d\n" % (proxy.server_address[1], control.server_address[1])
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(ports)
        os.rename(tmp, a.ready_file)
    else:
        sys.stdout.write(ports)
        sys.stdout.flush()
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
