# syntax=docker/dockerfile:1
# Builds the extractor, the loader and the demo API into one slim runtime image.

FROM rust:1.89-bookworm AS build
WORKDIR /src
# librdkafka is built from source by rdkafka-sys; SQLite is bundled by rusqlite.
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cp target/release/extractor target/release/loader target/release/demo-api /out/

FROM debian:bookworm-slim AS runtime
# curl: the compose healthchecks ask /health.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home pipeline
COPY --from=build /out/ /usr/local/bin/
USER pipeline
WORKDIR /data
CMD ["extractor", "--help"]
