# openclaw-k8s-toggle-operator: container image.
#
#   docker build -t openclaw-k8s-toggle-operator:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/openclaw-k8s-toggle-operator:0.1.0 --push .
#
# No native modules: the end-to-end-encryption engine is WebAssembly (@matrix-org/matrix-sdk-crypto-wasm),
# the state store is Node's built-in node:sqlite, and nothing else compiles or downloads a binary. So the
# same Dockerfile builds amd64 and arm64 (and any platform the node image exists for) unchanged, without
# QEMU-emulated compilers or build tools in either stage.
#
# test/unit/dockerfile.test.ts executes these steps without Docker (it replays the build stage, assembles
# the runtime stage's file layout and runs the ENTRYPOINT): keep RUN lines to relative paths, $HOME and the
# image's own directories (/build, /app, /data), and keep to the instructions that test understands.

# Pin by digest for reproducible builds, e.g. --build-arg NODE_IMAGE=node:24-slim@sha256:...
ARG NODE_IMAGE=node:24-slim

# ---------------------------------------------------------------------------------------------------------
# build: TypeScript -> dist/ (tsconfig.build.json; src/dev, the development harness, is not built)
FROM ${NODE_IMAGE} AS build
WORKDIR /build
COPY package.json package-lock.json ./
# --ignore-scripts: the only dependency with an install script is the `node` devDependency, which fetches a
# Node 24 binary to pin Node for npm scripts on developer machines; the base image already is Node 24.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---------------------------------------------------------------------------------------------------------
# runtime: Node 24, production dependencies, the compiled bot; no compiler, no dev dependencies, no sources.
FROM ${NODE_IMAGE} AS runtime
ARG SOURCE_URL=https://github.com/openclaw/openclaw-k8s-toggle-operator
LABEL org.opencontainers.image.title="openclaw-k8s-toggle-operator" \
      org.opencontainers.image.description="Matrix application service that starts, stops and reports a Kubernetes Deployment from end-to-end-encrypted chat" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="LGPL-3.0-only" \
      org.opencontainers.image.source="${SOURCE_URL}"
# NODE_OPTIONS: a small young generation and a capped old generation keep the resident size down (the
# live heap is ~40 MiB); measured by `npm run bench` at about -50 MiB for a little more GC work.
ENV NODE_ENV=production \
    NODE_OPTIONS="--max-semi-space-size=1 --max-old-space-size=96" \
    CRYPTO_STORE_PATH=/data
WORKDIR /app
# Production dependencies exactly as locked; none has an install script. The npm cache is not kept.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force \
 && rm -rf "$HOME/.npm"
# dist/cli.js reads ../package.json (the version) at run time: /app/package.json, copied above.
COPY --from=build /build/dist ./dist
COPY LICENSE.md ./
# The crypto store and the record of handled events (CRYPTO_STORE_PATH): owned by the bot's user, 0700.
RUN mkdir -p /data \
 && chown 10001:10001 /data \
 && chmod 0700 /data
VOLUME ["/data"]
# A numeric non-root user (no passwd entry needed), so Kubernetes' runAsNonRoot can verify it.
# The application files stay root-owned and read-only to it.
USER 10001:10001
# Appservice transactions from Synapse, /health, /ready, /metrics (http.port, HTTP_PORT).
EXPOSE 9000
# The bot finishes the transaction in flight and flushes its state on SIGTERM, within 10 s.
STOPSIGNAL SIGTERM
# No HEALTHCHECK: Kubernetes probes /health and /ready (config/kubernetes/deployment.yaml).
ENTRYPOINT ["node", "dist/main.js"]
