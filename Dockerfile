# Dockerfile: ferry's image: a Debian 12 build stage, then a slim runtime holding only ferry, ferryfs, the plugins, conf/ and their runtime libraries.
#
# What the container needs at run time (fly.io machines have all of it):
#   - /dev/fuse and CAP_SYS_ADMIN: the mount stage runs ferryfs, a FUSE filesystem.
#     Elsewhere: docker run --device /dev/fuse --cap-add SYS_ADMIN
#                           --security-opt apparmor:unconfined ...
#   - root inside the container (mounting FUSE without fusermount3's setuid help).
#   - a volume at /var/lib/ferry ([pipeline] state_dir): the run journal and the local
#     replica survive between runs, so a warm run pulls only changed pages.
#   - BUCKET_NAME, ORG_ID, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (secrets), and
#     AWS_ENDPOINT_URL_S3 / AWS_REGION for non-AWS stores; see fly.toml.
#
# PID 1 is tini: it reaps orphans (a ferryfs whose parent died) and passes SIGTERM/SIGINT
# to entrypoint.sh, which forwards them to ferry so the pipeline unwinds (lock released
# last) before the platform's kill timeout. tini -s also makes it a subreaper where the
# platform's own init is PID 1 (fly.io), instead of warning.
#
# tests/container/run.sh builds this file with podman and runs the image against a local S3
# server (default pipeline, missing variable, stop mid-run, serve + exec, work mode).

FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libfuse3-dev libcurl4-openssl-dev libssl-dev \
      libsqlite3-dev libinih-dev libexpat1-dev libjansson-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only the sources: a host's build/ tree or .git must not leak into the image.
COPY Makefile ./
COPY core core
COPY plugins plugins
COPY conf conf
COPY tests tests
# PREFIX on both: the Makefile compiles the plugin directory ($(PREFIX)/lib/ferry) into
# ferry, and install does not rebuild objects made with another PREFIX.
RUN make -j"$(nproc)" PREFIX=/usr \
 && make install DESTDIR=/out PREFIX=/usr

FROM debian:12-slim
LABEL org.opencontainers.image.title="ferry" \
      org.opencontainers.image.description="lock, pull, schedule, push an org's SQLite DB in S3"
# DEBIAN_FRONTEND only for apt: an ENV would stay in the image's environment.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libfuse3-3 fuse3 libcurl4 libssl3 libsqlite3-0 libinih1 libexpat1 libjansson4 libmicrohttpd12 \
      ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /
COPY entrypoint.sh /usr/bin/ferry-entrypoint
# /mnt/bucket is the default pipeline's mountpoint. /etc/ferry is a copy of conf/ (the
# pipeline, the examples and the scheduler's data files side by side), so an operator can
# edit it in an SSH session without touching the packaged one.
RUN chmod 0755 /usr/bin/ferry-entrypoint \
 && install -d -m 0755 /etc/ferry /var/lib/ferry /mnt/bucket \
 && cp -r /usr/share/ferry/conf/. /etc/ferry/ \
 && ferry --version
ENV FERRY_CONFIG=/etc/ferry/pipeline.ini
# Relative paths that come from plugin defaults (the schedule stage's conf/*.csv) resolve
# against the working directory; here they find the packaged conf/.
WORKDIR /usr/share/ferry
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "-s", "--", "/usr/bin/ferry-entrypoint"]
CMD []
