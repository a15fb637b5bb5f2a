# moltctl and the moltbot gateway image (docs/docker.md).
#
#   docker build -t moltbot:local .                    # the gateway (default, last target)
#   docker build --target moltctl -t moltctl:local .   # moltctl alone, e.g. for `moltctl migrate`
#
# Works with the legacy builder and with BuildKit (no RUN --mount, no heredocs).

# Go toolchain image for the build stage; go.mod asks for Go 1.26.
ARG GO_IMAGE=golang:1.26-bookworm
# Node base of the gateway; openclaw 2026.9.6 needs node >=24.16.0 <25 || >=26.1.0.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${GO_IMAGE} AS build
ENV CGO_ENABLED=0 GOTOOLCHAIN=local
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The version printed by `moltctl version`.
ARG MOLTCTL_VERSION=dev
# Two builds: the full moltctl, and the gateway's entrypoint build of it
# (./cmd/moltctl/entrypoint: `moltctl bootstrap` and `version` only, without the
# compose and engine code, so a container start pays for none of their package
# initialisation; about 3 MB instead of 12). The build cache is dropped: a later
# build never reuses a RUN layer's cache.
RUN go build -trimpath -ldflags "-s -w -X main.version=${MOLTCTL_VERSION}" -o /out/moltctl ./cmd/moltctl \
 && go build -trimpath -ldflags "-s -w -X main.version=${MOLTCTL_VERSION}" -o /out/moltctl-entrypoint ./cmd/moltctl/entrypoint \
 && rm -rf "$(go env GOCACHE)" \
 && /out/moltctl version \
 && /out/moltctl-entrypoint version

# moltctl alone, to run it as a container with the Docker socket mounted, e.g.
#   docker run --rm -v /var/run/docker.sock:/var/run/docker.sock -v "$PWD:$PWD" -w "$PWD" moltctl:local migrate
FROM scratch AS moltctl
COPY --from=build /out/moltctl /moltctl
ENTRYPOINT ["/moltctl"]

# The moltbot gateway: the app from npm (published as `openclaw`), started through
# `moltctl bootstrap`, which creates the state directories and fixes their ownership,
# moves legacy state out of the way safely, drops to node and execs the app.
FROM ${NODE_IMAGE} AS gateway
ARG OPENCLAW_VERSION=2026.9.6
# The app under its package's name (`openclaw`, npm's bin link to openclaw.mjs) and as
# `moltbot`, the CLI to use with `docker exec`: exec runs as root here (see USER below),
# so `moltbot` then goes through bootstrap and runs as node too, and never leaves
# root-owned files in the state directories.
RUN npm install -g --omit=dev --no-fund --no-audit "openclaw@${OPENCLAW_VERSION}" \
 && npm cache clean --force \
 && test -x "$(npm prefix -g)/bin/openclaw" \
 && { echo '#!/bin/sh'; \
      echo '# moltbot: the gateway CLI (npm package openclaw); as root it drops to node through moltctl bootstrap.'; \
      echo 'if [ "$(id -u)" = 0 ]; then exec moltctl bootstrap -- openclaw "$@"; fi'; \
      echo 'exec openclaw "$@"'; } >/usr/local/bin/moltbot \
 && chmod 755 /usr/local/bin/moltbot \
 && mkdir -p /var/lib/moltbot /home/node/clawd \
 && chown node:node /var/lib/moltbot /home/node/clawd \
 && chmod 755 /var/lib/moltbot /home/node/clawd
# moltctl's entrypoint build: `moltctl bootstrap` and `moltctl version`; migrate,
# remount and status run from the moltctl target (or a host binary), not in here.
COPY --from=build /out/moltctl-entrypoint /usr/local/bin/moltctl
# bootstrap's configuration (docs/bootstrap.md): the app runs as node, these are its
# state directories (colon-separated), and the legacy state names the app still reads
# (~/.clawdbot, ~/.moltbot, ~/.moldbot) are migrated to ~/.openclaw safely. The app keeps
# its state in the moltbot_data volume (OPENCLAW_STATE_DIR; set it empty to use ~/.openclaw).
ENV MOLTCTL_USER=node \
    MOLTCTL_DIRS=/var/lib/moltbot:/home/node/clawd \
    MOLTCTL_LEGACY=openclaw \
    OPENCLAW_STATE_DIR=/var/lib/moltbot \
    NODE_ENV=production
WORKDIR /home/node
# USER stays root on purpose: bootstrap needs root to create the state directories and
# give them to node (volumes and host directories created by root), then drops to
# MOLTCTL_USER for good (its groups, gid, uid, no-new-privs) and execs CMD, which
# keeps PID, signals and exit code. Started with --user node, bootstrap changes no
# ownership and only checks that the directories are writable.
ENTRYPOINT ["moltctl", "bootstrap", "--"]
# The app's own probe: the gateway answers /healthz on loopback port 18789.
HEALTHCHECK --interval=1m --timeout=10s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:18789/healthz').then((r)=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]
CMD ["moltbot", "gateway", "--allow-unconfigured"]
