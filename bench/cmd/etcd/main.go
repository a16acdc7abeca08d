// Command etcd is the etcd server built from the module proxy at the
// version pinned in bench/go.mod, so the benchmark compares against a real
// etcd without a separate install.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
