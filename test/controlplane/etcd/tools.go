//go:build tools

// Package etcd pins the etcd server command so `go mod tidy` keeps its dependencies.
package etcd

import _ "go.etcd.io/etcd/server/v3"
