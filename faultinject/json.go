package faultinject

import "encoding/json"

// jsonOf turns YAML-decoded params into JSON for types that decode JSON.
func jsonOf(params map[string]any) ([]byte, error) { return json.Marshal(params) }
