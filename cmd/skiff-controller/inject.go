package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-mesh/skiff/internal/logging"
	"github.com/skiff-mesh/skiff/mesh/control/admin"
	"github.com/skiff-mesh/skiff/mesh/control/injector"
	"github.com/skiff-mesh/skiff/mesh/inject"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
)

// injectOptions are the flags of `skiff-controller inject`, the
// sidecar-injection webhook: it serves HTTPS, not gRPC, so it has flags
// of its own rather than a services entry.
type injectOptions struct {
	addr, adminAddr         string
	tlsCertFile, tlsKeyFile string
	kubeconfig              string
	noNamespaces            bool
	trustAnchors            string
	anchorsInterval         time.Duration
	maxBodyBytes            int64
	shutdownGrace           time.Duration
	inject                  inject.Config
	log                     logging.Options
}

func (o *injectOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.addr, "addr", fmt.Sprintf(":%d", kubemeta.WebhookPort), "HTTPS listen address of the webhook ("+kubemeta.WebhookPath+")")
	fs.StringVar(&o.adminAddr, "admin-addr", defaultAdminAddr, "admin listen address: /live /ready /metrics")
	fs.StringVar(&o.tlsCertFile, "tls-cert-file", "", "PEM file: the webhook's serving certificate (then its chain), for the name the API server calls it by, re-read when it changes (required)")
	fs.StringVar(&o.tlsKeyFile, "tls-key-file", "", "PEM file: the key of --tls-cert-file (required)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file, to read the namespaces' skiff.dev/inject annotation (empty: $KUBECONFIG, ~/.kube/config, then in-cluster)")
	fs.StringVar(&o.trustAnchors, "trust-anchors", "", "PEM file: the trust anchors, copied as ConfigMap "+kubemeta.ConfigMap+" into the namespace of every pod injected (and every enabled namespace), re-read when it changes (empty: no copies; the ConfigMap must be there already)")
	fs.DurationVar(&o.anchorsInterval, "trust-anchors-reload-interval", injector.DefaultAnchorsInterval, "how often --trust-anchors is re-read, so an anchor rotation reaches every copy")
	fs.BoolVar(&o.noNamespaces, "no-namespaces", false, "read no namespace: only pods annotated skiff.dev/inject: enabled themselves are injected (no Kubernetes API needed)")
	fs.Int64Var(&o.maxBodyBytes, "max-body-bytes", injector.DefaultMaxBodyBytes, "largest AdmissionReview accepted")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 10*time.Second, "on SIGTERM, how long in-flight reviews may take")
	fs.StringVar(&o.inject.Registry, "registry", kubemeta.DefaultRegistry, "registry of the proxy image injected")
	fs.StringVar(&o.inject.Version, "version", inject.DefaultVersion, "tag of the proxy image injected (and its skiff.dev/proxy-version annotation)")
	fs.StringVar(&o.inject.TrustDomain, "trust-domain", kubemeta.DefaultTrustDomain, "SPIFFE trust domain of the injected proxies' identities")
	o.log.AddFlags(fs)
}

// runInject is `skiff-controller inject`: the webhook on --addr and the
// admin server on --admin-addr, ready once the namespace cache is synced;
// with --trust-anchors, the copies of the anchors ConfigMap kept in step.
func runInject(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("skiff-controller inject", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var o injectOptions
	o.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	}
	log, err := o.log.New(stdout)
	if err != nil {
		return err
	}
	log = log.With("component", "controller", "subcommand", "inject")
	if o.tlsCertFile == "" || o.tlsKeyFile == "" {
		return errors.New("inject needs --tls-cert-file and --tls-key-file: the API server calls webhooks over HTTPS only")
	}
	if o.shutdownGrace <= 0 {
		return fmt.Errorf("--shutdown-grace %v: want a positive duration", o.shutdownGrace)
	}
	cert, err := loadFileCert(o.tlsCertFile, o.tlsKeyFile, log)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := injector.Config{Inject: o.inject, MaxBodyBytes: o.maxBodyBytes, Log: log, Registerer: metrics}
	synced := func() bool { return true }
	var anchors *injector.Anchors
	if o.noNamespaces && o.trustAnchors != "" {
		return errors.New("--trust-anchors copies a ConfigMap through the Kubernetes API: not with --no-namespaces")
	}
	if !o.noNamespaces {
		client, err := kubeClient(o.kubeconfig, log)
		if err != nil {
			return fmt.Errorf("reading namespaces: %w (or --no-namespaces)", err)
		}
		ns := injector.NewKubeNamespaces(ctx, client)
		cfg.Namespaces, synced = ns, ns.HasSynced
		if o.trustAnchors != "" {
			anchors, err = injector.NewAnchors(injector.AnchorsConfig{
				Client: client, File: o.trustAnchors, Namespaces: ns,
				Interval: o.anchorsInterval, Log: log, Registerer: metrics,
			})
			if err != nil {
				return fmt.Errorf("--trust-anchors: %w", err)
			}
			cfg.Anchors = anchors
		}
	}
	h, err := injector.New(cfg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+kubemeta.WebhookPath, h)

	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", o.addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	adminLis, err := lc.Listen(ctx, "tcp", o.adminAddr)
	if err != nil {
		lis.Close()
		return fmt.Errorf("--admin-addr: %w", err)
	}
	adm := admin.New(metrics)
	srv := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert.get(), nil },
		},
		// The API server waits 10 s at most (timeoutSeconds); a review
		// is read and answered well within.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	adminSrv := &http.Server{Handler: adm, ReadHeaderTimeout: 10 * time.Second}
	log.Info("listening", "addr", lis.Addr().String(), "path", kubemeta.WebhookPath, "admin_addr", adminLis.Addr().String(),
		"proxy_image", o.inject.ProxyImage(), "namespaces", !o.noNamespaces)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.ServeTLS(lis, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("webhook server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := adminSrv.Serve(adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if !cache.WaitForCacheSync(gctx.Done(), synced) {
			return nil
		}
		adm.SetReady(true)
		log.Info("ready")
		if anchors != nil {
			return anchors.Run(gctx) // the enabled namespaces are known now
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		adm.SetReady(false)
		log.Info("shutting down", "grace", o.shutdownGrace)
		sctx, scancel := context.WithTimeout(context.Background(), o.shutdownGrace)
		defer scancel()
		return errors.Join(srv.Shutdown(sctx), adminSrv.Shutdown(sctx))
	})
	err = g.Wait()
	log.Info("stopped", "err", err)
	return err
}
