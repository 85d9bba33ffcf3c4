# Build: compile the server, its Lua scripts and docs UI into one executable.
FROM oven/bun:1 AS build
WORKDIR /app
COPY package.json bun.lock ./
COPY patches ./patches
RUN bun install --frozen-lockfile --production
COPY tsconfig.json assets.d.ts ./
COPY lua ./lua
COPY src ./src
RUN bun build src/main.ts --compile --minify --outfile dist/flashsale

# Run: the executable alone, as an unprivileged user; curl only for the health check.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data flashsale \
 && mkdir -p /data && chown flashsale /data
COPY --from=build /app/dist/flashsale /usr/local/bin/flashsale
USER flashsale
WORKDIR /data
ENV PORT=8080 DATA_DIR=/data
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=2s --start-period=10s --retries=3 CMD curl -fsS http://127.0.0.1:8080/health >/dev/null || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/flashsale"]
