package ca

import (
	"context"
	"errors"
)

// Reasons a certification request is rejected. Every error [CA.Certify]
// returns for a bad request is a [*RejectError] matching exactly one of
// them with errors.Is; [ClassOf] maps them to the classes the gRPC layer
// turns into status codes.
var (
	// ErrInvalidID: the requested identity is not a valid SPIFFE ID, or
	// belongs to another trust domain. Class InvalidArgument.
	ErrInvalidID = errors.New("invalid requested identity")
	// ErrMalformedCSR: the CSR bytes do not parse as a PKCS #10 request,
	// or exceed the size limit. Class InvalidArgument.
	ErrMalformedCSR = errors.New("malformed CSR")
	// ErrCSRSignature: the CSR's self-signature does not verify, so the
	// requester has not proved possession of the key. Class
	// InvalidArgument.
	ErrCSRSignature = errors.New("bad CSR signature")
	// ErrUnsupportedKey: the CSR's public key is not ECDSA P-256. Class
	// InvalidArgument.
	ErrUnsupportedKey = errors.New("unsupported key")
	// ErrCSRNames: the CSR's subject alternative names are not exactly one
	// SPIFFE ID URI (plus DNS names and IPs when the CA allows them).
	// Class InvalidArgument.
	ErrCSRNames = errors.New("unacceptable CSR names")
	// ErrIdentityMismatch: the CSR, the requested identity and the identity
	// the token proves do not all agree. Class PermissionDenied.
	ErrIdentityMismatch = errors.New("identity mismatch")
	// ErrInvalidToken: the token is malformed, forged, or not accepted by
	// the [TokenVerifier]. Class Unauthenticated.
	ErrInvalidToken = errors.New("invalid token")
	// ErrExpiredToken: the token was valid but has expired. Class
	// Unauthenticated.
	ErrExpiredToken = errors.New("expired token")
	// ErrVerifierUnavailable: the [TokenVerifier] could not reach its
	// backend (e.g. the Kubernetes API for TokenReview); the request may
	// succeed later. Verifiers wrap it for transient failures. Class
	// Unavailable.
	ErrVerifierUnavailable = errors.New("token verifier unavailable")
	// ErrIssuerExpired: the CA's issuer (or its chain) has expired, so no
	// certificate can be issued until an operator installs a new issuer.
	// Class FailedPrecondition.
	ErrIssuerExpired = errors.New("issuer expired")
)

// RejectError is a rejected certification request. It matches its Reason
// (one of the Err* values of this package) and Err with errors.Is.
type RejectError struct {
	// Reason is the Err* sentinel naming what was wrong.
	Reason error
	// Detail says which value was wrong and, where it helps, what to do.
	Detail string
	// Err is the underlying cause, or nil.
	Err error
}

func (e *RejectError) Error() string {
	if e.Err != nil && errors.Is(e.Err, e.Reason) {
		// The cause already names the reason (a TokenVerifier's error).
		return "certify: " + e.Detail + ": " + e.Err.Error()
	}
	msg := "certify: " + e.Reason.Error() + ": " + e.Detail
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns Reason and Err, so errors.Is matches both.
func (e *RejectError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Err}
}

func reject(reason error, err error, detail string) *RejectError {
	return &RejectError{Reason: reason, Detail: detail, Err: err}
}

// Class groups errors by what the caller should do about them; the gRPC
// layer maps each class to the status code of the same name.
type Class int

// Error classes, named after the gRPC status codes they map to.
const (
	// ClassInternal: an unexpected failure of the CA itself (nil error
	// maps to it too; callers check for nil first).
	ClassInternal Class = iota
	// ClassInvalidArgument: the request is malformed; retrying it
	// unchanged will fail again.
	ClassInvalidArgument
	// ClassPermissionDenied: the caller is authenticated but asked for an
	// identity it does not hold.
	ClassPermissionDenied
	// ClassUnauthenticated: the token is missing, invalid or expired.
	ClassUnauthenticated
	// ClassUnavailable: a dependency is down; retry with backoff.
	ClassUnavailable
	// ClassFailedPrecondition: the CA is misconfigured (expired issuer);
	// an operator must act.
	ClassFailedPrecondition
	// ClassCanceled: the request's context was canceled.
	ClassCanceled
	// ClassDeadlineExceeded: the request's context deadline passed.
	ClassDeadlineExceeded
)

var classNames = [...]string{"Internal", "InvalidArgument", "PermissionDenied", "Unauthenticated", "Unavailable", "FailedPrecondition", "Canceled", "DeadlineExceeded"}

func (c Class) String() string {
	if c < 0 || int(c) >= len(classNames) {
		return "Class(?)"
	}
	return classNames[c]
}

// ClassOf classifies an error returned by [CA.Certify].
func ClassOf(err error) Class {
	switch {
	case errors.Is(err, ErrInvalidID), errors.Is(err, ErrMalformedCSR), errors.Is(err, ErrCSRSignature),
		errors.Is(err, ErrUnsupportedKey), errors.Is(err, ErrCSRNames):
		return ClassInvalidArgument
	case errors.Is(err, ErrIdentityMismatch):
		return ClassPermissionDenied
	case errors.Is(err, ErrInvalidToken), errors.Is(err, ErrExpiredToken):
		return ClassUnauthenticated
	case errors.Is(err, ErrVerifierUnavailable):
		return ClassUnavailable
	case errors.Is(err, ErrIssuerExpired):
		return ClassFailedPrecondition
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return ClassDeadlineExceeded
	}
	return ClassInternal
}
