package sim

import (
	"math"
	"testing"
)

func TestCost(t *testing.T) {
	close := func(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }
	cases := []struct {
		name string
		f    FunctionResult
		h    float64 // horizon, s
		p    Prices
		want Cost
	}{
		{
			// 1M requests of 100 ms at 1024 MB: 100,000 GB-s.
			"on demand", FunctionResult{MemoryMB: 1024, Cold: 10, Warm: 999990, GBs: 100000}, 3600, DefaultPrices,
			Cost{Compute: 1.66667, Requests: 0.2, Total: 1.86667},
		},
		{
			// The seed bills duration only.
			"seed", FunctionResult{MemoryMB: 512, Cold: 1, Warm: 1, GBs: 610.16}, 300, Prices{GBSecond: 0.0000166667},
			Cost{Compute: 610.16 * 0.0000166667, Total: 610.16 * 0.0000166667},
		},
		{
			// 50 x 512 MB provisioned for 300 s = 7500 GB-s held; 20 GB-s ran on them.
			"provisioned", FunctionResult{MemoryMB: 512, Provisioned: 50, Cold: 0, Warm: 1000, GBs: 30, ProvisionedGBs: 20}, 300, DefaultPrices,
			Cost{Compute: 10 * 0.0000166667, Requests: 1000 * 0.2 / 1e6, PCHeld: 7500 * 0.0000041667, PCRun: 20 * 0.0000097222,
				Total: 10*0.0000166667 + 1000*0.2/1e6 + 7500*0.0000041667 + 20*0.0000097222},
		},
		{
			// Throttled requests are not billed.
			"throttles", FunctionResult{MemoryMB: 128, Warm: 1, Throttles: 999999}, 1, DefaultPrices,
			Cost{Requests: 0.2 / 1e6, Total: 0.2 / 1e6},
		},
	}
	for _, c := range cases {
		got := c.p.cost(&c.f, c.h)
		if !close(got.Compute, c.want.Compute) || !close(got.Requests, c.want.Requests) || !close(got.PCHeld, c.want.PCHeld) ||
			!close(got.PCRun, c.want.PCRun) || !close(got.Total, c.want.Total) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestFleet(t *testing.T) {
	// 3600 GB-s of work in an hour is 1 GB busy on average; at 25% the fleet
	// needs 4 GB for an hour.
	res := &Result{HorizonS: 3600, Total: FunctionResult{GBs: 3600, Cost: Cost{Total: 0.06}}}
	f := DefaultPrices.fleet(res, 0.25)
	if math.Abs(f.GB-4) > 1e-12 || math.Abs(f.Cost-4*0.012) > 1e-12 {
		t.Fatalf("fleet %+v, want 4 GB costing $0.048", f)
	}
	// Break-even: 1 GB-h x $0.012 / $0.06 = 20% utilisation.
	if math.Abs(f.BreakEven-0.2) > 1e-12 {
		t.Fatalf("break-even %v, want 0.2", f.BreakEven)
	}
	if DefaultPrices.fleet(res, 0) != nil || DefaultPrices.fleet(res, 1.5) != nil {
		t.Fatal("utilisation outside (0, 1] gave a fleet")
	}
}
