# Regenerate the protobuf and gRPC code (needs protoc, protoc-gen-go, protoc-gen-go-grpc).
.PHONY: proto test soak
proto:
	protoc --go_out=. --go_opt=module=github.com/caspaxos/caspaxos \
		--go-grpc_out=. --go-grpc_opt=module=github.com/caspaxos/caspaxos \
		api/caspaxos.proto transport/peer.proto
