//go:build tools

// Package helm pins helm (`make test` lints and renders charts/tokenwarden; `make test-e2e` installs
// it), built from Go modules like the control plane, so `go mod tidy` keeps its dependencies.
package helm

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
