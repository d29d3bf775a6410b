package install

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// Output formats of [Write], kubectl's -o values.
const (
	FormatYAML = "yaml"
	FormatJSON = "json"
)

// Write encodes objs for kubectl apply -f -: format "yaml" (or "") is a
// stream of documents separated by ---, after header (comment lines,
// each written with a leading "# "); "json" is one v1 List holding them,
// without the header. Keys are sorted and empty status fields dropped, so
// the same objects always give the same bytes.
func Write(w io.Writer, objs []runtime.Object, format string, header ...string) error {
	maps := make([]map[string]any, 0, len(objs))
	for _, o := range objs {
		m, err := plain(o)
		if err != nil {
			return err
		}
		maps = append(maps, m)
	}
	var buf bytes.Buffer
	switch format {
	case FormatYAML, "":
		for _, h := range header {
			fmt.Fprintf(&buf, "# %s\n", h)
		}
		for _, m := range maps {
			b, err := yaml.Marshal(m)
			if err != nil {
				return err
			}
			buf.WriteString("---\n")
			buf.Write(b)
		}
	case FormatJSON:
		items := make([]any, len(maps))
		for i, m := range maps {
			items[i] = m
		}
		b, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "  ")
		if err != nil {
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	default:
		return fmt.Errorf("output format %q: want yaml or json", format)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// plain turns obj into the map kubectl would read, without the status
// an install never sets.
func plain(obj runtime.Object) (map[string]any, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp") // null on typed objects before apimachinery's omitzero
	}
	return m, nil
}
