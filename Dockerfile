# openclaw-k8s-toggle-operator: container image.
#
#   docker build -t openclaw-k8s-toggle-operator:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/openclaw-k8s-toggle-operator:0.1.0 --push .
#
# No native modules: the end-to-end-encryption engine is WebAssembly (@matrix-org/matrix-sdk-crypto-wasm),
# the state store is Node's built-in node:sqlite, and the image holds one JavaScript file and one wasm file.
# The bundler (esbuild, a binary npm installs for the builder's platform) runs only in the build stage. So
# the same Dockerfile builds amd64 and arm64 (and any platform the node image exists for) unchanged, without
# QEMU-emulated build tools.
#
# test/unit/dockerfile.test.ts executes these steps without Docker (it replays the build stage, assembles
# the runtime stage's file layout and runs the ENTRYPOINT): keep RUN lines to relative paths, $HOME and the
# image's own directories (/build, /app, /data), and keep to the instructions that test understands.

# Pin by digest for reproducible builds, e.g. --build-arg NODE_IMAGE=node:24-slim@sha256:...
ARG NODE_IMAGE=node:24-slim

# ---------------------------------------------------------------------------------------------------------
# build: one minified ES module, dist/main.js, and the crypto engine's wasm beside it (scripts/build.ts,
# esbuild). The output is the same on every platform, so this stage runs on the builder's own platform
# ($BUILDPLATFORM): a multi-platform build bundles once, natively, instead of under QEMU per target.
FROM --platform=$BUILDPLATFORM ${NODE_IMAGE} AS build
WORKDIR /build
COPY package.json package-lock.json ./
# --ignore-scripts: no dependency needs its install script to bundle (esbuild's platform binary is an npm
# package; the `node` devDependency's script fetches a Node 24 binary, and this image already is Node 24).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY scripts/build.ts ./scripts/
COPY src ./src
RUN npm run build

# ---------------------------------------------------------------------------------------------------------
# runtime: Node 24 and the bundle; no node_modules, no sources, no npm install in this stage.
FROM ${NODE_IMAGE} AS runtime
ARG SOURCE_URL=https://github.com/openclaw/openclaw-k8s-toggle-operator
LABEL org.opencontainers.image.title="openclaw-k8s-toggle-operator" \
      org.opencontainers.image.description="Matrix application service that starts, stops and reports a Kubernetes Deployment from end-to-end-encrypted chat" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="LGPL-3.0-only" \
      org.opencontainers.image.source="${SOURCE_URL}"
# NODE_OPTIONS: a small young generation and a capped old generation keep the resident size down (the
# live heap is ~17 MiB). MALLOC_ARENA_MAX=2: glibc gives each thread that allocates an arena of its own
# (Node has about ten); two arenas measured ~4 MiB less resident when idle. `npm run bench` runs the bundle
# with exactly this ENV (it reads it from here).
ENV NODE_ENV=production \
    NODE_OPTIONS="--max-semi-space-size=1 --max-old-space-size=96" \
    MALLOC_ARENA_MAX=2 \
    CRYPTO_STORE_PATH=/data
WORKDIR /app
# dist/: main.js, pkg/matrix_sdk_crypto_wasm_bg.wasm, THIRD-PARTY-LICENSES.txt (the bundled packages' licences).
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
