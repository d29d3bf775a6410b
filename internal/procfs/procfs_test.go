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

func TestReadProportional(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("procfs is Linux only")
	}
	st, err := ReadPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.RssAnonMB <= 0 || st.RssFileMB <= 0 || st.RssAnonMB+st.RssFileMB > st.VmRSSMB+0.01 {
		t.Fatalf("implausible split %+v: want RssAnon and RssFile > 0, their sum <= VmRSS", st)
	}
	p, err := ReadProportional(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// A page counts fully in RSS and at most fully in PSS.
	if p.PssMB <= 0 || p.PssMB > st.VmRSSMB*1.5 || p.PssAnonMB <= 0 || p.PssFileMB < 0 {
		t.Fatalf("implausible PSS %+v beside %+v", p, st)
	}
	if _, err := ReadProportional(999999999); err == nil {
		t.Fatal("want an error for a missing process")
	}
}
