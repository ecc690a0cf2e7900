// Command roam is the one binary of the roam toolkit: app nodes, the
// balancer, the demo and the benchmark. Each subcommand lives in its own file.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "roam:", err)
		os.Exit(1)
	}
}

// newRootCmd builds the command tree. Subcommands register themselves in
// subcommands, one file each, so that no two features edit the same file.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "roam",
		Short:         "Keep users logged in while a web application is scaled out",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, f := range subcommands {
		root.AddCommand(f())
	}
	return root
}

// subcommands holds the constructors of roam's subcommands; each file adds
// its own in an init function.
var subcommands []func() *cobra.Command
