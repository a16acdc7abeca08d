// Package dockertest holds the container test (docker_test.go): it builds
// the image of the root Dockerfile around a static binary, runs the
// three-node cluster of deploy/compose.yaml on random loopback ports, and
// talks to it over the HTTP API. It skips, saying so, where no Docker
// engine answers. Run it with `make docker-test`; the package has no code
// of its own.
package dockertest
