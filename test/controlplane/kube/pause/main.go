// Command pause is the sandbox ("pause") container of the test node (test/node): it holds a Pod's
// namespaces open, reaps the zombies of a shared PID namespace, and exits on SIGTERM or SIGINT,
// as registry.k8s.io/pause does. Built from source like everything else here, since the test node
// pulls no images: test/node/node.sh puts it alone in an image from scratch.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
