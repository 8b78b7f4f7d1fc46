package sim

import "math"

// Prices are AWS Lambda's x86 list prices (us-east-1) unless overridden.
type Prices struct {
	GBSecond       float64 // on-demand duration, per GB-s
	Request        float64 // per request
	PCHeldGBSecond float64 // provisioned concurrency, per GB-s configured
	PCRunGBSecond  float64 // duration on provisioned sandboxes, per GB-s
	FleetGBHour    float64 // always-on fleet, per GB-hour of instance memory
	Requests       bool    // charge requests (the seed's model does not)
}

// DefaultPrices: Lambda x86 $0.0000166667/GB-s, $0.20 per million requests,
// provisioned $0.0000041667/GB-s held plus $0.0000097222/GB-s running. The
// fleet price is an m5.large on demand ($0.096/h for 8 GiB = $0.012/GB-h).
var DefaultPrices = Prices{
	GBSecond:       0.0000166667,
	Request:        0.20 / 1e6,
	PCHeldGBSecond: 0.0000041667,
	PCRunGBSecond:  0.0000097222,
	FleetGBHour:    0.096 / 8,
	Requests:       true,
}

// Cost is the bill of one function or of the whole run, in USD.
type Cost struct {
	Compute  float64 `json:"compute_usd"`    // on-demand GB-s
	Requests float64 `json:"requests_usd"`   // per request
	PCHeld   float64 `json:"pc_held_usd"`    // provisioned concurrency configured
	PCRun    float64 `json:"pc_running_usd"` // duration on provisioned sandboxes
	Total    float64 `json:"total_usd"`
}

// billedRequests are the requests Lambda charges: throttled ones are not.
func billedRequests(f *FunctionResult) int64 { return f.Cold + f.Warm }

func (p Prices) cost(f *FunctionResult, horizonS float64) Cost {
	c := Cost{
		Compute: (f.GBs - f.ProvisionedGBs) * p.GBSecond,
		PCRun:   f.ProvisionedGBs * p.PCRunGBSecond,
		PCHeld:  float64(f.Provisioned) * memGB(f.MemoryMB) * horizonS * p.PCHeldGBSecond,
	}
	if p.Requests {
		c.Requests = float64(billedRequests(f)) * p.Request
	}
	c.Total = c.Compute + c.Requests + c.PCHeld + c.PCRun
	return c
}

// apply prices every function and the total (the total's provisioned charge
// is the sum of the functions', which have their own memory sizes).
func (p Prices) apply(res *Result) {
	var tot Cost
	for i := range res.Functions {
		f := &res.Functions[i]
		f.Cost = p.cost(f, res.HorizonS)
		tot.Compute += f.Cost.Compute
		tot.Requests += f.Cost.Requests
		tot.PCHeld += f.Cost.PCHeld
		tot.PCRun += f.Cost.PCRun
	}
	tot.Total = tot.Compute + tot.Requests + tot.PCHeld + tot.PCRun
	res.Total.Cost = tot
}

// Fleet compares the serverless bill with an always-on fleet that runs the
// same busy memory-time at a given average utilisation: the seed's
// "serverless wins at low duty cycles" as numbers.
type Fleet struct {
	Utilisation float64 `json:"utilisation"`
	GB          float64 `json:"fleet_gb"` // instance memory needed
	Cost        float64 `json:"cost_usd"` // fleet cost over the horizon
	Serverless  float64 `json:"serverless_usd"`
	// BreakEven is the utilisation below which serverless is cheaper.
	BreakEven float64 `json:"break_even_utilisation"`
}

// fleet sizes the fleet for the run's busy GB-s at utilisation u.
func (p Prices) fleet(res *Result, u float64) *Fleet {
	if !(u > 0) || u > 1 || !(res.HorizonS > 0) {
		return nil
	}
	busy := res.Total.GBs // GB-s of handler work (and cold starts) to carry
	f := &Fleet{Utilisation: u, GB: busy / res.HorizonS / u, Serverless: res.Total.Cost.Total}
	f.Cost = f.GB * res.HorizonS / 3600 * p.FleetGBHour
	if f.Serverless > 0 {
		// fleet cost is busy/u * price; equal to serverless when u = busy*price/serverless.
		f.BreakEven = math.Min(1, busy/3600*p.FleetGBHour/f.Serverless)
	}
	return f
}
