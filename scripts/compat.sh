#!/usr/bin/env bash
# Runs the compatibility tests (compat/, its own Go module): etcd's clientv3
# and the real etcdctl against caspaxos's etcd API, Consul's Go api package
# against its Consul API (compat/consul_test.go). etcdctl comes from
# Debian's etcd-client package: installed here with apt-get where it is
# missing and we are root; where it cannot be, the etcdctl test says so and
# is skipped (clientv3's still runs).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v etcdctl >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "compat: installing etcdctl (etcd-client)"
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-client) >/dev/null ||
			echo "compat: could not install etcd-client: the etcdctl test will be skipped"
	else
		echo "compat: etcdctl missing and apt-get unavailable (or not root): the etcdctl test will be skipped"
	fi
fi
cd compat
go vet ./...
go test -count=1 -v ./...
