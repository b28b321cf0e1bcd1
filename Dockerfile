# The xregion image for deploy/kubernetes/: a release build of the workspace, on Debian 12 slim with the CA
# roots (xregion trusts the system roots when a deployment names no CA file). Build it from the repository's root:
#   docker build -t xregion:latest .
# CI cannot build it (no container engine there); it validates the manifests instead.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin xregion

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/xregion /usr/local/bin/xregion
USER 65532:65532
ENTRYPOINT ["xregion"]
