package local

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/faultinject"
)

// fakePodNet records what the pod's network faults ask of the network.
type fakePodNet struct {
	im      faultinject.Impairment // in force
	impairs int
	down    bool
}

func (f *fakePodNet) Addr() netip.Addr            { return netip.MustParseAddr("10.248.9.2") }
func (f *fakePodNet) Wrap(argv []string) []string { return argv }
func (f *fakePodNet) Do(fn func() error) error    { return fn() }
func (f *fakePodNet) Partition(context.Context, []netip.Addr) (func(context.Context) error, error) {
	return func(context.Context) error { return nil }, nil
}

func (f *fakePodNet) LinkDown(context.Context) (func(context.Context) error, error) {
	f.down = true
	return func(context.Context) error { f.down = false; return nil }, nil
}

func (f *fakePodNet) Impair(_ context.Context, im faultinject.Impairment, _ uint64) (func(context.Context) error, error) {
	if f.im != (faultinject.Impairment{}) {
		panic("impaired twice without a clear")
	}
	f.im = im
	f.impairs++
	return func(context.Context) error { f.im = faultinject.Impairment{}; return nil }, nil
}

// TestNetworkFaultsCompose: a latency fault and a loss fault on one pod
// are both in force; each undo restores what was there before it; heal
// removes everything, and an undo after heal does nothing.
func TestNetworkFaultsCompose(t *testing.T) {
	ctx := context.Background()
	f := &fakePodNet{}
	p := &Pod{env: &Env{seed: 1}, name: "echo-0", net: f, log: slog.New(slog.DiscardHandler)}

	undoLatency, err := p.Impair(ctx, faultinject.Impairment{Latency: 20e6, Jitter: 5e6})
	if err != nil {
		t.Fatal(err)
	}
	undoLoss, err := p.Impair(ctx, faultinject.Impairment{Loss: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if want := (faultinject.Impairment{Latency: 20e6, Jitter: 5e6, Loss: 0.1}); f.im != want {
		t.Fatalf("both faults: %+v, want %+v", f.im, want)
	}
	if err := undoLoss(ctx); err != nil {
		t.Fatal(err)
	}
	if want := (faultinject.Impairment{Latency: 20e6, Jitter: 5e6}); f.im != want {
		t.Fatalf("loss undone: %+v, want %+v", f.im, want)
	}
	undoDown, err := p.LinkDown(ctx)
	if err != nil || !f.down {
		t.Fatalf("link down: %v (down %v)", err, f.down)
	}
	if err := p.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if f.im != (faultinject.Impairment{}) || f.down {
		t.Fatalf("after heal: impairment %+v, link down %v", f.im, f.down)
	}
	f.down = true // a later link_down by someone else must not be undone by a stale undo
	if err := undoDown(ctx); err != nil || !f.down {
		t.Errorf("undo after heal: %v, and it touched the link (down %v)", err, f.down)
	}
	_ = undoLatency
}

// TestNetworkFaultsNeedANetwork: on loopback the network faults say to use
// --env netns.
func TestNetworkFaultsNeedANetwork(t *testing.T) {
	p := &Pod{env: &Env{}, name: "echo-0", log: slog.New(slog.DiscardHandler)}
	if _, err := p.LinkDown(context.Background()); err == nil {
		t.Fatal("link down on loopback worked")
	} else if want := "--env netns"; !strings.Contains(err.Error(), want) {
		t.Errorf("%v does not say %q", err, want)
	}
}
