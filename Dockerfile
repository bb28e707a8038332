# syntax=docker/dockerfile:1
# One recipe for both services:
#   docker build --build-arg SERVICE=issuance     -t kube-credential-issuance .
#   docker build --build-arg SERVICE=verification -t kube-credential-verification .
ARG SERVICE=issuance

# --- build -------------------------------------------------------------------
# Alpine's Rust targets musl and links statically, so the binary needs no libc
# at run time and the final image can be `scratch`. Pinned by digest: the tag
# is for people, the digest is what is pulled, so a rebuild gets the same
# compiler and Alpine packages index whatever the tag points to now. To move
# to a newer image: docker pull rust:1.95-alpine, then docker inspect
# --format '{{index .RepoDigests 0}}' rust:1.95-alpine, and paste the digest.
FROM rust:1.95-alpine@sha256:606fd313a0f49743ee2a7bd49a0914bab7deedb12791f3a846a34a4711db7ed2 AS builder
ARG SERVICE
# gcc: ring (rustls' crypto for TLS to RDS) compiles a little C and assembly.
RUN apk add --no-cache musl-dev gcc
WORKDIR /app

# Dependencies first, against stub sources: this layer is rebuilt only when a
# manifest or the lock file changes, not on every source edit.
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY core/Cargo.toml core/
COPY issuance/Cargo.toml issuance/
COPY verification/Cargo.toml verification/
# The test-support, bench and fault-suite crates are workspace members, so
# cargo needs them to load the workspace; they are small and rarely change.
COPY testing testing
COPY benches benches
COPY faults faults
RUN for crate in core issuance verification; do mkdir -p $crate/src && echo '' > $crate/src/lib.rs; done \
 && echo 'fn main() {}' > issuance/src/main.rs \
 && echo 'fn main() {}' > verification/src/main.rs \
 && cargo build --release --locked --bin "$SERVICE" \
 && rm -rf core/src issuance/src verification/src

COPY core core
COPY issuance issuance
COPY verification verification
COPY sql sql
# Make the real sources newer than the stubs' build outputs.
RUN touch core/src/lib.rs issuance/src/*.rs verification/src/*.rs \
 && cargo build --release --locked --bin "$SERVICE" \
 && cp "target/release/$SERVICE" /service \
 && /service --version

# The RDS certificate authorities, for DB_SSLMODE=verify-full with
# DB_SSLROOTCERT=/app/certs/rds-global-bundle.pem (what ecs.yml sets). World-
# readable: the service runs as an unprivileged user. Checked against a pinned
# SHA-256: the build fails rather than trust a bundle that changed. When AWS
# adds a certificate authority (a new Region), the build says so; check the
# new bundle (docs/DEPLOYMENT.md, "TLS to RDS") and pin its checksum here.
ADD --checksum=sha256:516c8cb5e3436763cdd4fa5aa480cab529e7a1a75a35afa458a9d50d89618e4f --chmod=0444 \
    https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /certs/rds-global-bundle.pem

# --- run ---------------------------------------------------------------------
# scratch: nothing but the static binary (and the migrations, for reference:
# the binary carries its own copy). No shell, no package manager, ~3 MB.
FROM scratch
ARG SERVICE
COPY --from=builder /service /app/service
COPY sql /app/sql
COPY --from=builder /certs/rds-global-bundle.pem /app/certs/rds-global-bundle.pem
# A user that does not exist in any image's /etc/passwd: no privileges.
USER 65532:65532
ENV PORT=3000 LOG_FORMAT=json
# 3000: the API (PORT); 9464: GET /metrics (METRICS_PORT), for scrapers, not the load balancer.
EXPOSE 3000 9464
# The binary's own check (GET /health/live): the image has no curl.
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 CMD ["/app/service", "healthcheck"]
ENTRYPOINT ["/app/service"]
