package demo

import (
	"net/url"

	"github.com/skiff-mesh/skiff/faultinject/httpfault"
)

// The fault vocabulary the workload serves is faultinject/httpfault's: the
// names below keep the workload's API whole for its callers, while the
// fault types live with the other faults (faultinject), which do not
// depend on this workload.
type (
	// Behaviour is httpfault.Behaviour: the server-wide fault behaviour.
	Behaviour = httpfault.Behaviour
	// Delays is httpfault.Delays: a latency distribution.
	Delays = httpfault.Delays
	// DelayShare is httpfault.DelayShare.
	DelayShare = httpfault.DelayShare
	// Faults is httpfault.Faults: one request's fault parameters.
	Faults = httpfault.Faults
	// StatusShare is httpfault.StatusShare.
	StatusShare = httpfault.StatusShare
	// ParamError is httpfault.ParamError.
	ParamError = httpfault.ParamError
)

// Constants of httpfault, under the names the workload always had.
const (
	ParamStatus        = httpfault.ParamStatus
	ParamDelay         = httpfault.ParamDelay
	ParamSize          = httpfault.ParamSize
	ParamClose         = httpfault.ParamClose
	MaxSize            = httpfault.MaxSize
	MaxDelay           = httpfault.MaxDelay
	DefaultErrorStatus = httpfault.DefaultErrorStatus
	MaxConcurrentLimit = httpfault.MaxConcurrentLimit
)

// ParseFaults is httpfault.ParseFaults.
func ParseFaults(q url.Values) (Faults, error) { return httpfault.ParseFaults(q) }

// ParseDelays is httpfault.ParseDelays.
func ParseDelays(s string) (Delays, error) { return httpfault.ParseDelays(s) }
