# syntax=docker/dockerfile:1
# settle's service images, one target per service, from one build of the workspace:
#
#   docker build --target payments     -t ghcr.io/settle/settle-payments:0.1.0 .
#   docker build --target invoices     -t ghcr.io/settle/settle-invoices:0.1.0 .
#   docker build --target credit-notes -t ghcr.io/settle/settle-credit-notes:0.1.0 .
#
# The runtime is distroless (no shell; k8s/ uses the built-in preStop sleep), as the non-root
# UID/GID 65532 the manifests run with. protoc is vendored by the build and SQLite is bundled, so
# the builder needs nothing beyond the Rust image.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binaries are copied out of the
# cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p settle-invoices -p settle-payments -p settle-credit-notes --bins \
 && mkdir -p /out \
 && cp target/release/settle-invoices target/release/settle-payments target/release/settle-credit-notes /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
USER 65532:65532
# Metrics (SETTLE_METRICS_ADDR, set by k8s/ to 0.0.0.0:9464).
EXPOSE 9464

FROM runtime AS invoices
COPY --from=build /out/settle-invoices /usr/local/bin/settle-invoices
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/settle-invoices"]

FROM runtime AS payments
COPY --from=build /out/settle-payments /usr/local/bin/settle-payments
EXPOSE 50052
ENTRYPOINT ["/usr/local/bin/settle-payments"]

FROM runtime AS credit-notes
COPY --from=build /out/settle-credit-notes /usr/local/bin/settle-credit-notes
EXPOSE 50053
ENTRYPOINT ["/usr/local/bin/settle-credit-notes"]
