//go:build tools

// Package kube1_30 pins the control plane of another Kubernetes version (`make test-versions`,
// build.sh with TOKENWARDEN_KUBE_MODULE=kube-v1.30) so `go mod tidy` keeps its dependencies.
package kube1_30

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
