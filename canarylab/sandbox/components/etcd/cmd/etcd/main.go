// Command etcd is the upstream etcd server, built from its published module so
// that the sandbox does not depend on a distribution's (older) package.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
