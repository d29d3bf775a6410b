package procfs

import (
	"os"
	"runtime"
	"testing"
)

func TestReadSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("procfs is Linux only")
	}
	st, err := ReadPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.VmRSSMB <= 0 || st.VmHWMMB < st.VmRSSMB {
		t.Fatalf("implausible reading %+v: want 0 < VmRSS <= VmHWM", st)
	}
	// Burn some CPU: the reading must not go backwards.
	x := 0
	for i := range 50_000_000 {
		x += i
	}
	st2, err := Read("self")
	if err != nil || st2.CPUSeconds < st.CPUSeconds {
		t.Fatalf("CPU went from %v to %v (%v) %d", st.CPUSeconds, st2.CPUSeconds, err, x)
	}
}

func TestReadMissing(t *testing.T) {
	if _, err := Read("999999999"); err == nil {
		t.Fatal("want an error for a missing process")
	}
}
