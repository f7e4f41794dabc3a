#!/usr/bin/env python3
"""dockerfile_chroot.py: runs a Dockerfile's steps in debootstrap chroots, for machines with no container engine (driven by check.sh).

Understands the subset ferry's Dockerfile keeps to: FROM debian:12[-slim] [AS name], ENV,
WORKDIR, COPY [--from=stage], RUN (shell form), LABEL, STOPSIGNAL, ENTRYPOINT, CMD.
Anything else is an error naming the Dockerfile line, so the check can never silently
skip a step. Each stage's leading RUN/ENV/WORKDIR/LABEL steps (the apt layers, the slow
part) are cached like Docker's layer cache, keyed by the base and those steps' text.
"""
import argparse
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

# What the official images carry that a debootstrap minbase does not (or does differently).
DEBIAN_SOURCES = """Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
# debian:*-slim drops docs, man pages and locales at dpkg level (debuerreotype's list).
SLIM_DPKG = """path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
"""
# The official images clean apt's caches after every install and skip translations.
DOCKER_APT_CONF = {
    "docker-clean": 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
                    '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
                    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
                    '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
                    'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n',
    "docker-no-languages": 'Acquire::Languages "none";\n',
}
# Bump when prepare_base changes, so cached layers made from an older base are not reused.
BASE_REV = "2"
DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "HOSTNAME": "ferry-build",
}
BASES = ("debian:12", "debian:bookworm", "debian:12-slim", "debian:bookworm-slim")

_mounted = []


def log(msg):
    print("# %s %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def die(msg):
    print("check: %s" % msg, file=sys.stderr, flush=True)
    sys.exit(1)


class Instr:
    def __init__(self, line, op, args):
        self.line = line            # line number in the Dockerfile, for errors
        self.op = op                # upper-case instruction name
        self.args = args            # the rest of the logical line


def parse(path):
    """Logical lines: continuations joined, comment lines (also inside a continuation) dropped."""
    out, buf, start = [], "", 0
    with open(path) as f:
        for no, raw in enumerate(f, 1):
            s = raw.rstrip("\n")
            if s.lstrip().startswith("#"):
                continue
            if not buf:
                start = no
            if s.endswith("\\"):
                buf += s[:-1] + " "
                continue
            buf += s
            if buf.strip():
                op, _, rest = buf.strip().partition(" ")
                out.append(Instr(start, op.upper(), rest.strip()))
            buf = ""
    if buf.strip():
        die("%s:%d: unterminated continuation" % (path, start))
    return out


def split_stages(path, instrs):
    stages = []
    for ins in instrs:
        if ins.op == "FROM":
            words = ins.args.split()
            name = None
            if len(words) == 3 and words[1].upper() == "AS":
                name = words[2]
            elif len(words) != 1:
                die("%s:%d: FROM: expected 'IMAGE [AS NAME]'" % (path, ins.line))
            if words[0] not in BASES:
                die("%s:%d: FROM '%s': only %s can be emulated" % (path, ins.line, words[0], ", ".join(BASES)))
            stages.append({"image": words[0], "name": name or str(len(stages)), "steps": [], "line": ins.line})
        elif not stages:
            die("%s:%d: %s before the first FROM" % (path, ins.line, ins.op))
        else:
            stages[-1]["steps"].append(ins)
    if not stages:
        die("%s: no FROM" % path)
    return stages


def mounts_under(root):
    root = os.path.realpath(root)
    res = []
    with open("/proc/self/mounts") as f:
        for l in f:
            mp = l.split()[1].replace("\\040", " ")
            if mp == root or mp.startswith(root + "/"):
                res.append(mp)
    return res


def umount_all():
    while _mounted:
        mp = _mounted.pop()
        subprocess.call(["umount", mp])
        if mp in mounts_under(mp):
            subprocess.call(["umount", "-l", mp])


def safe_rmtree(path):
    """Never delete through a mount (a bound /proc or /dev would take the host's with it)."""
    if not os.path.lexists(path):
        return
    left = mounts_under(path)
    if left:
        die("refusing to delete '%s': still mounted: %s" % (path, " ".join(left)))
    shutil.rmtree(path)


def copy_tree(src, dst, chown_root=False):
    # COPY makes everything root:root, as Docker does; layer copies keep what they have.
    extra = ["--no-preserve=ownership"] if chown_root else []
    subprocess.check_call(["cp", "-a", "--reflink=auto"] + extra + [src + "/.", dst])


def prepare_base(cache, image, dst):
    base = os.path.join(cache, "base")
    if not os.path.exists(os.path.join(base, ".ferry-base-ok")):
        tmp = base + ".tmp"
        safe_rmtree(tmp)
        log("debootstrap bookworm minbase into %s (once; cached)" % base)
        rc = subprocess.call(["debootstrap", "--variant=minbase", "bookworm", tmp, "http://deb.debian.org/debian"])
        if rc != 0:
            die("debootstrap failed (exit %d)" % rc)
        open(os.path.join(tmp, ".ferry-base-ok"), "w").close()
        safe_rmtree(base)
        os.rename(tmp, base)
    os.makedirs(dst)
    copy_tree(base, dst)
    os.unlink(os.path.join(dst, ".ferry-base-ok"))
    # The official image: deb822 sources with updates + security, no package caches.
    if os.path.exists(os.path.join(dst, "etc/apt/sources.list")):
        os.unlink(os.path.join(dst, "etc/apt/sources.list"))
    with open(os.path.join(dst, "etc/apt/sources.list.d/debian.sources"), "w") as f:
        f.write(DEBIAN_SOURCES)
    for name, text in DOCKER_APT_CONF.items():
        with open(os.path.join(dst, "etc/apt/apt.conf.d", name), "w") as f:
            f.write(text)
    for d in ("var/lib/apt/lists", "var/cache/apt/archives"):
        for n in os.listdir(os.path.join(dst, d)):
            p = os.path.join(dst, d, n)
            if os.path.isfile(p):
                os.unlink(p)
    for n in os.listdir(os.path.join(dst, "var/cache/apt")):
        if n.endswith(".bin"):
            os.unlink(os.path.join(dst, "var/cache/apt", n))
    if image.endswith("-slim"):
        with open(os.path.join(dst, "etc/dpkg/dpkg.cfg.d/docker-slim"), "w") as f:
            f.write(SLIM_DPKG)
        for d in ("usr/share/man", "usr/share/info", "usr/share/groff", "usr/share/locale", "usr/share/lintian"):
            p = os.path.join(dst, d)
            if os.path.isdir(p):
                shutil.rmtree(p)
                os.makedirs(p)
        doc = os.path.join(dst, "usr/share/doc")
        for pkg in os.listdir(doc):
            pd = os.path.join(doc, pkg)
            if os.path.isdir(pd) and not os.path.islink(pd):
                for n in os.listdir(pd):
                    if n != "copyright":
                        p = os.path.join(pd, n)
                        shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)


class Chroot:
    def __init__(self, root):
        self.root = root
        self.env = dict(DEFAULT_ENV)
        self.workdir = "/"

    def __enter__(self):
        proc = os.path.join(self.root, "proc")
        os.makedirs(proc, exist_ok=True)
        subprocess.check_call(["mount", "-t", "proc", "proc", proc])
        _mounted.append(proc)
        shutil.copyfile("/etc/resolv.conf", os.path.join(self.root, "etc/resolv.conf"))
        return self

    def __exit__(self, *exc):
        umount_all()

    def run(self, argv, env=None, check=True, capture=False):
        root, wd = self.root, self.workdir

        def enter():
            os.chroot(root)
            os.chdir(wd)
        e = dict(self.env)
        if env:
            e.update(env)
        r = subprocess.run(argv, preexec_fn=enter, env=e, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE if capture else None,
                           stderr=subprocess.STDOUT if capture else None, text=capture)
        if check and r.returncode != 0:
            raise subprocess.CalledProcessError(r.returncode, argv, r.stdout)
        return r


def resolve(workdir, p):
    return os.path.normpath(p if p.startswith("/") else os.path.join(workdir, p))


def do_env(c, args, where):
    words = shlex.split(args)
    if len(words) >= 2 and "=" not in words[0]:
        c.env[words[0]] = " ".join(words[1:])
        return
    for w in words:
        if "=" not in w:
            die("%s: ENV: expected NAME=VALUE, got '%s'" % (where, w))
        k, v = w.split("=", 1)
        c.env[k] = v


def do_copy(c, args, where, context, roots):
    words = shlex.split(args)
    src_root = context
    if words and words[0].startswith("--from="):
        name = words.pop(0)[len("--from="):]
        if name not in roots:
            die("%s: COPY --from=%s: no such earlier stage" % (where, name))
        src_root = roots[name]
    if any(w.startswith("--") for w in words) or len(words) < 2:
        die("%s: COPY: expected [--from=STAGE] SRC... DST" % where)
    *srcs, dst = words
    dst_abs = resolve(c.workdir, dst)
    dst_host = os.path.join(c.root, dst_abs.lstrip("/"))
    to_dir = dst.endswith("/") or len(srcs) > 1
    for s in srcs:
        sp = os.path.normpath(os.path.join(src_root, s.lstrip("/")))
        if not os.path.lexists(sp):
            die("%s: COPY: '%s' not found in %s" % (where, s, "the build context" if src_root == context else "the stage"))
        if os.path.isdir(sp) and not os.path.islink(sp):
            # Docker copies a directory's contents, not the directory itself.
            os.makedirs(dst_host, exist_ok=True)
            copy_tree(sp, dst_host, chown_root=True)
        else:
            target = os.path.join(dst_host, os.path.basename(sp)) if to_dir else dst_host
            os.makedirs(os.path.dirname(target), exist_ok=True)
            subprocess.check_call(["cp", "-a", "--no-preserve=ownership", sp, target])


def cache_key(image, steps):
    h = hashlib.sha256((BASE_REV + "\0" + image).encode())
    for s in steps:
        h.update(b"\0" + s.op.encode() + b" " + s.args.encode())
    return h.hexdigest()[:16]


def build(args):
    df = os.path.abspath(args.dockerfile)
    stages = split_stages(df, parse(df))
    roots = {}
    used = set()
    info = {"stages": [], "entrypoint": None, "cmd": None, "stopsignal": None}
    for idx, st in enumerate(stages):
        root = os.path.join(args.work, "stage-%d-%s" % (idx, st["name"]))
        safe_rmtree(root)
        steps = st["steps"]
        # The cached prefix: steps that read nothing from the build context.
        n = 0
        while n < len(steps) and steps[n].op in ("RUN", "ENV", "WORKDIR", "LABEL"):
            n += 1
        key = cache_key(st["image"], steps[:n])
        used.add(key)
        layer = os.path.join(args.cache, "layers", key)
        cached = n > 0 and not args.no_cache and os.path.exists(os.path.join(layer, ".ferry-layer-ok"))
        t0 = time.time()
        if cached:
            log("stage %s: FROM %s + %d cached steps (layer %s)" % (st["name"], st["image"], n, key))
            os.makedirs(root)
            copy_tree(layer, root)
            os.unlink(os.path.join(root, ".ferry-layer-ok"))
        else:
            log("stage %s: FROM %s" % (st["name"], st["image"]))
            prepare_base(args.cache, st["image"], root)
        c = Chroot(root)
        with c:
            for i, ins in enumerate(steps):
                where = "%s:%d" % (df, ins.line)
                if ins.op == "ENV":
                    do_env(c, ins.args, where)
                elif ins.op == "WORKDIR":
                    c.workdir = resolve(c.workdir, ins.args)
                    if not (cached and i < n):
                        os.makedirs(os.path.join(root, c.workdir.lstrip("/")), exist_ok=True)
                elif ins.op == "LABEL":
                    pass
                elif ins.op == "RUN":
                    if cached and i < n:
                        continue
                    if ins.args.startswith("["):
                        die("%s: RUN: only the shell form is supported" % where)
                    log("stage %s: RUN %s" % (st["name"], ins.args[:100]))
                    try:
                        c.run(["/bin/sh", "-c", ins.args])
                    except subprocess.CalledProcessError as e:
                        die("%s: RUN failed with exit %d" % (where, e.returncode))
                elif ins.op == "COPY":
                    log("stage %s: COPY %s" % (st["name"], ins.args))
                    do_copy(c, ins.args, where, args.context, roots)
                elif ins.op in ("ENTRYPOINT", "CMD"):
                    try:
                        v = json.loads(ins.args)
                    except ValueError:
                        die("%s: %s: use the exec (JSON) form, so tini is PID 1" % (where, ins.op))
                    info[ins.op.lower()] = v
                elif ins.op == "STOPSIGNAL":
                    info["stopsignal"] = ins.args
                else:
                    die("%s: instruction %s is not supported by this check" % (where, ins.op))
                if i == n - 1 and not cached and not args.no_cache:
                    umount_all()
                    tmp = layer + ".tmp"
                    safe_rmtree(tmp)
                    os.makedirs(tmp)
                    copy_tree(root, tmp)
                    open(os.path.join(tmp, ".ferry-layer-ok"), "w").close()
                    safe_rmtree(layer)
                    os.rename(tmp, layer)
                    log("stage %s: cached %d steps as layer %s" % (st["name"], n, key))
                    c.__enter__()
        roots[st["name"]] = root
        roots[str(idx)] = root
        info["stages"].append({"name": st["name"], "root": root, "env": c.env, "workdir": c.workdir,
                               "seconds": round(time.time() - t0, 1)})
    # Layers this Dockerfile no longer makes only take disk (hundreds of MiB each).
    ldir = os.path.join(args.cache, "layers")
    for k in os.listdir(ldir) if os.path.isdir(ldir) else []:
        if k not in used:
            log("pruning unused cached layer %s" % k)
            safe_rmtree(os.path.join(ldir, k))
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dockerfile", required=True)
    ap.add_argument("--context", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--info", required=True, help="write stage roots and ENTRYPOINT here (JSON)")
    args = ap.parse_args()
    args.context = os.path.abspath(args.context)
    os.makedirs(args.cache, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda *_: (umount_all(), sys.exit(130)))
    try:
        info = build(args)
    finally:
        umount_all()
    with open(args.info, "w") as f:
        json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
