#!/usr/bin/env bash
# Soak test: the backup strategy (3 roam node processes behind roam's
# balancer) under a steady load for a long time, with one node SIGKILLed
# and restarted every few minutes, recording throughput, latency and each
# node's memory over time. Not part of `make test` or `make chaos`.
#
#   scripts/soak.sh                  # 30 minutes, results in soak-YYYYmmdd-HHMMSS/
#   scripts/soak.sh 3m /tmp/soak     # a short run, to see that it works
#
# Environment (all optional):
#   ROAM_SOAK_KILL_EVERY  how often a node is killed (default 2m30s)
#   ROAM_SOAK_USERS       simulated users, 100 ms think time each (default 60)
#   ROAM_SOAK_WINDOW      width of one CSV row (default 10s)
#   ROAM_CHAOS_SEED       replay the users' choices
#
# Output, in the results directory:
#   soak.csv    one row per window: t_s, fault, rps, ok, unauthorized,
#               errors, p50_ms, p99_ms, max_ms, then per node heap_mib,
#               rss_mib, goroutines
#   test.log    the run's log, ending with the invariant checks
#   logs/       every node's output
#   summary.txt the numbers docs/benchmarks.md (Soak) quotes
set -euo pipefail

duration=${1:-30m}
out=${2:-soak-$(date +%Y%m%d-%H%M%S)}
cd "$(dirname "$0")/.."
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)

echo "soak: backup strategy for $duration; results in $out"
status=0
ROAM_SOAK_DURATION="$duration" ROAM_SOAK_OUT="$out/soak.csv" ROAM_CHAOS_LOGDIR="$out/logs" \
	go test -run '^TestSoak$' -count=1 -timeout 6h -v ./chaos 2>&1 | tee "$out/test.log" || status=$?
if [ ! -s "$out/soak.csv" ]; then
	echo "soak: no results (exit $status)" >&2
	exit 1
fi

# Summary: the first and last windows' memory, the worst latency, the rate.
awk -F, '
NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
{
	rows++; rps += $col["rps"]
	if ($col["p99_ms"] + 0 > worst) { worst = $col["p99_ms"] + 0; worst_t = $col["t_s"] }
	if ($col["fault"] != "") kills++
	if (rows == 1) for (n = 1; n <= 9; n++) { h = "n" n "_heap_mib"; r = "n" n "_rss_mib"; if (h in col) { h0[n] = $col[h]; r0[n] = $col[r] } }
	for (n = 1; n <= 9; n++) { h = "n" n "_heap_mib"; r = "n" n "_rss_mib"
		if (h in col) { h1[n] = $col[h]; r1[n] = $col[r]; if ($col[r] + 0 > rmax[n]) rmax[n] = $col[r] + 0 } }
	if ($col["fault"] == "") { quiet++; p99q += $col["p99_ms"] }
}
END {
	printf "windows %d, kills %d, mean rate %.0f req/s\n", rows, kills, rps / rows
	printf "p99 in windows without a kill: mean %.1f ms; worst window p99 %.1f ms at t=%ss\n", p99q / (quiet ? quiet : 1), worst, worst_t
	for (n = 1; n <= 9; n++) if (n in h0)
		printf "n%d: heap %s -> %s MiB, rss %s -> %s MiB (peak %.1f)\n", n, h0[n], h1[n], r0[n], r1[n], rmax[n]
}' "$out/soak.csv" | tee "$out/summary.txt"
grep -E '^(--- |ok|FAIL|PASS)|soak: ' "$out/test.log" | tail -5 >> "$out/summary.txt" || true
exit "$status"
