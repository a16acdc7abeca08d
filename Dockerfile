# A caspaxos node in an empty image: one static binary, nothing else (no
# shell, no libc, no CA certificates; the node needs none of them).
#
# Nothing is compiled inside Docker: the build context is a folder holding a
# binary built on the host with cgo off, and an empty folder `data` that
# becomes the node's data directory (scratch has no RUN, so COPY --chown is
# how /data comes to belong to the unprivileged user). `make image` does it:
#
#   ctx=$(mktemp -d) && mkdir "$ctx/data"
#   CGO_ENABLED=0 go build -trimpath -o "$ctx/caspaxos" ./cmd/caspaxos
#   docker build -f Dockerfile -t caspaxos:dev "$ctx"
#
# Configure a node with CASPAXOS_<FLAG> variables (CASPAXOS_NAME,
# CASPAXOS_PEER_ADDR, CASPAXOS_CLUSTER, ...) or flags after the image name.
# deploy/compose.yaml runs a three-node cluster; see docs/docker.md.
FROM scratch

COPY caspaxos /caspaxos
# A fresh named volume mounted on /data starts as a copy of this folder,
# owner included, so the node can write to it without running as root.
COPY --chown=65532:65532 data /data

# An unprivileged numeric user (there is no /etc/passwd to name it).
USER 65532:65532

# The client API listens on every interface of the container; the peer
# address must be the node's own entry in CASPAXOS_CLUSTER, so it is set per
# node (a name such as n1:7080 resolves to the container's address).
ENV CASPAXOS_DATA_DIR=/data \
    CASPAXOS_CLIENT_ADDR=0.0.0.0:7070

VOLUME /data
# 7070: client API (gRPC, HTTP/JSON, /metrics). 7080: peer transport.
EXPOSE 7070 7080

ENTRYPOINT ["/caspaxos", "serve"]
