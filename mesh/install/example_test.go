package install_test

import (
	"fmt"
	"os"
	"time"

	"github.com/skiff-mesh/skiff/mesh/install"
)

// Render the install and print it as kubectl reads it; Uninstall lists
// the same objects by name.
func Example() {
	objs, err := install.Render(install.Config{Version: "v0.1.0", Now: time.Now})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(objs), "objects")
	if err := install.Write(os.Stdout, install.Uninstall()[:1], install.FormatYAML); err != nil {
		fmt.Println(err)
	}
	// Output:
	// 12 objects
	// ---
	// apiVersion: admissionregistration.k8s.io/v1
	// kind: MutatingWebhookConfiguration
	// metadata:
	//   name: skiff-injector
}
