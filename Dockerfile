# syntax=docker/dockerfile:1
# virt-preflight: a static (musl) binary on distroless.
#   docker build -t ghcr.io/virt-preflight/virt-preflight:0.1.0 .
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
# ring's C and assembly are compiled with musl-gcc for the musl target.
ENV CC_x86_64_unknown_linux_musl=musl-gcc
WORKDIR /src
# The whole context (see .dockerignore): Cargo.toml names the benches, so they must be present
# for the manifest to load even though only the binary is built.
COPY . .
# The binary is copied out of the cached target directory, and must be static, or it would not
# start on distroless/static (ldd lists no shared library for it).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin virt-preflight \
 && cp target/x86_64-unknown-linux-musl/release/virt-preflight /virt-preflight \
 && ! ldd /virt-preflight 2>/dev/null | grep -q '=>'

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /virt-preflight /virt-preflight
USER 65532:65532
# 8443: HTTPS (/validate, /healthz, /readyz); 9090: plain-HTTP /metrics.
EXPOSE 8443 9090
ENTRYPOINT ["/virt-preflight"]
CMD ["--help"]
