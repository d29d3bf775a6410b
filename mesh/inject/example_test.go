package inject_test

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/skiff-mesh/skiff/mesh/inject"
)

// Manifests with Config.Inject is skiff inject; with Uninject, skiff
// uninject.
func Example() {
	in := `apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
    - name: web
      image: nginx
`
	cfg := inject.Config{Version: "v1.0.0"}
	var out bytes.Buffer
	reports, err := inject.Manifests(strings.NewReader(in), &out, func(p inject.Pod) (inject.Result, error) {
		return cfg.Inject(p, inject.Manual)
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(reports[0])
	for line := range strings.Lines(out.String()) {
		// The items of spec's lists: containers, initContainers, volumes.
		if strings.HasPrefix(line, "    - name: ") || strings.HasPrefix(line, "      restartPolicy: ") {
			fmt.Print(strings.TrimSpace(line), "\n")
		}
	}

	var back bytes.Buffer
	if _, err := inject.Manifests(&out, &back, func(p inject.Pod) (inject.Result, error) { return inject.Uninject(p), nil }); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("restored:", back.String() == in)
	// Output:
	// document 1 (Pod web): changed
	// - name: web
	// - name: skiff-init
	// - name: skiff-proxy
	// restartPolicy: Always
	// - name: skiff-identity-token
	// - name: skiff-trust-anchors
	// - name: skiff-xtables-lock
	// restored: true
}
