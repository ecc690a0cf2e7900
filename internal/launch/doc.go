// Package launch runs a roam cluster on one machine: N `roam node`
// processes sharing the store a strategy names, plus the external server
// (Redis, PostgreSQL, …) the strategy needs when no URL for one is given.
// `roam demo` and `roam bench` both use it; the balancer in front is the
// caller's (the demo runs lb in its own process and adds each node to it).
//
// Every node is a separate OS process started through internal/proc, in a
// process group of its own with the parent-death signal set, so that Kill
// is a real crash (SIGKILL) and no node outlives the program that launched
// it, even when that program is itself killed.
//
//	c, err := launch.New(launch.Options{Strategy: "backup", Nodes: 3})
//	if err != nil { … }
//	if err := c.Start(ctx); err != nil { … } // every node ready, or an error
//	defer c.Stop(context.Background())
//	c.Kill("n2")                             // SIGKILL
//	c.StartNode(ctx, "n2")                   // back, same address
//	n, err := c.Add(ctx)                     // n4 joins
//
// Nodes are called n1, n2, …; under the backup strategy the balancer's
// owner policy ranks them by those ids, which is why a node keeps its id
// (and its address) across restarts.
package launch
