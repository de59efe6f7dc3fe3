# tokenwarden operator image: `make docker-build` (IMG=tokenwarden:dev).
# Node 24 runs the TypeScript sources directly (type stripping): there is no build step, only the
# production dependencies and src/.

# --- dependencies ------------------------------------------------------------------------------
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=dev: no compiler, linter or test runner in the image. --ignore-scripts: the one install
# script is the `node` package's, which downloads a Node binary for `make`; the image has its own.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && rm -rf node_modules/node node_modules/.bin/node \
 && npm cache clean --force

# --- runtime -----------------------------------------------------------------------------------
FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --chown=root:root package.json ./
COPY --chown=root:root src ./src
# Numeric, so the kubelet can check runAsNonRoot; 1000 is the image's `node` user. The files stay
# root's and read-only to it (the Deployment also mounts the root filesystem read-only).
USER 1000:1000
EXPOSE 8080 8081
# No heap flags here: the Deployment sets NODE_OPTIONS=--max-old-space-size next to its memory limit
# (manifests/deployment.yaml), so the two change together (README, "Sizing: memory").
ENTRYPOINT ["node", "src/main.ts"]
