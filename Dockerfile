# syntax=docker/dockerfile:1
# Portcullis container image: one static (musl) binary on distroless/static, run as uid 65532.
#
#   docker build --build-arg GIT_COMMIT="$(git rev-parse --short=12 HEAD)" -t portcullis .
#   docker run --read-only -p 8080:8080 -v "$PWD/portcullis.yaml:/etc/portcullis/portcullis.yaml:ro" portcullis
#
# scripts/deploy/docker-native.sh executes this file's build stage natively in CI (same RUN lines, same
# COPY layout) and then runs the result in a chroot that holds only what the runtime stage copies,
# so neither the commands nor the "static binary, nothing else needed" claim can rot unnoticed.

ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
ARG GIT_COMMIT=unknown
WORKDIR /src
# musl-tools: aws-lc-rs (the crypto under rustls and jsonwebtoken) compiles C for the musl target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
# Dependency layer: rebuilt only when the manifests change, not on every source edit.
COPY Cargo.toml Cargo.lock build.rs ./
# Cargo.toml declares the `hot_path` bench, so its file must exist for any build; the image never
# builds benches, so an empty stub stands in for it (benches/ stays out of the build context).
RUN mkdir -p src benches \
 && echo 'fn main() {}' > benches/hot_path.rs \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl \
 && rm -rf src
COPY src ./src
# build.rs embeds this in `--version` (there is no .git in the build context).
ENV PORTCULLIS_GIT_COMMIT=${GIT_COMMIT}
# touch: COPY keeps the context's (older) mtimes, which cargo would take for the stub it just built.
# CARGO_TARGET_DIR is unset in the image; the native CI run sets it to reuse its cache.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl \
 && cp "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/portcullis" ./portcullis

# distroless/static: CA roots (/etc/ssl/certs), /etc/passwd with nonroot (65532), tzdata; no shell,
# no libc (the binary is static). Nothing is written at run time, so `readOnlyRootFilesystem` holds.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/portcullis /usr/local/bin/portcullis
# A placeholder policy so the image starts; mount your own ConfigMap at /etc/portcullis (deploy/).
COPY config.example.yaml /etc/portcullis/portcullis.yaml
USER 65532:65532
# 8080: the proxy (`listen`); 9901: /healthz /readyz /metrics (`admin_listen`).
EXPOSE 8080 9901
ENTRYPOINT ["portcullis"]
CMD ["run", "--config", "/etc/portcullis/portcullis.yaml"]
