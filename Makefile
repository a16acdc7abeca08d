# Regenerate the protobuf and gRPC code (needs protoc, protoc-gen-go, protoc-gen-go-grpc).
.PHONY: proto test soak chaos-soak compat docker-test kube-test image fuzz fuzz-short
proto:
	protoc --go_out=. --go_opt=module=github.com/caspaxos/caspaxos \
		--go-grpc_out=. --go-grpc_opt=module=github.com/caspaxos/caspaxos \
		api/caspaxos.proto transport/peer.proto transport/admin.proto transport/gc.proto transport/watch.proto \
		server/etcdapi/etcdpb/mvccpb/kv.proto server/etcdapi/etcdpb/rpc.proto \
		server/etcdapi/etcdpb/v3lockpb/v3lock.proto server/etcdapi/etcdpb/v3electionpb/v3election.proto

# The test command CI runs (.ci/run). The race-detector pass runs a smaller
# simulator sweep; the second pass runs the full 200-seed sweep without it,
# and the listing memory test, which the race detector would distort (it
# skips itself under -race).
# The container test is left out of the race pass (-skip: it only drives
# docker and HTTP) and runs once, through docker-test; fuzz-short ends it.
test:
	go vet ./...
	go test -race -skip '^TestCompose$$' ./...
	go test -count=1 ./internal/sim
	go test -count=1 -run '^TestListingMemoryIsBounded$$' ./server/daemon
	$(MAKE) --no-print-directory docker-test
	$(MAKE) --no-print-directory kube-test
	$(MAKE) --no-print-directory compat
	$(MAKE) --no-print-directory fuzz-short

# The compatibility tests (compat/, a Go module of its own): etcd's clientv3
# and etcdctl against a 3-node cluster's etcd API (docs/etcd.md). Installs
# etcdctl with apt-get where it is missing (scripts/compat.sh).
compat:
	scripts/compat.sh

# The container test (internal/dockertest): builds the image, runs the
# deploy/compose.yaml cluster, then deploy/compose-tls.yaml, on random
# loopback ports, and tears each down. It
# says "no Docker engine: container test skipped" where no engine answers.
docker-test:
	go test -count=1 -v -run '^TestCompose$$' ./internal/dockertest

# The Kubernetes manifests' test (deploy/kubernetes/check, a module of its
# own for its YAML parser): every flag, port, probe and volume checked
# against the binary's `serve --help`.
kube-test:
	cd deploy/kubernetes/check && go vet ./... && go test -count=1 ./...

# The container image (Dockerfile, docs/docker.md): a static binary built
# here, in a scratch image. IMAGE=name:tag to change the tag.
IMAGE ?= caspaxos:dev
image:
	ctx=$$(mktemp -d) && trap 'rm -rf "$$ctx"' EXIT && mkdir "$$ctx/data" && \
	CGO_ENABLED=0 go build -trimpath -o "$$ctx/caspaxos" ./cmd/caspaxos && \
	docker build -f Dockerfile -t $(IMAGE) "$$ctx"

# Opt-in long simulator soak (20,000 seeds); see internal/sim/doc.go.
soak:
	go test -count=1 -timeout 0 ./internal/sim -run TestSoak -soak 20000

# Opt-in long soak of the real components under faults (internal/chaos):
# CHAOS_SEEDS seeds from CHAOS_FROM; a failure prints its replay command.
CHAOS_SEEDS ?= 200
CHAOS_FROM ?= 1000
chaos-soak:
	go test -count=1 -timeout 0 ./internal/chaos -run 'TestChaos$$' -chaos-seeds $(CHAOS_SEEDS) -chaos-from $(CHAOS_FROM) -v

# Native Go fuzz targets (func FuzzX; scripts/fuzz.sh finds them): plain
# `go test` replays their seeds and testdata/fuzz; these fuzz each target
# for a while. fuzz-short is the pass of `make test`; for a longer run:
# make fuzz FUZZTIME=5m (per target).
FUZZTIME ?= 1m
FUZZTIME_SHORT ?= 2s
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh
fuzz-short:
	FUZZTIME=$(FUZZTIME_SHORT) scripts/fuzz.sh
