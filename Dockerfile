# The gantry binary in a small image that runs as a non-root user. One image for every
# shape: the command picks it (`serve`, `gateway …`, `subgraph users|posts`, `migrate up`).
#
#   docker build -t gantry .
#   docker run -p 4000:4000 gantry                      # gantry serve, SQLite in a volume
#
# Every process in the image listens on 4000 (GANTRY_LISTEN); deploy/ maps it per service.

# --- build: Rust, plus Node.js and npm for the playground bundle (gateway/build.rs) ---
FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin gantry \
 && cp target/release/gantry /usr/local/bin/gantry

# --- runtime: the binary, CA certificates, curl for the health check ---
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/gantry --create-home gantry
COPY --from=build /usr/local/bin/gantry /usr/local/bin/gantry
ENV GANTRY_LISTEN=0.0.0.0:4000 \
    GANTRY_DATA_DIR=/var/lib/gantry \
    GANTRY_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/gantry
VOLUME ["/var/lib/gantry"]
EXPOSE 4000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:4000/health"]
ENTRYPOINT ["gantry"]
CMD ["serve"]
