# Builds a small image with the keyframe binary. Used by docker-compose.yml.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY templates templates
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/keyframe --create-home keyframe
COPY --from=build /src/target/release/keyframe /usr/local/bin/keyframe
USER keyframe
WORKDIR /var/lib/keyframe
ENV KEYFRAME_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["keyframe"]
CMD ["serve"]
