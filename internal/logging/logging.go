// Package logging gives every Skiff binary the same --log-level and
// --log-format flags and builds its log/slog logger from them.
package logging

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Options are the logging flags. The zero value logs info and above as text.
type Options struct {
	Level  string // debug, info, warn, error
	Format string // text or json
}

// AddFlags registers --log-level and --log-format on fs.
func (o *Options) AddFlags(fs interface {
	StringVar(p *string, name, value, usage string)
}) {
	fs.StringVar(&o.Level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.Format, "log-format", "text", "log format: text or json")
}

var _ = (*flag.FlagSet)(nil).StringVar // *flag.FlagSet satisfies AddFlags' parameter

// New returns a logger writing to w, or an error naming the bad option.
func (o Options) New(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	switch strings.ToLower(o.Level) {
	case "", "info":
		lvl = slog.LevelInfo
	case "debug":
		lvl = slog.LevelDebug
	case "warn", "warning":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.Level)
	}
	hopts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(o.Format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", o.Format)
	}
}
