package certs

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"sync"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// maxVerified bounds the verified-chain cache. A proxy talks to a few
// hundred peers at most, each with one certificate at a time (two around a
// renewal); when the cache fills up it is emptied and refilled.
const maxVerified = 4096

// verifyCache remembers chains already verified under one bundle, so that a
// new connection from a known peer costs no chain verification (two ECDSA
// verifications, a quarter of a handshake's CPU). It is sound because:
// the key is the exact DER of every presented certificate plus the key
// usage; the cache belongs to one bundle and is replaced with it; the
// validity window is rechecked on every hit; and crypto/tls verifies the
// peer's CertificateVerify signature with the leaf's key on every handshake
// whatever this callback decides, so a replayed chain without its key fails.
type verifyCache struct {
	bundle *spiffe.Bundle

	anchorsNotBefore, anchorsNotAfter time.Time

	mu sync.RWMutex
	m  map[[32]byte]verified
}

type verified struct {
	id                  spiffe.ID
	notBefore, notAfter time.Time // intersection of the validity windows of the chain and the anchors
}

func newVerifyCache(b *spiffe.Bundle) *verifyCache {
	vc := &verifyCache{bundle: b, m: make(map[[32]byte]verified)}
	// Which anchor a chain ends at is not recorded, so every entry is
	// bounded by the earliest-expiring anchor: conservative, an entry just
	// expires early and is verified again.
	for _, a := range b.Anchors() {
		if vc.anchorsNotBefore.IsZero() || a.NotBefore.After(vc.anchorsNotBefore) {
			vc.anchorsNotBefore = a.NotBefore
		}
		if vc.anchorsNotAfter.IsZero() || a.NotAfter.Before(vc.anchorsNotAfter) {
			vc.anchorsNotAfter = a.NotAfter
		}
	}
	return vc
}

// chainKey hashes the usage and each certificate's DER, length-prefixed.
func chainKey(chain []*x509.Certificate, usage x509.ExtKeyUsage) [32]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(usage))
	h.Write(n[:])
	for _, c := range chain {
		if c == nil {
			continue
		}
		binary.BigEndian.PutUint64(n[:], uint64(len(c.Raw)))
		h.Write(n[:])
		h.Write(c.Raw)
	}
	var key [32]byte
	h.Sum(key[:0])
	return key
}

func (vc *verifyCache) get(key [32]byte, now time.Time) (spiffe.ID, bool) {
	vc.mu.RLock()
	v, ok := vc.m[key]
	vc.mu.RUnlock()
	if !ok || now.Before(v.notBefore) || now.After(v.notAfter) {
		return spiffe.ID{}, false // a miss, or out of its window: verify in full for the precise error
	}
	return v.id, true
}

func (vc *verifyCache) put(key [32]byte, id spiffe.ID, chain []*x509.Certificate) {
	v := verified{id: id, notBefore: vc.anchorsNotBefore, notAfter: vc.anchorsNotAfter}
	for _, c := range chain {
		if c == nil {
			continue
		}
		if c.NotBefore.After(v.notBefore) {
			v.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(v.notAfter) {
			v.notAfter = c.NotAfter
		}
	}
	vc.mu.Lock()
	if len(vc.m) >= maxVerified {
		clear(vc.m)
	}
	vc.m[key] = v
	vc.mu.Unlock()
}
