# syntax=docker/dockerfile:1

# tokend container image: a static binary on distroless, running as non-root.
#   docker build --build-arg VERSION=$(git describe --always --dirty) -t tokend .

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first, so editing source does not refetch modules.
COPY go.mod go.sum ./
# verify is a module of its own that go.mod replaces with ./verify.
COPY verify/go.mod verify/go.sum ./verify/
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
# `make build`, as `make dist` builds each release binary: the build flags
# (static, -trimpath, the version stamped in) are the Makefile's alone, so
# the image's binary is the release binary of the same version and
# platform (release_test.go builds both and compares them).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS="$TARGETOS" GOARCH="$TARGETARCH" make build BIN=/out/tokend VERSION="$VERSION" \
 && mkdir -p /out/keys

# distroless/static: CA certificates (rediss://) and tzdata, no shell, no curl.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tokend /usr/local/bin/tokend
# Mount point for JWT_KEYS_DIR, owned by the runtime user so that a fresh
# named volume mounted here is writable by `tokend keys generate|rotate`.
COPY --from=build --chown=65532:65532 /out/keys /keys
USER 65532:65532
EXPOSE 8080
# `tokend healthcheck` GETs http://127.0.0.1:8080/healthz and exits 0 or 1.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["tokend", "healthcheck"]
ENTRYPOINT ["tokend"]
CMD ["serve"]
