# The Airbyte source image of `dvsql airbyte`, a drop-in for `source-microsoft-dataverse`
# (README.md: "For Airbyte users"). Build from the repository root:
#
#   docker build -t dvsql/source-microsoft-dataverse:0.1.0 .
#
# The first stage compiles the release binary (crates are fetched from crates.io, so the
# build needs the network); the image itself holds only the binary, CA certificates and an
# unprivileged user.

# The toolchain the project is tested with (rustc 1.95); the crate's floor is 1.88.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin dvsql \
    && cp target/release/dvsql /usr/local/bin/dvsql

FROM debian:bookworm-slim
ARG VERSION=0.1.0
# TLS to Dataverse and Entra ID checks certificates against the system's roots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/dvsql /usr/local/bin/dvsql
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin airbyte
USER airbyte
# Metadata stays in memory unless DVSQL_STATE_DIR names a writable directory; the state
# Airbyte keeps is passed in with --state, never stored in the container.
ENV AIRBYTE_ENTRYPOINT="dvsql airbyte"
ENTRYPOINT ["dvsql", "airbyte"]
LABEL io.airbyte.name="dvsql/source-microsoft-dataverse" \
      io.airbyte.version="${VERSION}" \
      org.opencontainers.image.title="dvsql airbyte: Microsoft Dataverse source" \
      org.opencontainers.image.licenses="Apache-2.0"
