//go:build tools

// Package tools pins the two binaries build.sh compiles; it is never built.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
