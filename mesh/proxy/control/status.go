package control

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
const (
	CodeOK                 = 0
	CodeCanceled           = 1
	CodeUnknown            = 2
	CodeInvalidArgument    = 3
	CodeDeadlineExceeded   = 4
	CodeNotFound           = 5
	CodeAlreadyExists      = 6
	CodePermissionDenied   = 7
	CodeResourceExhausted  = 8
	CodeFailedPrecondition = 9
	CodeAborted            = 10
	CodeOutOfRange         = 11
	CodeUnimplemented      = 12
	CodeInternal           = 13
	CodeUnavailable        = 14
	CodeDataLoss           = 15
	CodeUnauthenticated    = 16
)

var codeNames = [...]string{
	"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
	"Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
	"Unauthenticated",
}

// CodeName returns the name of a gRPC status code ("NotFound"), or
// "Code(N)" for a code outside the known range.
func CodeName(code int) string {
	if code >= 0 && code < len(codeNames) {
		return codeNames[code]
	}
	return "Code(" + strconv.Itoa(code) + ")"
}

// Status is the error of a failed call: a status the server sent
// (grpc-status and grpc-message), or one this client assigned to a
// transport failure (Unavailable), a cancelled context (Canceled,
// DeadlineExceeded) or a response that breaks the protocol (Internal,
// ResourceExhausted for an oversized message). For the client-assigned
// ones, errors.Unwrap gives the underlying error.
type Status struct {
	// Code is the gRPC status code, one of the Code constants; never
	// CodeOK in an error.
	Code int
	// Message is the status message, decoded from its percent-encoding.
	Message string

	cause error
}

// Error formats the status as grpc-go does.
func (s *Status) Error() string {
	return fmt.Sprintf("rpc error: code = %s desc = %s", CodeName(s.Code), s.Message)
}

// Unwrap returns the error the client turned into this status, or nil
// for a status the server sent.
func (s *Status) Unwrap() error { return s.cause }

// StatusCode returns the gRPC code of err: CodeOK for nil, the Code of
// the first *Status in err's chain, CodeCanceled or CodeDeadlineExceeded
// for context errors, CodeUnknown otherwise.
func StatusCode(err error) int {
	if err == nil {
		return CodeOK
	}
	if s, ok := errors.AsType[*Status](err); ok {
		return s.Code
	}
	switch {
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded
	}
	return CodeUnknown
}

func statusf(code int, format string, args ...any) *Status {
	return &Status{Code: code, Message: fmt.Sprintf(format, args...)}
}

// transportError turns an error of the HTTP/2 layer into a Status:
// the context's own error when ctx is done, Unavailable otherwise.
func transportError(ctx context.Context, what string, err error) *Status {
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); ok && cerr == nil && !time.Now().Before(dl) {
		// The deadline has passed but the context's timer has not fired
		// yet (a busy machine): the server, which got the same deadline in
		// grpc-timeout, may have reset the stream first.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil {
		code := CodeCanceled
		if errors.Is(cerr, context.DeadlineExceeded) {
			code = CodeDeadlineExceeded
		}
		return &Status{Code: code, Message: what + ": " + cerr.Error(), cause: cerr}
	}
	return &Status{Code: CodeUnavailable, Message: what + ": " + err.Error(), cause: err}
}
