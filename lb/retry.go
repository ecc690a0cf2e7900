package lb

import (
	"sync/atomic"
	"time"
)

// retryBudget caps retries at a share of recent requests plus a floor per
// second, so that when the whole cluster fails the balancer answers
// errors instead of multiplying the load on it. Each request deposits
// ratio tokens (kept in thousandths), each retry takes one; the balance is
// capped so a long quiet period does not bank an unlimited burst.
type retryBudget struct {
	ratioMilli atomic.Int64
	minPerSec  atomic.Int64
	tokens     atomic.Int64
	sec        atomic.Int64
	secUsed    atomic.Int64
}

const budgetCap = 100 * 1000 // at most 100 banked retries

func newRetryBudget(c RetryConfig) *retryBudget {
	b := &retryBudget{}
	b.configure(c)
	return b
}

func (b *retryBudget) configure(c RetryConfig) {
	b.ratioMilli.Store(int64(c.BudgetRatio * 1000))
	b.minPerSec.Store(int64(c.BudgetMinPerSecond))
}

func (b *retryBudget) deposit() {
	if b.tokens.Load() < budgetCap {
		b.tokens.Add(b.ratioMilli.Load())
	}
}

// withdraw takes one retry from the budget and reports whether there was
// one.
func (b *retryBudget) withdraw(now int64) bool {
	s := now / int64(time.Second)
	if cur := b.sec.Load(); cur != s && b.sec.CompareAndSwap(cur, s) {
		b.secUsed.Store(0)
	}
	if b.secUsed.Add(1) <= b.minPerSec.Load() {
		return true
	}
	for {
		t := b.tokens.Load()
		if t < 1000 {
			return false
		}
		if b.tokens.CompareAndSwap(t, t-1000) {
			return true
		}
	}
}
