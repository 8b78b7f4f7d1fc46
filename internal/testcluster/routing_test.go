package testcluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/testcluster"
	"github.com/coldstart-dev/coldstart/loadgen"
)

// TestAvoidableColdStartsStayNearZero: routing finds an idle warm sandbox
// anywhere in the cluster before asking placement for a new one. Under a
// load that rises and falls (so sandboxes go idle on every worker while
// others are busy), a cold start while an idle sandbox of the version
// existed must stay rare.
func TestAvoidableColdStartsStayNearZero(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 2, Workers: 3})
	urls := []string{c.GatewayURL(0), c.GatewayURL(1)}
	createFunction(t, urls[0], synthetic("route", "20ms", "30ms"))
	rec := c.Records()
	total := 0
	for _, clients := range []int{12, 3, 9, 2, 12} {
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		total += countOK(hammer(ctx, t, urls, map[string]int{"route": clients}, `{}`))
		cancel()
	}
	if err := c.WaitFor(func() bool { return rec.Len() >= total }, 5*time.Second); err != nil {
		t.Fatalf("records: %d of %d", rec.Len(), total)
	}
	recs := rec.All()
	cold := 0
	for _, r := range recs {
		if r.Cold {
			cold++
		}
	}
	avoidable := loadgen.AvoidableColdStarts(recs, 5*time.Millisecond)
	t.Logf("%d invocations, %d cold, %d avoidable", len(recs), cold, avoidable)
	if cold < 12 {
		t.Fatalf("only %d cold starts for a peak of 12 concurrent clients", cold)
	}
	if avoidable*100 > len(recs) { // under 1% of invocations
		t.Fatalf("%d avoidable cold starts out of %d invocations", avoidable, len(recs))
	}
}
