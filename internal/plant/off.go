//go:build !plant

package plant

// Built reports whether this build has planted defects: not this one.
const Built = false

// EnvVar names the environment variable that turns a defect on in a test
// build; a release build ignores it.
const EnvVar = "SKIFF_PLANT"

// On is always false in a release build: every planted branch is dead.
func On(Defect) bool { return false }

// Active is always "" in a release build.
func Active() Defect { return "" }

// Catalogue is empty in a release build.
var Catalogue []Info
