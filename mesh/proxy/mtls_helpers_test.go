package proxy

import (
	"crypto/tls"
	"net"

	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

func tlsClient(c net.Conn, m *certs.Manager, expect spiffe.ID) *tls.Conn {
	cfg := m.ClientTLSConfig(expect)
	cfg.NextProtos = []string{"http/1.1"}
	return tls.Client(c, cfg)
}
