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
    copy's source.
  - GCS ignores If-None-Match and If-Match on writes: they are removed before the write is
    forwarded (so a second "create if absent" in S3's spelling answers 200 and overwrites).
    On reads they are left to the upstream, which honours them as GCS does.
  - XML multipart uploads take no precondition: an initiate or complete carrying
    x-goog-if-generation-match (or -metageneration-) answers 400 InvalidArgument.
    UploadPartCopy is not part of GCS's XML multipart API: 501 NotImplemented.
  - Compose: PUT /bucket/dest?compose with <ComposeRequest><Component><Name>...</Name>
    </Component>...</ComposeRequest>, up to 32 components of the same bucket.
  --careless         a store that ignores every condition (If-*, x-goog-if-*): no 412 on writes
  --write-rate-limit more than one write a second to one object name answers 429 SlowDown, as
                     GCS documents ("about one write per second")

Writes that reach moto around this server (tests' raw helpers) are noticed: the generation
of a key is kept with the ETag it was given for, and a different ETag upstream is a new
generation. One line per request goes to stderr: "gcsserver: OP METHOD PATH -> STATUS".
"""
import argparse
import http.client
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit
from xml.sax.saxutils import escape

LOCK = threading.Lock()          # every check-and-write, and the tables below
GENS = {}                        # "bucket/key" -> (generation, etag)
LAST_WRITE = {}                  # "bucket/key" -> monotonic time of the last write
LAST_GEN = [0]
UPSTREAM = None                  # (host, port)
CARELESS = False
RATE_LIMIT = False
LOCAL = threading.local()
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer",
       "upgrade"}
COND_HDRS = ("if-match", "if-none-match", "x-goog-if-generation-match",
             "x-goog-if-metageneration-match")


def new_gen():
    g = max(LAST_GEN[0] + 1, time.time_ns() // 1000)
    LAST_GEN[0] = g
    return g


def upstream(method, path, headers, body=b""):
    """One request to moto on this thread's kept-alive connection: (status, headers, body)."""
    for attempt in (0, 1):
        conn = getattr(LOCAL, "conn", None)
        if conn is None:
            conn = LOCAL.conn = http.client.HTTPConnection(*UPSTREAM, timeout=300)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            return r.status, r.getheaders(), data
        except (OSError, http.client.HTTPException):
            conn.close()
            LOCAL.conn = None
            if attempt:
                raise
    raise OSError("unreachable")


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
    protocol_version = "HTTP/1.1"
    server_version = "gcsserver"

    def log_message(self, fmt, *args):
        pass

    def say(self, op, status, why=""):
        sys.stderr.write("gcsserver: %s %s %s -> %d%s\n" % (op, self.command, self.path, status,
                                                             " (%s)" % why if why else ""))
        sys.stderr.flush()

    def answer(self, op, status, headers, body, why=""):
        self.say(op, status, why)
        self.send_response(status)
        for k, v in headers:
            if k.lower() in HOP or k.lower() == "content-length":
                continue
            self.send_header(k, v)
        if self.command == "HEAD":
            n = hget(headers, "content-length")
            self.send_header("Content-Length", n if n is not None else "0")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def fail(self, op, status, code, msg):
        self.answer(op, status, [("Content-Type", "application/xml")], xml_error(code, msg), code)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                n = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def fwd_headers(self, strip=()):
        return {k: v for k, v in self.headers.items()
                if k.lower() not in HOP and k.lower() not in strip}

    def handle_any(self):
        body = self.read_body()
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
                self.bucket_level(m, u, q, body)
            elif "uploads" in q or "uploadId" in q:
                self.multipart(m, q, okey, body, want)
            elif m in ("GET", "HEAD"):
                self.read(okey, want, auth)
            elif m == "PUT" and "compose" in q:
                self.compose(bucket, okey, body, want, auth)
            elif m in ("PUT", "DELETE"):
                self.write(m, okey, body, want, auth)
            else:
                st, hdrs, data = upstream(m, self.path, self.fwd_headers(), body)
                self.answer("other", st, hdrs, data)
        except (OSError, http.client.HTTPException) as e:
            self.fail("error", 502, "BadGateway", "upstream: %s" % e)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = handle_any

    # ---------------------------------------------------------------- bucket level: listings

    def bucket_level(self, m, u, q, body):
        st, hdrs, data = upstream(m, self.path, self.fwd_headers(), body)
        if m == "GET" and st == 200 and b"<ListBucketResult" in data:
            url = b"<EncodingType>url</EncodingType>" in data
            bucket = unquote(u.path.strip("/"))

            def tag(mo):
                block = mo.group(0).decode()
                km = re.search(r"<Key>(.*?)</Key>", block, re.S)
                em = re.search(r"<ETag>(.*?)</ETag>", block, re.S)
                if not km:
                    return mo.group(0)
                k = km.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
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
            self.answer("list", st, hdrs, data)
            return
        self.answer("bucket", st, hdrs, data)

    # ---------------------------------------------------------------- reads

    def read(self, okey, want, auth):
        for _ in range(5):
            with LOCK:
                gen, etag = current(okey, self.path, auth)
            if precondition_fails(want, gen):
                self.fail("get", 412, "PreconditionFailed",
                          "At least one of the pre-conditions you specified did not hold.")
                return
            h = self.fwd_headers(strip=("x-goog-if-generation-match",
                                        "x-goog-if-metageneration-match"))
            pinned = False
            if etag and not any(k.lower() == "if-match" for k in h):
                h["If-Match"] = etag          # the generation named is the one served
                pinned = True
            st, hdrs, data = upstream(self.command, self.path, h)
            if st == 412 and pinned:
                continue                      # written in between: look again
            if st in (200, 206) and gen is not None:
                hdrs = hdrs + [("x-goog-generation", str(gen)), ("x-goog-metageneration", "1")]
            self.answer("get" if self.command == "GET" else "head", st, hdrs, data)
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
            st, h2, _ = upstream("HEAD", path, {"Authorization": self.headers.get("Authorization", "")})
            etag = hget(h2, "etag") if st == 200 else None
        g = new_gen()
        GENS[okey] = (g, etag)
        LAST_WRITE[okey] = time.monotonic()
        return hdrs + [("x-goog-generation", str(g)), ("x-goog-metageneration", "1")]

    def write(self, m, okey, body, want, auth):
        src = self.headers.get("x-amz-copy-source") or self.headers.get("x-goog-copy-source")
        op = "copy" if src else "put" if m == "PUT" else "delete"
        strip = COND_HDRS + ("x-goog-copy-source-if-generation-match",)
        with LOCK:
            gen, _ = current(okey, self.path, auth)
            if precondition_fails(want, gen):
                self.fail(op, 412, "PreconditionFailed",
                          "At least one of the pre-conditions you specified did not hold.")
                return
            if src and not CARELESS:
                spin = self.headers.get("x-goog-copy-source-if-generation-match")
                if spin is not None:
                    spath = "/" + src.lstrip("/")
                    sgen, _ = current(unquote(spath.lstrip("/").split("?")[0]), spath, auth)
                    if precondition_fails(spin, sgen):
                        self.fail(op, 412, "PreconditionFailed",
                                  "At least one of the pre-conditions you specified did not hold.")
                        return
            if self.rate_limited(okey):
                self.fail(op, 429, "SlowDown", "The object exceeded the rate limit for object "
                          "mutation operations (create, update, and delete).")
                return
            st, hdrs, data = upstream(m, self.path, self.fwd_headers(strip=strip), body)
            if 200 <= st < 300:
                if m == "DELETE":
                    GENS.pop(okey, None)
                    LAST_WRITE[okey] = time.monotonic()
                else:
                    hdrs = self.wrote(okey, hdrs, self.path)
        self.answer(op, st, hdrs, data)

    def multipart(self, m, q, okey, body, want):
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
            with LOCK:
                if self.rate_limited(okey):
                    self.fail("multipart-complete", 429, "SlowDown", "rate limit")
                    return
                st, hdrs, data = upstream(m, self.path, self.fwd_headers(strip=strip), body)
                if st == 200 and b"<Error>" not in data:
                    hdrs = self.wrote(okey, hdrs, urlsplit(self.path).path)
            self.answer("multipart-complete", st, hdrs, data)
            return
        st, hdrs, data = upstream(m, self.path, self.fwd_headers(strip=strip), body)
        op = {"POST": "multipart-create", "PUT": "multipart-part", "DELETE": "multipart-abort"}
        self.answer(op.get(m, "multipart"), st, hdrs, data)

    def compose(self, bucket, okey, body, want, auth):
        names = [unquote(n) for n in re.findall(r"<Name>(.*?)</Name>", body.decode(errors="replace"), re.S)]
        if not names or len(names) > 32:
            self.fail("compose", 400, "InvalidArgument", "a compose takes 1 to 32 components")
            return
        h = {"Authorization": auth} if auth else {}
        with LOCK:
            gen, _ = current(okey, urlsplit(self.path).path, auth)
            if precondition_fails(want, gen):
                self.fail("compose", 412, "PreconditionFailed",
                          "At least one of the pre-conditions you specified did not hold.")
                return
            if self.rate_limited(okey):
                self.fail("compose", 429, "SlowDown", "rate limit")
                return
            out = bytearray()
            for n in names:
                st, _, data = upstream("GET", "/%s/%s" % (bucket, n), h)
                if st != 200:
                    self.fail("compose", 404, "NoSuchKey", "component '%s' not found" % n)
                    return
                out += data
            path = urlsplit(self.path).path
            hp = dict(h, **{"Content-Type": "application/octet-stream"})
            st, hdrs, data = upstream("PUT", path, hp, bytes(out))
            if st == 200:
                hdrs = self.wrote(okey, hdrs, path)
        self.answer("compose", st, hdrs, data)


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
    UPSTREAM = (u.hostname, u.port or 80)
    CARELESS, RATE_LIMIT = a.careless, a.write_rate_limit
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(tmp, a.ready_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
