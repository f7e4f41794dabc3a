#!/usr/bin/env python3
"""gcsserver.py: a Google Cloud Storage XML-API test server, in front of moto (tests only).

    python3 tests/gcsserver.py --upstream http://127.0.0.1:PORT [--port 0]
                               [--ready-file FILE] [--careless] [--write-rate-limit]

An EMULATION written from GCS's documentation of its XML API, not GCS: it has never been
compared with the real service (no network on the build machines). It forwards S3 requests
to an S3 server (moto_server) and adds what GCS documents about conditions and versions:

  - Every object has a generation (a number that grows with each write, from the clock in
    microseconds), sent as x-goog-generation (and x-goog-metageneration: 1) on every
    answer about an object, and as <Generation> in listings.
  - Writes (PUT, copy, DELETE, multipart completion, compose) honour
    x-goog-if-generation-match: N atomically (one lock around check and write): 0 means "no
    live object", N "the live object has generation N"; else 412 PreconditionFailed, nothing
    written. Reads (GET, HEAD) honour it too. x-goog-copy-source-if-generation-match pins a
    copy's source; a copy spelled x-goog-copy-source gets x-amz-copy-source for the upstream.
  - GCS ignores If-None-Match and If-Match on writes: they are removed before the write is
    forwarded (so a second "create if absent" in S3's spelling answers 200 and overwrites).
    On reads they are left to the upstream, which honours them as GCS does.
  - XML multipart uploads take no precondition: an initiate or complete carrying
    x-goog-if-generation-match (or -metageneration-) answers 400 InvalidArgument.
    UploadPartCopy is not part of GCS's XML multipart API: 501 NotImplemented.
  - Compose: PUT (or POST) /bucket/dest?compose with <ComposeRequest><Component><Name>...</Name>
    </Component>...</ComposeRequest>, up to 32 components of the same bucket.
  --careless         a store that ignores every condition (If-*, x-goog-if-*): no 412 on writes
  --write-rate-limit more than one write a second to one object name answers 429 SlowDown, as
                     GCS documents ("about one write per second")

Writes that reach moto around this server (tests' raw helpers) are noticed: the generation
of a key is kept with the ETag it was given for, and a different ETag upstream is a new
generation. One line per request goes to stderr: "gcsserver: OP METHOD PATH -> STATUS"
(tests grep it); the counts of 400/412/429/501 answers go there too when it stops.

Bodies are streamed both ways in chunks (an object PUT or part of up to 1 GiB is never held in
memory; nor is a GET's answer), except what must be inspected: a compose request, a listing,
an error. A chunked request body is read whole first (ferry sends Content-Length). An
"Expect: 100-continue" is answered here (BaseHTTPRequestHandler, HTTP/1.1) and not forwarded.
"""
import argparse
import http.client
import os
import re
import select
import signal
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, unquote_plus, urlsplit
from xml.sax.saxutils import escape, unescape

LOCK = threading.Lock()          # every check-and-write, and the tables below
GENS = {}                        # "bucket/key" -> (generation, etag)
LAST_WRITE = {}                  # "bucket/key" -> monotonic time of the last write
LAST_GEN = [0]
STATS_LOCK = threading.Lock()    # not LOCK: answers are counted while LOCK may be held
STATS = {}                       # "412" -> answers with that status (400, 412, 429, 501, 502)
UPSTREAM = None                  # (host, port)
CARELESS = False
RATE_LIMIT = False
LOCAL = threading.local()
CHUNK = 1 << 20                  # bodies are streamed in pieces of this size
SMALL = 1 << 20                  # bodies up to this size are read whole (a retry is possible)
DRAIN_MAX = 8 << 20              # an unread body up to this size is drained; a larger: close
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer",
       "upgrade", "expect"}
COND_HDRS = ("if-match", "if-none-match", "x-goog-if-generation-match",
             "x-goog-if-metageneration-match")
FAILED = "At least one of the pre-conditions you specified did not hold."


class ClientGone(Exception):
    """The client's request body ended before its Content-Length."""


def new_gen():
    g = max(LAST_GEN[0] + 1, time.time_ns() // 1000)
    LAST_GEN[0] = g
    return g


def upstream_conn():
    """This thread's kept-alive connection to the upstream (a fresh one if it was closed)."""
    conn = getattr(LOCAL, "conn", None)
    if conn is not None and conn.sock is not None:
        try:  # an idle connection the upstream closed reads as readable (EOF): reopen
            readable = select.select([conn.sock], [], [], 0)[0]
        except (OSError, ValueError):
            readable = True
        if readable:
            conn.close()
            conn = None
    if conn is None:
        conn = LOCAL.conn = http.client.HTTPConnection(*UPSTREAM, timeout=300)
    return conn


def drop_conn():
    conn = getattr(LOCAL, "conn", None)
    if conn is not None:
        conn.close()
    LOCAL.conn = None


def upstream_open(method, path, headers, body=b"", reader=None, length=0):
    """Send one request to the upstream; its response, body unread. The body is `body`, or
    `length` bytes streamed from `reader` (retried on a dead connection only if seekable)."""
    start = reader.tell() if reader is not None and reader.seekable() else None
    for attempt in (0, 1):
        conn = upstream_conn()
        try:
            if reader is None:
                conn.request(method, path, body=body, headers=headers)
            else:
                conn.putrequest(method, path, skip_host=any(k.lower() == "host" for k in headers),
                                skip_accept_encoding=True)
                for k, v in headers.items():
                    if k.lower() != "content-length":
                        conn.putheader(k, v)
                conn.putheader("Content-Length", str(length))
                conn.endheaders()
                left = length
                while left > 0:
                    piece = reader.read(min(CHUNK, left))
                    if not piece:
                        raise ClientGone("the request body ended %d bytes early" % left)
                    conn.send(piece)
                    left -= len(piece)
            return conn.getresponse()
        except ClientGone:
            drop_conn()   # the upstream never gets the rest: it stores nothing
            raise
        except (OSError, http.client.HTTPException):
            drop_conn()
            if attempt or (reader is not None and start is None):
                raise
            if start is not None:
                reader.seek(start)
    raise OSError("unreachable")


def upstream(method, path, headers, body=b""):
    """One request to the upstream, its body in memory: (status, headers, body)."""
    r = upstream_open(method, path, headers, body)
    return r.status, r.getheaders(), r.read()


def hget(headers, name):
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def xml_error(code, msg):
    return ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>%s</Code><Message>%s</Message>"
            "</Error>" % (code, escape(msg))).encode()


def current(okey, path, auth):
    """The live generation of okey (under LOCK), learned from the upstream: None if absent."""
    h = {"Authorization": auth} if auth else {}
    st, hdrs, _ = upstream("HEAD", path, h)
    if st != 200:
        GENS.pop(okey, None)
        return None, None
    etag = hget(hdrs, "etag")
    have = GENS.get(okey)
    if have and have[1] == etag:
        return have[0], etag
    g = new_gen()
    GENS[okey] = (g, etag)
    return g, etag


def precondition_fails(want, gen):
    if want is None:
        return False
    want = want.strip()
    if want == "0":
        return gen is not None
    return gen is None or str(gen) != want


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # also answers "Expect: 100-continue" (handle_expect_100)
    server_version = "gcsserver"

    def log_message(self, fmt, *args):
        pass

    def say(self, op, status, why=""):
        if status in (400, 412, 429, 501, 502):
            with STATS_LOCK:
                STATS[str(status)] = STATS.get(str(status), 0) + 1
        sys.stderr.write("gcsserver: %s %s %s -> %d%s\n" % (op, self.command, self.path, status,
                                                             " (%s)" % why if why else ""))
        sys.stderr.flush()

    # ---------------------------------------------------------------- the request body

    def body(self):
        """The whole request body, in memory."""
        if self.buf is None:
            n, self.pending = self.pending, 0
            self.buf = self.rfile.read(n) if n else b""
            if len(self.buf) < n:
                raise ClientGone("the request body ended %d bytes early" % (n - len(self.buf)))
        return self.buf

    def forward(self, method, path, headers):
        """Send this request's body upstream (streamed when large); the response, unread."""
        if self.buf is None and self.pending > SMALL:
            n, self.pending = self.pending, 0
            try:
                return upstream_open(method, path, headers, reader=self.rfile, length=n)
            except (OSError, http.client.HTTPException):
                self.close_connection = True   # the rest of the client's body is unread
                raise
        return upstream_open(method, path, headers, self.body())

    def before_answer(self):
        """A body left unread (an answer without the upstream): drain it, or close after."""
        if self.pending and self.pending <= DRAIN_MAX:
            left, self.pending = self.pending, 0
            while left > 0:
                got = self.rfile.read(min(CHUNK, left))
                if not got:
                    self.close_connection = True
                    break
                left -= len(got)
        if self.pending:
            self.close_connection = True

    # ---------------------------------------------------------------- answers

    def send_head(self, status, headers, length):
        self.send_response_only(status)          # the upstream's Server and Date, if any
        if hget(headers, "date") is None:
            self.send_header("Date", self.date_time_string())
        if hget(headers, "server") is None:
            self.send_header("Server", self.version_string())
        for k, v in headers:
            if k.lower() in HOP or k.lower() == "content-length":
                continue
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def answer(self, op, status, headers, body, why=""):
        self.before_answer()
        self.say(op, status, why)
        if self.command == "HEAD":
            n = hget(headers, "content-length")
            self.send_head(status, headers, n if n is not None else "0")
            return
        self.send_head(status, headers, len(body))
        if body:
            self.wfile.write(body)

    def answer_stream(self, op, status, headers, resp):
        """Answer with the upstream's response, its body copied in pieces."""
        n = hget(headers, "content-length")
        if self.command == "HEAD" or n is None:
            self.answer(op, status, headers, resp.read())
            return
        self.before_answer()
        self.say(op, status)
        self.send_head(status, headers, n)
        left = int(n)
        try:
            while left > 0:
                piece = resp.read(min(CHUNK, left))
                if not piece:
                    break
                self.wfile.write(piece)
                left -= len(piece)
        except OSError:          # the client went away: the upstream's rest is unread
            drop_conn()
            self.close_connection = True
            return
        if left:
            drop_conn()
            self.close_connection = True

    def fail(self, op, status, code, msg):
        self.answer(op, status, [("Content-Type", "application/xml")], xml_error(code, msg), code)

    def fwd_headers(self, strip=()):
        return {k: v for k, v in self.headers.items()
                if k.lower() not in HOP and k.lower() not in strip}

    def handle_any(self):
        self.buf = None
        self.pending = 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                n = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out += self.rfile.read(n)
                self.rfile.readline()
            self.buf = bytes(out)
        else:
            self.pending = int(self.headers.get("Content-Length") or 0)
        u = urlsplit(self.path)
        q = parse_qs(u.query, keep_blank_values=True)
        parts = u.path.lstrip("/").split("/", 1)
        bucket = unquote(parts[0])
        key = unquote(parts[1]) if len(parts) > 1 else ""
        okey = bucket + "/" + key
        auth = self.headers.get("Authorization")
        m = self.command
        want = None if CARELESS else self.headers.get("x-goog-if-generation-match")
        try:
            if not key:
                self.bucket_level(m, u, q)
            elif "uploads" in q or "uploadId" in q:
                self.multipart(m, q, okey, want)
            elif m in ("GET", "HEAD"):
                self.read(okey, want, auth)
            elif m in ("PUT", "POST") and "compose" in q:
                self.compose(parts[0], okey, want, auth)
            elif m in ("PUT", "DELETE"):
                self.write(m, okey, want, auth)
            else:
                self.answer_stream("other", *self.resp(self.forward(m, self.path, self.fwd_headers())))
        except ClientGone as e:
            self.say("client", 400, str(e))
            self.close_connection = True
        except (OSError, http.client.HTTPException) as e:
            try:
                self.fail("error", 502, "BadGateway", "upstream: %s" % e)
            except OSError:
                self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = handle_any

    @staticmethod
    def resp(r):
        return r.status, r.getheaders(), r

    # ---------------------------------------------------------------- bucket level: listings

    def bucket_level(self, m, u, q):
        st, hdrs, data = upstream(m, self.path, self.fwd_headers(), self.body())
        if m == "GET" and st == 200 and b"<ListBucketResult" in data:
            url = b"<EncodingType>url</EncodingType>" in data
            bucket = unquote(u.path.strip("/"))

            def tag(mo):
                block = mo.group(0).decode()
                km = re.search(r"<Key>(.*?)</Key>", block, re.S)
                em = re.search(r"<ETag>(.*?)</ETag>", block, re.S)
                if not km:
                    return mo.group(0)
                k = unescape(km.group(1), {"&quot;": '"', "&apos;": "'"})
                k = unquote_plus(k) if url else k
                etag = (em.group(1) if em else "").replace("&quot;", '"')
                with LOCK:
                    have = GENS.get(bucket + "/" + k)
                    if not have or have[1] != etag:
                        have = (new_gen(), etag)
                        GENS[bucket + "/" + k] = have
                return block.replace("</Key>", "</Key><Generation>%d</Generation>"
                                     "<MetaGeneration>1</MetaGeneration>" % have[0], 1).encode()
            data = re.sub(rb"<Contents>.*?</Contents>", tag, data, flags=re.S)
            self.answer("list", st, hdrs, data)   # answer() sets the new Content-Length
            return
        self.answer("bucket", st, hdrs, data)

    # ---------------------------------------------------------------- reads

    def read(self, okey, want, auth):
        for _ in range(5):
            with LOCK:
                gen, etag = current(okey, self.path, auth)
            if precondition_fails(want, gen):
                self.fail("get", 412, "PreconditionFailed", FAILED)
                return
            h = self.fwd_headers(strip=("x-goog-if-generation-match",
                                        "x-goog-if-metageneration-match"))
            pinned = False
            if etag and not any(k.lower() == "if-match" for k in h):
                h["If-Match"] = etag          # the generation named is the one served
                pinned = True
            r = upstream_open(self.command, self.path, h, self.body())
            st, hdrs = r.status, r.getheaders()
            if st == 412 and pinned:
                r.read()
                continue                      # written in between: look again
            if st in (200, 206) and gen is not None:
                hdrs = hdrs + [("x-goog-generation", str(gen)), ("x-goog-metageneration", "1")]
            self.answer_stream("get" if self.command == "GET" else "head", st, hdrs, r)
            return
        self.fail("get", 503, "SlowDown", "the object kept changing under the read")

    # ---------------------------------------------------------------- writes

    def rate_limited(self, okey):
        if not RATE_LIMIT:
            return False
        last = LAST_WRITE.get(okey)
        return last is not None and time.monotonic() - last < 1.0

    def wrote(self, okey, hdrs, path):
        """After a successful write (under LOCK): the new generation, into the answer."""
        etag = hget(hdrs, "etag")
        if etag is None:
            auth = self.headers.get("Authorization")
            st, h2, _ = upstream("HEAD", path, {"Authorization": auth} if auth else {})
            etag = hget(h2, "etag") if st == 200 else None
        g = new_gen()
        GENS[okey] = (g, etag)
        LAST_WRITE[okey] = time.monotonic()
        return hdrs + [("x-goog-generation", str(g)), ("x-goog-metageneration", "1")]

    def write(self, m, okey, want, auth):
        src = self.headers.get("x-amz-copy-source") or self.headers.get("x-goog-copy-source")
        op = "copy" if src else "put" if m == "PUT" else "delete"
        strip = COND_HDRS + ("x-goog-copy-source-if-generation-match",)
        refused = None
        with LOCK:   # check and write as one: nothing else writes in between
            gen, _ = current(okey, self.path, auth)
            if precondition_fails(want, gen):
                refused = (412, "PreconditionFailed", FAILED)
            elif src and not CARELESS and \
                    self.headers.get("x-goog-copy-source-if-generation-match") is not None:
                spath = "/" + src.lstrip("/")
                sgen, _ = current(unquote(spath.lstrip("/").split("?")[0]), spath, auth)
                if precondition_fails(self.headers["x-goog-copy-source-if-generation-match"], sgen):
                    refused = (412, "PreconditionFailed", FAILED)
            if refused is None and self.rate_limited(okey):
                refused = (429, "SlowDown", "The object exceeded the rate limit for object "
                           "mutation operations (create, update, and delete).")
            if refused is None:
                h = self.fwd_headers(strip=strip)
                if src and not self.headers.get("x-amz-copy-source"):
                    h["x-amz-copy-source"] = src   # GCS's spelling, for the S3 upstream
                r = self.forward(m, self.path, h)
                st, hdrs, data = r.status, r.getheaders(), r.read()
                if 200 <= st < 300 and not (src and b"<Error>" in data):
                    if m == "DELETE":
                        GENS.pop(okey, None)
                        LAST_WRITE[okey] = time.monotonic()
                    else:
                        hdrs = self.wrote(okey, hdrs, self.path)
        if refused:
            self.fail(op, *refused)
            return
        self.answer(op, st, hdrs, data)

    def multipart(self, m, q, okey, want):
        conds = [h for h in ("x-goog-if-generation-match", "x-goog-if-metageneration-match")
                 if self.headers.get(h) is not None]
        if m == "PUT" and (self.headers.get("x-amz-copy-source") or
                           self.headers.get("x-goog-copy-source")):
            self.fail("multipart-part-copy", 501, "NotImplemented",
                      "UploadPartCopy is not part of the XML API's multipart uploads")
            return
        if m == "POST" and conds and not CARELESS:
            self.fail("multipart", 400, "InvalidArgument",
                      "preconditions are not supported on XML multipart uploads (%s)" % conds[0])
            return
        strip = COND_HDRS
        if m == "POST" and "uploadId" in q:
            limited = False
            with LOCK:
                if self.rate_limited(okey):
                    limited = True
                else:
                    st, hdrs, data = upstream(m, self.path, self.fwd_headers(strip=strip),
                                              self.body())
                    if st == 200 and b"<Error>" not in data:
                        hdrs = self.wrote(okey, hdrs, urlsplit(self.path).path)
            if limited:
                self.fail("multipart-complete", 429, "SlowDown", "rate limit")
                return
            self.answer("multipart-complete", st, hdrs, data)
            return
        r = self.forward(m, self.path, self.fwd_headers(strip=strip))
        op = {"POST": "multipart-create", "PUT": "multipart-part", "DELETE": "multipart-abort"}
        self.answer_stream(op.get(m, "multipart"), *self.resp(r))

    def compose(self, rawbucket, okey, want, auth):
        text = self.body().decode(errors="replace")
        names = [unescape(n, {"&quot;": '"', "&apos;": "'"})
                 for n in re.findall(r"<Name>(.*?)</Name>", text, re.S)]
        if not names or len(names) > 32:
            self.fail("compose", 400, "InvalidArgument", "a compose takes 1 to 32 components")
            return
        h = {"Authorization": auth} if auth else {}
        path = urlsplit(self.path).path
        refused = None
        with LOCK, tempfile.SpooledTemporaryFile(max_size=64 << 20) as out:
            gen, _ = current(okey, path, auth)
            if precondition_fails(want, gen):
                refused = (412, "PreconditionFailed", FAILED)
            elif self.rate_limited(okey):
                refused = (429, "SlowDown", "rate limit")
            else:
                for n in names:
                    r = upstream_open("GET", "/%s/%s" % (rawbucket, quote(n, safe="/~")), h)
                    if r.status != 200:
                        r.read()
                        refused = (404, "NoSuchKey", "component '%s' not found" % n)
                        break
                    while True:
                        piece = r.read(CHUNK)
                        if not piece:
                            break
                        out.write(piece)
            if refused is None:
                size = out.tell()
                out.seek(0)
                hp = dict(h, **{"Content-Type": "application/octet-stream"})
                r = upstream_open("PUT", path, hp, reader=out, length=size)
                st, hdrs, data = r.status, r.getheaders(), r.read()
                if st == 200:
                    hdrs = self.wrote(okey, hdrs, path)
        if refused:
            self.fail("compose", *refused)
            return
        self.answer("compose", st, hdrs, data)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    global UPSTREAM, CARELESS, RATE_LIMIT
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="the S3 server, http://127.0.0.1:PORT")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ready-file", help="write 'PORT' here once listening")
    ap.add_argument("--careless", action="store_true", help="ignore every condition")
    ap.add_argument("--write-rate-limit", action="store_true",
                    help="429 on a second write to one object within a second")
    a = ap.parse_args()
    u = urlsplit(a.upstream)
    if u.scheme != "http" or u.hostname not in ("127.0.0.1", "localhost"):
        ap.error("upstream must be http://127.0.0.1:PORT")
    UPSTREAM = (u.hostname, u.port or 80)
    CARELESS, RATE_LIMIT = a.careless, a.write_rate_limit
    srv = Server(("127.0.0.1", a.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(tmp, a.ready_file)
    else:
        sys.stdout.write("%d\n" % srv.server_address[1])
        sys.stdout.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        with STATS_LOCK:
            sys.stderr.write("gcsserver: stopped; answers by status: %s\n" % (
                ", ".join("%s=%d" % kv for kv in sorted(STATS.items())) or "none refused"))


if __name__ == "__main__":
    main()
