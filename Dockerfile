# syntax=docker/dockerfile:1
#
# Two images from one file:
#   docker build .                      -> the service (the last stage, `service`)
#   docker build --target simulator .   -> the orders simulator
#
# librdkafka is compiled from its bundled sources with ./configure and make, with the `ssl`
# feature linking the system OpenSSL (TLS, mTLS and SASL_SSL to managed brokers) and the `zstd`
# feature building zstd from source; gzip (zlib), snappy and lz4 are librdkafka's own. sqlx speaks
# TLS to PostgreSQL through rustls. The runtime image therefore needs libssl3 and, to verify
# servers' certificates against the public CAs, ca-certificates.

# The locked dependencies need a newer compiler than the workspace's rust-version (uuid 1.29
# needs 1.89); this is the version the project is built and tested with.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# make, a C/C++ compiler, zlib and OpenSSL headers for librdkafka's configure build; cmake so that
# turning on rdkafka's `cmake-build` feature needs no change here.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake pkg-config zlib1g-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and the target directory are BuildKit cache mounts: a rebuild after a source
# change recompiles the workspace crates only, not librdkafka and the other dependencies.
# Binaries are copied out of the cache mount, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p payment-service --bin payment-service \
    && install -D target/release/payment-service /out/payment-service

FROM build AS build-simulator
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p orders-simulator --bin orders-simulator \
    && install -D target/release/orders-simulator /out/orders-simulator

# Runtime: libc and zlib1g are already in bookworm-slim; libssl3 for librdkafka's TLS, and
# ca-certificates so that `sslmode=verify-full` and `ssl.ca.location` can use the system CAs.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin payment

FROM runtime AS simulator
COPY --from=build-simulator /out/orders-simulator /usr/local/bin/orders-simulator
USER payment
ENTRYPOINT ["/usr/local/bin/orders-simulator"]

FROM runtime AS service
COPY --from=build /out/payment-service /usr/local/bin/payment-service
USER payment
ENV HTTP_ADDR=0.0.0.0:8080
# Refuse to start when pay.order may keep a message longer than the inbox remembers it (a replay
# would decide it again). A record can outlive retention.ms by up to segment.ms: 15 days of inbox
# cover Kafka's defaults of 7 days each.
ENV INBOX_RETENTION_CHECK=refuse
ENV INBOX_RETENTION_HOURS=360
# A container never falls back to the in-memory store or the embedded broker: without
# DATABASE_URL and KAFKA_BROKERS it refuses to start, naming what is missing.
ENV REQUIRE_EXTERNAL=true
# Health, readiness, metrics and the OpenAPI document on a port of their own, for the
# orchestrator and the scraper; publish it to them only (docs/security.md).
ENV ADMIN_ADDR=0.0.0.0:9090
EXPOSE 8080 9090
# Liveness, not readiness: /healthz answers while the process serves. /readyz (503 while PostgreSQL
# or Kafka is unreachable) is for a readiness probe; as a health check it would have the
# orchestrator restart a healthy process during a database blip. bookworm-slim has no curl or
# wget; rather than install one the check speaks HTTP/1.1 through bash's /dev/tcp to the port of
# ADMIN_ADDR and passes on a 200.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${ADMIN_ADDR##*:} && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/payment-service"]
