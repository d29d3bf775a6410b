package registry_test

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/registry"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// FuzzLoadFile feeds arbitrary endpoints files to Registry.LoadFile (the
// controller's --registry file, written by the simulator). LoadFile
// succeeds exactly when the file parses, its authorities are valid and
// distinct once normalised, and no authority lists an address twice.
// Then the registry holds exactly the file's authorities, each with its
// endpoints sorted by address, and loading the file again changes
// nothing. On failure the error says it is from the registry and the
// previous table is untouched.
func FuzzLoadFile(f *testing.F) {
	for _, s := range []string{
		"# Skiff local registry, written by simulator/local: AUTHORITY ENDPOINT [ENDPOINT ...]\n" +
			"echo.default.svc.cluster.local:80 127.0.0.3:4143;meshed;id=spiffe://cluster.local/ns/default/sa/echo;proto=http1;label=pod=echo-1;label=zone=a 127.0.0.2:4143;meshed;weight=2\n" +
			"db.default.svc.cluster.local:5432\n",
		"web:80 10.0.0.1:80 10.0.0.1:80\n",          // an address twice
		"web:80 10.0.0.1:80\nweb.:80 10.0.0.2:80\n", // one authority twice once normalised
		"web:80 10.0.0.1:80\nWEB:080 10.0.0.2:80\n",
		"web..:80 10.0.0.1:80\n",
		"a/b:80 10.0.0.1:80\n",
		"[fd00::1]:80 [fd00::2]:8080;proto=h2c\n",
		"web:80 10.0.0.1\n",
		"",
	} {
		f.Add(s)
	}
	previous := discovery.Snapshot{Authority: "before.default.svc:80", Exists: true,
		Endpoints: []discovery.Endpoint{{Addr: "127.0.0.9:80", Weight: 7}}}
	f.Fuzz(func(t *testing.T, text string) {
		var r registry.Registry
		if err := r.Set(previous.Authority, previous.Endpoints); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "endpoints.txt")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		want, wantOK := expectTable(text)
		err := r.LoadFile(path)
		if (err == nil) != wantOK {
			t.Fatalf("LoadFile: %v; want success %v", err, wantOK)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "registry: ") {
				t.Fatalf("error %q does not say it is from the registry", err)
			}
			if got, _ := r.Snapshot(previous.Authority); !got.Equal(previous) || r.Entries() != 1 {
				t.Fatalf("a failed load changed the table: %+v, %d entries", got, r.Entries())
			}
			return
		}
		check := func(when string) {
			if r.Entries() != len(want) {
				t.Fatalf("%s: %d entries, want the file's %d authorities", when, r.Entries(), len(want))
			}
			for auth, snap := range want {
				if got, err := r.Snapshot(auth); err != nil || !got.Equal(snap) {
					t.Fatalf("%s: Snapshot(%q) = %+v, %v; want %+v", when, auth, got, err, snap)
				}
			}
		}
		check("loaded")
		if err := r.LoadFile(path); err != nil {
			t.Fatalf("loading the same file again: %v", err)
		}
		check("loaded twice")
	})
}

// expectTable is what the registry should hold after loading text, by
// normalised authority, and whether loading should succeed at all.
func expectTable(text string) (map[string]discovery.Snapshot, bool) {
	table, err := endpoint.ParseStatic("endpoints.txt", []byte(text))
	if err != nil {
		return nil, false
	}
	out := make(map[string]discovery.Snapshot, len(table))
	for auth, eps := range table {
		norm, err := discovery.NormalizeAuthority(auth)
		if err != nil {
			return nil, false
		}
		if _, dup := out[norm]; dup {
			return nil, false
		}
		snap := discovery.Snapshot{Authority: norm, Exists: true}
		seen := map[string]bool{}
		for _, ep := range eps {
			if seen[ep.Addr] {
				return nil, false
			}
			seen[ep.Addr] = true
			snap.Endpoints = append(snap.Endpoints, registry.FromProxy(ep))
		}
		slices.SortFunc(snap.Endpoints, func(a, b discovery.Endpoint) int { return cmp.Compare(a.Addr, b.Addr) })
		out[norm] = snap
	}
	return out, true
}
