// Package bench is the scenario runner behind `roam bench`: it starts a
// cluster for one strategy (N roam node processes, any store server, a
// balancer in front) through a Launcher, drives virtual users against the
// balancer while faults happen on schedule, stops everything, and reports
// what the users saw.
//
// Each virtual user has its own cookie jar and its own client address
// (UserAddr), logs in, then reads (GET /api/me) and writes (POST
// /api/counter) one request at a time with think time, and logs in again
// whenever it finds itself logged out. Every request is recorded as sent
// and answered (Record); Judge and Summarize then decide, from the records
// alone, what each answer means:
//
//   - kept: 200 for the user who logged in, with every acknowledged
//     increment of its counter visible (a write continues the counter);
//   - logged out: 401, the node did not know the session;
//   - stale: the session survived but an acknowledged increment did not;
//   - errors: 5xx or no answer, which say nothing about the session and
//     are counted apart from the kept ratio.
//
// A lost increment is an acknowledged increment that a later answer does
// not reflect; a logged-out user loses every increment acknowledged since
// its login. The nodes' /metrics and /proc give memory, sessions held,
// replication bytes and store calls per node.
//
//	res, err := bench.Run(ctx, bench.Options{
//		Strategy: "backup", Nodes: 3, Users: 50, Duration: 20 * time.Second,
//		Faults:   []bench.Fault{{Kind: bench.FaultKill, Node: "n1", At: 10 * time.Second}},
//		Launcher: bench.ProcessLauncher{},
//	})
//
// Matrix runs every strategy under the same workload and faults;
// WriteTable, Markdown and WriteReport present the results, the last with
// charts drawn by gonum.org/v1/plot. docs/benchmarks.md holds the latest
// numbers and how to read them.
package bench
