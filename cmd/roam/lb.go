package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/roamsession/roam/lb"
)

func init() { subcommands = append(subcommands, newLBCmd) }

func newLBCmd() *cobra.Command {
	var (
		configPath string
		listen     string
		admin      string
		policy     string
		backends   []string
		secretFile string
		logLevel   string
	)
	cmd := &cobra.Command{
		Use:   "lb",
		Short: "Run the load balancer",
		Long: `Run roam's load balancer in front of app nodes.

Configure it with --config lb.yaml (see docs/lb.md), or with flags for the
quick case; flags given with --config override the file's values.

  roam lb --policy cookie --backend n1=http://127.0.0.1:9001 --backend n2=http://127.0.0.1:9002

SIGHUP re-reads the config file and applies it without dropping
connections; SIGTERM or Ctrl-C drains (in-flight requests get drain_timeout
to finish) and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			if os.Getenv("GOGC") == "" {
				// The balancer's heap is small and short-lived; collecting
				// less often buys about a tenth of its CPU per request.
				debug.SetGCPercent(400)
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			load := func() (*lb.Config, error) {
				cfg := &lb.Config{}
				if configPath != "" {
					data, err := os.ReadFile(configPath)
					if err != nil {
						return nil, err
					}
					if cfg, err = lb.Parse(data); err != nil {
						return nil, fmt.Errorf("%s: %w", configPath, err)
					}
				}
				f := cmd.Flags()
				if f.Changed("listen") || cfg.Listen == "" {
					cfg.Listen = listen
				}
				if f.Changed("admin") || cfg.Admin == "" {
					cfg.Admin = admin
				}
				if f.Changed("policy") {
					cfg.Policy = policy
				}
				if f.Changed("secret-file") {
					cfg.SecretFile, cfg.Secret = secretFile, ""
				}
				if f.Changed("backend") {
					cfg.Backends = nil
					for i, s := range backends {
						id, u, ok := strings.Cut(s, "=")
						if !ok {
							return nil, fmt.Errorf("--backend[%d] %q: want id=url", i, s)
						}
						cfg.Backends = append(cfg.Backends, lb.BackendConfig{ID: id, URL: u})
					}
				}
				cfg.Logger = logger
				if err := cfg.Provision(); err != nil {
					return nil, err
				}
				if err := cfg.Validate(); err != nil {
					return nil, err
				}
				return cfg, nil
			}
			cfg, err := load()
			if err != nil {
				return err
			}
			l, err := lb.New(cfg)
			if err != nil {
				return err
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			ctx := cmd.Context()
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						next, err := load()
						if err == nil {
							err = l.Reload(next)
						}
						if err != nil {
							logger.Error("reload failed; the old configuration stays in force", "err", err)
						}
					}
				}
			}()
			fmt.Fprintf(cmd.OutOrStdout(), "roam lb: traffic on http%s://%s, admin on http://%s (policy %s)\n",
				map[bool]string{true: "s", false: ""}[cfg.TLS.Cert != ""], cfg.Listen, cfg.Admin, cfg.Policy)
			return l.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&configPath, "config", "c", "", "YAML configuration file (docs/lb.md)")
	f.StringVar(&listen, "listen", "127.0.0.1:8080", "traffic address")
	f.StringVar(&admin, "admin", "127.0.0.1:8081", "admin API address (/api/nodes, /metrics, /healthz)")
	f.StringVar(&policy, "policy", "cookie", "round_robin | least_conn | random_two | ip_hash | cookie | hash_cookie | owner")
	f.StringArrayVar(&backends, "backend", nil, "backend as id=url, repeatable")
	f.StringVar(&secretFile, "secret-file", "", "file holding the sticky-cookie secret (shared by all balancers)")
	f.StringVar(&logLevel, "log-level", "info", "debug | info | warn | error")
	return cmd
}
