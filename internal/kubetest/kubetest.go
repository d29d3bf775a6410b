package kubetest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Version is the Kubernetes release the binaries are built from: the
// k8s.io/kubernetes version in ci/kube/go.mod (a test checks that they
// agree), and the key of the cache directory.
const Version = "v1.37.2"

// Environment variables Start reads.
const (
	// EnvBin names a directory holding the three binaries, instead of
	// the cache.
	EnvBin = "SKIFF_KUBE_BIN"
	// EnvCache is the cache's root, as in ci/kube/build.sh; unset means
	// $HOME/.cache/skiff.
	EnvCache = "SKIFF_KUBE_CACHE"
	// EnvRequired set to 1 turns the skip for missing binaries into a
	// failure (make test-kube sets it).
	EnvRequired = "SKIFF_KUBE_REQUIRED"
)

// binaries are what Start runs, as ci/kube/build.sh names them.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager"}

// StartTimeout bounds each wait for a process to become ready. It is a
// failure bound, not an expectation: the API server is ready in about 6 s
// on an idle 2-core machine, and several times that while the machine
// compiles; only a broken start waits this long.
const StartTimeout = 3 * time.Minute

// poll is the period of the waits for a process to become ready.
const poll = 50 * time.Millisecond

// ControlPlane is a running etcd, kube-apiserver and
// kube-controller-manager. Its fields are set by Start and read-only.
type ControlPlane struct {
	// Config is the admin's (system:masters) client configuration.
	Config *rest.Config
	// Client is a clientset for Config.
	Client kubernetes.Interface
	// Kubeconfig is the path of a kubeconfig file for the admin, for
	// tools that read one (e2e-framework, skiff's own commands).
	Kubeconfig string
	// Dir is the control plane's temporary directory: etcd's data, the
	// certificates and keys, and each process's log (NAME.log).
	Dir string

	procs []*proc // in the order they started
}

// BinDir returns the directory holding the binaries: $SKIFF_KUBE_BIN, or
// the cache ci/kube/build.sh fills. It does not check that they exist.
func BinDir() string {
	if d := os.Getenv(EnvBin); d != "" {
		return d
	}
	root := os.Getenv(EnvCache)
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		root = filepath.Join(home, ".cache", "skiff")
	}
	return filepath.Join(root, "k8s-"+Version, "bin")
}

// Available returns nil if the binaries are in BinDir, or an error naming
// the missing one and how to build it.
func Available() error {
	dir := BinDir()
	for _, b := range binaries {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("no %s in %s: build the test control plane with ci/kube/build.sh (about 22 min cold, then cached) or run make test-kube", b, dir)
		}
	}
	return nil
}

// Require skips t, or fails it when SKIFF_KUBE_REQUIRED=1, unless the
// binaries are available.
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv(EnvRequired) == "1" {
			t.Fatalf("kubetest (%s=1): %v", EnvRequired, err)
		}
		t.Skipf("kubetest: %v", err)
	}
}

// Start runs a control plane for t and stops it, removing its files,
// when t ends; it calls Require first. It fails t if a process does not
// start or become ready within StartTimeout, printing its log.
func Start(t testing.TB) *ControlPlane {
	t.Helper()
	Require(t)
	bin := BinDir()
	cp := &ControlPlane{Dir: t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range cp.procs {
				t.Logf("kubetest: the end of %s's log (%s):\n%s", p.name, p.log, p.tail(30))
			}
		}
	})
	// Cleanups run last-in first-out: each process is stopped before the
	// one it depends on, and all of them before the directory is removed.
	run := func(name string, args func(ports []int) []string, nports int, ready func(p *proc, ports []int) error) *proc {
		t.Helper()
		for attempt := 1; ; attempt++ {
			ports, err := freePorts(nports)
			if err != nil {
				t.Fatalf("kubetest: free ports for %s: %v", name, err)
			}
			p, err := startProc(cp.Dir, name, filepath.Join(bin, name), args(ports))
			if err != nil {
				t.Fatalf("kubetest: %v", err)
			}
			err = ready(p, ports)
			if err == nil {
				cp.procs = append(cp.procs, p)
				t.Cleanup(p.stop)
				return p
			}
			p.stop()
			// A kernel-chosen port was released before the process bound
			// it, and someone else took it: choose again.
			if p.addrInUse() && attempt < 3 {
				t.Logf("kubetest: %s lost a port to another process; starting it again", name)
				continue
			}
			t.Fatalf("kubetest: %s: %v", name, err)
		}
	}

	pki, err := newPKI(cp.Dir)
	if err != nil {
		t.Fatalf("kubetest: certificates: %v", err)
	}

	var etcdURL string
	run("etcd", func(ports []int) []string {
		etcdURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		return []string{
			"--name=kubetest",
			"--data-dir=" + filepath.Join(cp.Dir, "etcd"),
			"--listen-client-urls=" + etcdURL,
			"--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=kubetest=" + peer,
			// A test's data need not survive a crash of the machine.
			"--unsafe-no-fsync",
			"--log-level=warn",
		}
	}, 2, func(p *proc, _ []int) error {
		return waitReady("etcd", p, func(ctx context.Context) error {
			return httpOK(ctx, http.DefaultClient, etcdURL+"/health", `"health":"true"`)
		})
	})

	run("kube-apiserver", func(ports []int) []string {
		cp.Config = &rest.Config{
			Host: "https://127.0.0.1:" + strconv.Itoa(ports[0]),
			TLSClientConfig: rest.TLSClientConfig{
				CAData:   []byte(pki.caPEM),
				CertData: pki.adminCertPEM,
				KeyData:  pki.adminK,
			},
			QPS:   100,
			Burst: 200,
		}
		return []string{
			"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[0]),
			// No --advertise-address=127.0.0.1 (design/KUBERNETES.md): the
			// API server picks the host's address.
			"--cert-dir=" + filepath.Join(cp.Dir, "apiserver-certs"),
			"--tls-cert-file=" + pki.servingCert,
			"--tls-private-key-file=" + pki.servingK,
			"--client-ca-file=" + pki.caFile,
			"--service-account-key-file=" + pki.saPub,
			"--service-account-signing-key-file=" + pki.saKey,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--authorization-mode=RBAC",
			// Nothing keeps the kubernetes Service's endpoints but the
			// API server itself, and its address is not reachable here.
			"--endpoint-reconciler-type=none",
			"--service-cluster-ip-range=10.96.0.0/16",
			"--allow-privileged=true",
			"--profiling=false",
		}
	}, 1, func(p *proc, _ []int) error {
		client, err := kubernetes.NewForConfig(cp.Config)
		if err != nil {
			return err
		}
		cp.Client = client
		return waitReady("kube-apiserver /readyz", p, func(ctx context.Context) error {
			_, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			return err
		})
	})

	cp.Kubeconfig = filepath.Join(cp.Dir, "admin.kubeconfig")
	if err := writeKubeconfig(cp.Kubeconfig, cp.Config); err != nil {
		t.Fatalf("kubetest: %v", err)
	}

	run("kube-controller-manager", func([]int) []string {
		return []string{
			"--kubeconfig=" + cp.Kubeconfig,
			"--leader-elect=false",
			// Serve nothing: readiness is seen through the API.
			"--secure-port=0",
			// No kubelet renews the nodes' leases: the node lifecycle
			// controller would mark them NotReady, and their pods not
			// ready, after its grace period.
			"--controllers=*,-node-lifecycle-controller",
			"--service-account-private-key-file=" + pki.saKey,
			"--root-ca-file=" + pki.caFile,
		}
	}, 0, func(p *proc, _ []int) error {
		// The ServiceAccount controller makes each namespace's default
		// ServiceAccount: the controllers are running.
		return waitReady("kube-controller-manager (the default ServiceAccount)", p, func(ctx context.Context) error {
			_, err := cp.Client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
			return err
		})
	})
	return cp
}

// waitReady polls ready until it returns nil, failing early if p exits
// and late, with ready's last error, after StartTimeout.
func waitReady(what string, p *proc, ready func(context.Context) error) error {
	deadline := time.Now().Add(StartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := ready(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if exit := p.exited(); exit != nil {
			return exit
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v; last: %w", what, StartTimeout, err)
		}
		time.Sleep(poll) // polling the process's readiness, not timing it
	}
}

// httpOK GETs url and checks for a 200 whose body contains want.
func httpOK(ctx context.Context, c *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
}

// writeKubeconfig writes cfg's server and admin credentials as a
// kubeconfig file with one context, the current one.
func writeKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "admin", Namespace: metav1.NamespaceDefault}
	kc.CurrentContext = "kubetest"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// ignoreExists turns an AlreadyExists error into nil.
func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
