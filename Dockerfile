# One image with every Herald binary: herald-operator (the default entrypoint), herald-producer
# and herald-consumer (the operator starts them by name). One build compiles librdkafka once and
# the three share every layer.
#
#   docker build -t ghcr.io/herald-dev/herald:0.1.0 .

# The full (buildpack-deps) variant already has what the bundled librdkafka build needs: a C
# toolchain, make, perl, and the zlib and OpenSSL headers (TLS and SASL SCRAM to the brokers).
FROM docker.io/library/rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p herald-producer -p herald-consumer -p herald-operator \
 && mkdir -p /out/bin /out/lib \
 && cp target/release/herald-producer target/release/herald-consumer target/release/herald-operator /out/bin/ \
 && cp "/lib/$(uname -m)-linux-gnu/libz.so.1" "/usr/lib/$(uname -m)-linux-gnu/libssl.so.3" \
      "/usr/lib/$(uname -m)-linux-gnu/libcrypto.so.3" /out/lib/

# glibc and libgcc, no shell, no package manager; runs as uid 65532. libz and the build's
# OpenSSL come along, so the binaries run against the libraries they were built with.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/lib/ /usr/lib/herald/
COPY --from=build /out/bin/ /usr/local/bin/
ENV LD_LIBRARY_PATH=/usr/lib/herald
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/herald-operator"]
CMD ["run"]
