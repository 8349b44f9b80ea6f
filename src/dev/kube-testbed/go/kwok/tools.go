//go:build tools

// Keeps the kwok command in the module graph so `go mod tidy` keeps its dependencies.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
