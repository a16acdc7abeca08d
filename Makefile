# Regenerate the protobuf and gRPC code (needs protoc, protoc-gen-go, protoc-gen-go-grpc).
.PHONY: proto test soak
proto:
	protoc --go_out=. --go_opt=module=github.com/caspaxos/caspaxos \
		--go-grpc_out=. --go-grpc_opt=module=github.com/caspaxos/caspaxos \
		api/caspaxos.proto transport/peer.proto

# The test command CI runs (.ci/run). The race-detector pass runs a smaller
# simulator sweep; the second pass runs the full 200-seed sweep without it.
test:
	go vet ./...
	go test -race ./...
	go test -count=1 ./internal/sim

# Opt-in long simulator soak (20,000 seeds); see internal/sim/doc.go.
soak:
	go test -count=1 -timeout 0 ./internal/sim -run TestSweep -soak 20000
