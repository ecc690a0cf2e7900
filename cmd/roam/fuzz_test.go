package main

import (
	"io"
	"net"
	"strings"
	"testing"

	"github.com/roamsession/roam/demoapp"
)

// FuzzNodeFlags parses arbitrary `roam node` command lines (arguments
// separated by NUL bytes, or by spaces when there are none) and runs the
// checks runNode makes before it opens anything: the logger's format and
// level, the node id, the shutdown timeout, the default cluster address.
// None may panic; each failure names its flag; a command line that passes
// yields a cluster address on the listen host.
func FuzzNodeFlags(f *testing.F) {
	for _, s := range []string{
		"--id n1 --listen 127.0.0.1:9001 --store memory",
		"--id n1 --listen 127.0.0.1:0 --store cluster:backup --cluster-bind 127.0.0.1:7946 --join 127.0.0.2:7946,127.0.0.3:7946",
		"--id=n2 --listen=[::1]:9001 --cluster-advertise 10.0.0.2:7946 --cookie-secure --demo-password x",
		"--id n1 --log-format json --log-level debug --shutdown-timeout 1ns",
		"--id n1 --log-format xml",
		"--id n1 --log-level trace",
		"--id n1 --shutdown-timeout -1s",
		"--id n1 --shutdown-timeout 0",
		"--id " + strings.Repeat("a", 65),
		"--id n/1",
		"--id",
		"--id n1 --listen 9001",
		"--id n1 --listen :9001",
		"--id n1 --join ,,,",
		"--id n1 --unknown",
		"--id\x00n 1\x00--listen\x00 127.0.0.1:1",
		"--id n1 --id n2 --listen 127.0.0.1:1 --listen 127.0.0.2:2",
		"-h",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var args []string
		if strings.Contains(line, "\x00") {
			args = strings.Split(line, "\x00")
		} else {
			args = strings.Fields(line)
		}
		cmd := newNodeCmd()
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		if err := cmd.ParseFlags(args); err != nil {
			return
		}
		fl := cmd.Flags()
		str := func(name string) string {
			v, err := fl.GetString(name)
			if err != nil {
				t.Fatalf("flag --%s: %v", name, err)
			}
			return v
		}
		if _, err := newLogger(io.Discard, str("log-format"), str("log-level")); err != nil {
			if !strings.Contains(err.Error(), "--log-") {
				t.Fatalf("logger error %q names no flag", err)
			}
			return
		}
		if err := demoapp.CheckNodeID(str("id")); err != nil {
			return // runNode wraps it as "--id: …"
		}
		if d, err := fl.GetDuration("shutdown-timeout"); err != nil || d <= 0 {
			return // runNode refuses it, naming --shutdown-timeout
		}
		listen := str("listen")
		bind, err := defaultClusterBind(listen)
		if err != nil {
			if !strings.Contains(err.Error(), "--listen") {
				t.Fatalf("cluster bind error %q does not name --listen", err)
			}
			return
		}
		lh, _, _ := net.SplitHostPort(listen)
		bh, bp, err := net.SplitHostPort(bind)
		if err != nil || bh != lh || bp != defaultClusterPort {
			t.Fatalf("--listen %q gave the default cluster address %q, want %s on the listen host", listen, bind, defaultClusterPort)
		}
		if _, err := fl.GetStringSlice("join"); err != nil {
			t.Fatalf("--join: %v", err)
		}
	})
}
