//go:build tools

// Package kube pins the commands this module builds so `go mod tidy` keeps their dependencies:
// the control plane, and the node (kubelet, kube-scheduler) that `make node-up` joins to it.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
