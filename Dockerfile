# syntax=docker/dockerfile:1
# The release image: one binary on distroless (glibc, no shell), running as nonroot.
#   docker build -t ghcr.io/certkeeper/certkeeper:0.1.0 .

# cargo-chef builds the dependencies in a layer of their own, against a skeleton of the
# project, so a change to src/ rebuilds only certkeeper. It finds every target Cargo.toml
# declares (bins, the e2e test, benches) by itself, so this file does not list them.
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --bin certkeeper --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin certkeeper

# cc: glibc and libgcc for the dynamically linked binary (aws-lc-rs is linked in statically).
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="certkeeper" \
      org.opencontainers.image.description="Kubernetes certificate operator: in-cluster CAs, TLS Secrets, renewal on time" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /build/target/release/certkeeper /certkeeper
USER 65532:65532
# /metrics, /healthz and /readyz.
EXPOSE 9402
# CRLs and OCSP of the CA issuers.
EXPOSE 9403
ENTRYPOINT ["/certkeeper"]
CMD ["controller"]
