# Tern broker image, built in two stages: the first compiles src/ to dist/ (needs the dev
# dependencies: TypeScript), the second holds only the runtime dependencies and dist/.
# Build: docker build -t tern .   Run: see docker-compose.yml
# Node 24 on Debian 13 (glibc 2.41): the current uWebSockets.js build needs glibc >= 2.38.
FROM node:24-trixie-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.mjs ./scripts/
COPY src ./src
RUN npm run build

FROM node:24-trixie-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
# Inside a container the broker must listen on all interfaces; no access keys exist yet,
# so anonymous access has to be allowed explicitly. Set DATABASE_URL (see docker-compose.yml);
# without it the broker starts an embedded PostgreSQL in /data/pg.
ENV TERN_HOST=0.0.0.0 \
    TERN_ALLOW_ANONYMOUS=true \
    TERN_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080 1883
CMD ["node", "--max-semi-space-size=16", "dist/main.js"]
