# Tern broker image. Build: docker build -t tern .   Run: see docker-compose.yml
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev
COPY tsconfig.json ./
COPY src ./src
COPY migrations ./migrations
# Inside a container the broker must listen on all interfaces; no access keys exist yet,
# so anonymous access has to be allowed explicitly. Set DATABASE_URL (see docker-compose.yml);
# without it the broker starts an embedded PostgreSQL in /data/pg.
ENV TERN_HOST=0.0.0.0 \
    TERN_ALLOW_ANONYMOUS=true \
    TERN_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080 1883
CMD ["node", "--import", "tsx", "src/main.ts"]
