// Package check holds the test of the Kubernetes manifests in
// deploy/kubernetes (manifest_test.go). It is a module of its own so that
// its YAML parser stays out of the product's go.mod.
package check
