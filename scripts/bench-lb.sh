#!/usr/bin/env bash
# bench-lb.sh — roam lb beside HAProxy, nginx and Caddy, in one run, on
# this machine. wrk with 2 threads and 64 keep-alive connections drives
# each proxy in front of the same 3 tiny backends, in two modes:
#
#   round_robin  every proxy round-robins over the 3 backends
#   cookie       sticky by cookie: roam lb cookie, HAProxy "cookie SRV
#                insert", Caddy "lb_policy cookie"; nginx (open source) has
#                no inserted cookie, so it runs "hash $cookie_x consistent",
#                the nearest it has. wrk replays one valid cookie, so every
#                request takes the pinned path.
#
# Every proxy has health checks on, sends X-Forwarded-For, keeps backend
# connections alive, and logs no requests. Ratios are against HAProxy from
# the same run. Results: a Markdown table on stdout and in $OUT.
#
# Usage: scripts/bench-lb.sh [-d seconds] [-r repeats] [-b nginx|go] [-o out.md] [-p proxies]
#   -d  wrk duration per run (default 10); each run is bounded by timeout
#   -r  rounds over all proxies (default 1); the table shows medians, so a
#       neighbour's burst of CPU on a shared machine skews one round only
#   -b  backends: nginx (default; cheapest, so the proxy dominates) or go
#       (lb/internal/testbackend, a Go net/http server)
#   -p  space-separated subset of: roam haproxy nginx caddy stdlib
#       (stdlib: a plain httputil.ReverseProxy, round robin, with the
#       transport tuned to 512 idle connections per host: the baseline a Go
#       proxy starts from; run only when asked for)
#   PROFILE=1 also writes CPU profiles of roam lb next to -o (or /tmp).
#
# Needs: go, wrk, haproxy, nginx (caddy optional: skipped with a note when
# absent). Only loopback addresses are used.
set -euo pipefail

DUR=10
REPEAT=1
BACKENDS=nginx
OUT=""
PROXIES="roam haproxy nginx caddy"
while getopts "d:r:b:o:p:" opt; do
	case $opt in
	d) DUR=$OPTARG ;;
	r) REPEAT=$OPTARG ;;
	b) BACKENDS=$OPTARG ;;
	o) OUT=$OPTARG ;;
	p) PROXIES=$OPTARG ;;
	*) sed -n 2,30p "$0"; exit 2 ;;
	esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/roam-bench-lb.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.2
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

need() { command -v "$1" >/dev/null || { echo "bench-lb: $1 not found" >&2; exit 1; }; }
need go; need wrk; need haproxy; need nginx; need curl
HAVE_CADDY=1
command -v caddy >/dev/null || HAVE_CADDY=0

B1=127.0.0.1:19101 B2=127.0.0.1:19102 B3=127.0.0.1:19103
P=127.0.0.1:18180   # every proxy listens here in turn
A=127.0.0.1:18181   # roam admin

wait_http() { # url [tries]
	for _ in $(seq 1 "${2:-100}"); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "bench-lb: $1 did not answer" >&2
	return 1
}

echo "building roam..." >&2
(cd "$ROOT" && go build -o "$WORK/roam" ./cmd/roam && go build -o "$WORK/testbackend" ./lb/internal/testbackend)

# --- backends --------------------------------------------------------------
if [ "$BACKENDS" = nginx ]; then
	mkdir -p "$WORK/nb"
	cat >"$WORK/nb/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nb/nginx.pid;
error_log $WORK/nb/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_requests 1000000;
	server { listen $B1; location / { add_header X-Roam-Node n1; return 200 "hello from n1\n"; } }
	server { listen $B2; location / { add_header X-Roam-Node n2; return 200 "hello from n2\n"; } }
	server { listen $B3; location / { add_header X-Roam-Node n3; return 200 "hello from n3\n"; } }
}
EOF
	nginx -c "$WORK/nb/nginx.conf" -p "$WORK/nb" &
	PIDS+=($!)
else
	i=0
	for b in $B1 $B2 $B3; do
		i=$((i + 1))
		"$WORK/testbackend" --id "n$i" --listen "$b" >/dev/null 2>&1 &
		PIDS+=($!)
	done
fi
for b in $B1 $B2 $B3; do wait_http "http://$b/healthz"; done

# --- proxy configs -----------------------------------------------------------
roam_conf() { # policy
	cat >"$WORK/roam-$1.yaml" <<EOF
listen: $P
admin: $A
policy: $1
secret: bench-secret-0123456789abcdef
health: {path: /healthz, interval: 1s}
pprof: $([ "${PROFILE:-0}" = 1 ] && echo true || echo false)
backends:
  - {id: n1, url: "http://$B1"}
  - {id: n2, url: "http://$B2"}
  - {id: n3, url: "http://$B3"}
EOF
}
haproxy_conf() { # roundrobin|cookie
	local cookie="" s1="" s2="" s3=""
	if [ "$1" = cookie ]; then
		cookie="    cookie SRV insert indirect nocache"
		s1="cookie n1" s2="cookie n2" s3="cookie n3"
	fi
	cat >"$WORK/haproxy-$1.cfg" <<EOF
global
    maxconn 4000
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    option forwardfor
frontend fe
    bind $P
    default_backend be
backend be
    balance roundrobin
$cookie
    option httpchk GET /healthz
    server n1 $B1 check inter 1s $s1
    server n2 $B2 check inter 1s $s2
    server n3 $B3 check inter 1s $s3
EOF
}
nginx_conf() { # roundrobin|cookie
	local hash=""
	[ "$1" = cookie ] && hash="hash \$cookie_roam_session consistent;"
	mkdir -p "$WORK/np-$1"
	cat >"$WORK/np-$1/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/np-$1/nginx.pid;
error_log $WORK/np-$1/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
	access_log off;
	upstream be {
		$hash
		server $B1 max_fails=1 fail_timeout=1s;
		server $B2 max_fails=1 fail_timeout=1s;
		server $B3 max_fails=1 fail_timeout=1s;
		keepalive 128;
	}
	server {
		listen $P;
		location / {
			proxy_pass http://be;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host \$host;
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
			proxy_next_upstream error timeout;
		}
	}
}
EOF
}
caddy_conf() { # round_robin|cookie
	cat >"$WORK/Caddyfile-$1" <<EOF
{
	admin off
	auto_https off
}
http://$P {
	reverse_proxy $B1 $B2 $B3 {
		lb_policy $1
		health_uri /healthz
		health_interval 1s
	}
}
EOF
}

# --- one measurement -----------------------------------------------------------
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

to_ms() { # wrk latency (850.00us, 1.62ms, 1.02s) -> milliseconds
	awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.2f", v }'
}

cpu_ticks() { # pid... : utime+stime of the processes and their children threads
	local t=0
	for p in "$@"; do
		for q in $p $(pgrep -P "$p" 2>/dev/null || true); do
			[ -r "/proc/$q/stat" ] || continue
			t=$((t + $(awk '{print $14+$15}' "/proc/$q/stat")))
		done
	done
	echo $t
}

measure() { # name mode pid cookie-header
	local name=$1 mode=$2 pid=$3 cookie=${4:-}
	local hdr=()
	[ -n "$cookie" ] && hdr=(-H "Cookie: $cookie")
	wait_http "http://$P/" 200
	# warm up the pools
	timeout 10 wrk -t2 -c64 -d2s "${hdr[@]}" "http://$P/" >/dev/null 2>&1 || true
	local c0 c1 out rps p50 p99 reqs
	local prof="" profpid=""
	if [ "${PROFILE:-0}" = 1 ] && [[ $name == roam* ]]; then
		prof="${OUT:-/tmp/roam-bench-lb}.roam-$mode.pprof"
		curl -s -o "$prof" "http://$A/debug/pprof/profile?seconds=$((DUR - 1))" &
		profpid=$!
	fi
	c0=$(cpu_ticks "$pid")
	out=$(timeout $((DUR + 20)) wrk -t2 -c64 -d"${DUR}s" --latency "${hdr[@]}" "http://$P/" 2>&1)
	c1=$(cpu_ticks "$pid")
	if [ -n "$prof" ]; then
		wait "$profpid" || true
		echo "  profile: $prof" >&2
	fi
	rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
	p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
	local errs
	errs=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<<"$out")
	local hz cpu_us
	hz=$(getconf CLK_TCK)
	cpu_us=$(awk -v d=$((c1 - c0)) -v hz="$hz" -v n="$reqs" 'BEGIN { if (n > 0) printf "%.1f", d / hz * 1e6 / n; else print "?" }')
	printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$name" "$mode" "$rps" "$p50" "$p99" "$cpu_us" "$errs" >>"$RESULTS"
	echo "  $name $mode: $rps req/s, p50 ${p50}ms, p99 ${p99}ms, proxy CPU ${cpu_us}us/req ${errs}" >&2
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; sleep 0.3; }

run_roam() {
	for mode in round_robin cookie; do
		roam_conf $mode
		"$WORK/roam" lb --config "$WORK/roam-$mode.yaml" --log-level warn >"$WORK/roam-$mode.log" 2>&1 &
		local pid=$!
		PIDS+=($pid)
		wait_http "http://$A/healthz"
		local cookie=""
		if [ $mode = cookie ]; then
			cookie=$(curl -s -D - -o /dev/null "http://$P/" | awk -F'[ ;]' 'tolower($1)=="set-cookie:" && $2 ~ /^roam_lb=/ {print $2}')
		fi
		measure "roam lb" $mode $pid "$cookie"
		stop $pid
	done
}
run_haproxy() {
	for mode in roundrobin cookie; do
		haproxy_conf $mode
		haproxy -db -f "$WORK/haproxy-$mode.cfg" >"$WORK/haproxy-$mode.log" 2>&1 &
		local pid=$!
		PIDS+=($pid)
		local cookie=""
		wait_http "http://$P/"
		[ $mode = cookie ] && cookie=$(curl -s -D - -o /dev/null "http://$P/" | awk -F'[ ;]' 'tolower($1)=="set-cookie:" && $2 ~ /^SRV=/ {print $2}')
		measure "HAProxy $(haproxy -v | awk 'NR==1{print $3}')" ${mode/roundrobin/round_robin} $pid "$cookie"
		stop $pid
	done
}
run_nginx() {
	for mode in roundrobin cookie; do
		nginx_conf $mode
		nginx -c "$WORK/np-$mode/nginx.conf" -p "$WORK/np-$mode" &
		local pid=$!
		PIDS+=($pid)
		local cookie=""
		[ $mode = cookie ] && cookie="roam_session=0123456789abcdef"
		measure "nginx $(nginx -v 2>&1 | sed 's|.*/||')" ${mode/roundrobin/round_robin} $pid "$cookie"
		stop $pid
	done
}
run_stdlib() {
	[ -x "$WORK/stdlib/proxy" ] || build_stdlib
	"$WORK/stdlib/proxy" "$P" $B1 $B2 $B3 >"$WORK/stdlib.log" 2>&1 &
	local pid=$!
	PIDS+=($pid)
	wait_http "http://$P/"
	measure "httputil.ReverseProxy" round_robin $pid ""
	stop $pid
}
build_stdlib() {
	mkdir -p "$WORK/stdlib"
	cat >"$WORK/stdlib/main.go" <<'GOEOF'
// A plain httputil.ReverseProxy, round robin over the backends given as
// arguments, its transport tuned like roam lb's: the Go baseline.
package main

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync/atomic"
)

func main() {
	var targets []*url.URL
	for _, a := range os.Args[2:] {
		u, _ := url.Parse("http://" + a)
		targets = append(targets, u)
	}
	var n atomic.Uint64
	tr := &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}
	rp := &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(targets[n.Add(1)%uint64(len(targets))])
			r.SetXForwarded()
		},
	}
	http.ListenAndServe(os.Args[1], rp)
}
GOEOF
	(cd "$WORK/stdlib" && go mod init stdlibproxy >/dev/null 2>&1 && go build -o proxy .)
}
run_caddy() {
	if [ $HAVE_CADDY = 0 ]; then
		echo "  caddy not installed: skipped" >&2
		printf "Caddy\t-\t-\t-\t-\t-\tnot installed (skipped)\n" >>"$RESULTS"
		return
	fi
	for mode in round_robin cookie; do
		caddy_conf $mode
		caddy run --adapter caddyfile --config "$WORK/Caddyfile-$mode" >"$WORK/caddy-$mode.log" 2>&1 &
		local pid=$!
		PIDS+=($pid)
		local cookie=""
		wait_http "http://$P/"
		[ $mode = cookie ] && cookie=$(curl -s -D - -o /dev/null "http://$P/" | awk -F'[ ;]' 'tolower($1)=="set-cookie:" && $2 ~ /^lb=/ {print $2}')
		measure "Caddy $(caddy version | awk '{print $1}')" $mode $pid "$cookie"
		stop $pid
	done
}

echo "backends: $BACKENDS; wrk -t2 -c64 -d${DUR}s; $(nproc) cores; $REPEAT round(s)" >&2
for rep in $(seq 1 "$REPEAT"); do
	echo "round $rep" >&2
	for p in $PROXIES; do "run_$p"; done
done

# --- table ---------------------------------------------------------------------
# Medians per proxy and mode over the rounds; ratios against HAProxy's
# medians in the same mode.
table() {
	echo "| proxy | mode | req/s | × HAProxy | p50 ms | p50 × HAProxy | p99 ms | proxy CPU µs/req | notes |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---|"
	awk -F'\t' '
		function median(list,   a, n, i, j, t) {
			n = split(list, a, " ")
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
			return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
		}
		{
			k = $1 "\t" $2
			if (!(k in seen)) { seen[k] = 1; order[++n] = k }
			rps[k] = rps[k] " " $3; p50[k] = p50[k] " " $4; p99[k] = p99[k] " " $5; cpu[k] = cpu[k] " " $6
			if ($7 != "") notes[k] = notes[k] $7 " "
		}
		END {
			for (i = 1; i <= n; i++) {
				k = order[i]; split(k, f, "\t")
				if (f[2] == "-") { printf "| %s | - | - | - | - | - | - | - | %s |\n", f[1], notes[k]; continue }
				m[k, "rps"] = median(rps[k]); m[k, "p50"] = median(p50[k])
				if (f[1] ~ /^HAProxy/) { base[f[2]] = m[k, "rps"]; basep50[f[2]] = m[k, "p50"] }
			}
			for (i = 1; i <= n; i++) {
				k = order[i]; split(k, f, "\t")
				if (f[2] == "-") continue
				r = (f[2] in base && base[f[2]] > 0) ? sprintf("%.2f", m[k, "rps"] / base[f[2]]) : "-"
				l = (f[2] in basep50 && basep50[f[2]] > 0) ? sprintf("%.2f", m[k, "p50"] / basep50[f[2]]) : "-"
				printf "| %s | %s | %.0f | %s | %.2f | %s | %.2f | %.1f | %s |\n", f[1], f[2], m[k, "rps"], r, m[k, "p50"], l, median(p99[k]), median(cpu[k]), notes[k]
			}
		}' "$RESULTS"
}
{
	echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')),"
	echo "backends: 3 × $BACKENDS; wrk -t2 -c64 -d${DUR}s; median of $REPEAT round(s); all on this machine (loopback)."
	echo
	table
} | tee ${OUT:+"$OUT"}
