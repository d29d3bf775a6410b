package endpoint_test

import (
	"maps"
	"net"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// format writes table in the endpoints-file syntax, as simulator/local
// does, authorities and label keys sorted.
func format(table map[string][]endpoint.Endpoint) string {
	var b strings.Builder
	for _, auth := range slices.Sorted(maps.Keys(table)) {
		b.WriteString(auth)
		for _, ep := range table[auth] {
			b.WriteString(" " + ep.Addr)
			if ep.Meshed {
				b.WriteString(";meshed")
			}
			if ep.Weight != 0 {
				b.WriteString(";weight=" + strconv.FormatUint(uint64(ep.Weight), 10))
			}
			if ep.Identity != "" {
				b.WriteString(";id=" + ep.Identity)
			}
			if ep.Protocol != endpoint.ProtocolUnknown {
				b.WriteString(";proto=" + string(ep.Protocol))
			}
			for _, k := range slices.Sorted(maps.Keys(ep.Labels)) {
				b.WriteString(";label=" + k + "=" + ep.Labels[k])
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// FuzzParseStatic feeds arbitrary endpoints files (the proxy's
// --endpoints-file and --endpoint, the registry's file). An error names
// the file and, past the first line, the line. A table holds lower-case
// authorities without white space or '#', endpoints whose address is
// host:port with a port and whose protocol is one of the known hints, no
// more authorities than lines and no more endpoints than fields; and
// written back in the same syntax it parses to the same table.
func FuzzParseStatic(f *testing.F) {
	for _, s := range []string{
		"",
		"# Skiff local registry, written by simulator/local: AUTHORITY ENDPOINT [ENDPOINT ...]\n",
		"web.shop.svc.cluster.local:80 127.0.0.2:8080;meshed;weight=3;id=spiffe://cluster.local/ns/shop/sa/web;proto=h2c;label=zone=a;label=pod=web-0 127.0.0.3:8080\n",
		"Web:80 10.0.0.1:80 # comment\n  \n db:5432 10.0.0.2:5432;proto=opaque\nempty:80\n",
		"a:1 [fd00::1]:8080;label=k=v=w;label==\r\n",
		"a:1 10.0.0.1:80\nA:1 10.0.0.2:80\n",
		"a:1 10.0.0.1\n",
		"a:1 10.0.0.1:80;weight=-1\n",
		"a:1 10.0.0.1:80;proto=http3\n",
		"a:1 10.0.0.1:80;label=novalue\n",
		"a:1 10.0.0.1:80;colour=blue\n",
		"a:1 10.0.0.1:80;\n",
		"a:1 10.0.0.1:80;weight=4294967296\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		table, err := endpoint.ParseStatic("endpoints.txt", []byte(in))
		if err != nil {
			if !errorPlace.MatchString(err.Error()) {
				t.Fatalf("error %q does not name the file and line", err)
			}
			return
		}
		lines := strings.Count(in, "\n") + 1
		if len(table) > lines {
			t.Fatalf("%d authorities from %d lines", len(table), lines)
		}
		fields := len(strings.Fields(in))
		for auth, eps := range table {
			if auth == "" || auth != strings.ToLower(auth) || strings.ContainsFunc(auth, isSpace) || strings.Contains(auth, "#") {
				t.Fatalf("authority %q", auth)
			}
			if len(eps) > fields {
				t.Fatalf("authority %q: %d endpoints from %d fields", auth, len(eps), fields)
			}
			for _, ep := range eps {
				if _, port, err := net.SplitHostPort(ep.Addr); err != nil || port == "" {
					t.Fatalf("authority %q: address %q is not host:port", auth, ep.Addr)
				}
				switch ep.Protocol {
				case endpoint.ProtocolUnknown, endpoint.ProtocolHTTP1, endpoint.ProtocolH2C, endpoint.ProtocolOpaque:
				default:
					t.Fatalf("authority %q: protocol %q", auth, ep.Protocol)
				}
			}
		}
		text := format(table)
		again, err := endpoint.ParseStatic("again", []byte(text))
		if err != nil {
			t.Fatalf("the table written back does not parse: %v\n%s", err, text)
		}
		if !reflect.DeepEqual(normal(table), normal(again)) {
			t.Fatalf("round trip changed the table:\n%#v\n%#v\nwritten as\n%s", table, again, text)
		}
	})
}

var errorPlace = regexp.MustCompile(`^endpoints\.txt:[0-9]+: `)

func isSpace(r rune) bool { return strings.TrimSpace(string(r)) == "" }

// normal makes empty Labels nil, so that DeepEqual compares content.
func normal(table map[string][]endpoint.Endpoint) map[string][]endpoint.Endpoint {
	out := make(map[string][]endpoint.Endpoint, len(table))
	for auth, eps := range table {
		n := make([]endpoint.Endpoint, len(eps))
		for i, ep := range eps {
			if len(ep.Labels) == 0 {
				ep.Labels = nil
			}
			n[i] = ep
		}
		out[auth] = n
	}
	return out
}
