package placement

import (
	"fmt"
	"strings"

	"github.com/coldstart-dev/coldstart/wire"
)

// Asynchronous invocation configs, platform idempotency and injected
// faults: per-function settings the data plane reads from the snapshot.
// The ledger only validates and stores them.

// ValidDestination accepts Lambda's destinations this cluster can deliver
// to: another function (by ARN, of the same account) or a NATS subject
// ("nats:SUBJECT", the stand-in for SQS, SNS and EventBridge; delivered on
// cs.dest.SUBJECT).
func ValidDestination(account, d string) error {
	switch {
	case d == "":
		return nil
	case strings.HasPrefix(d, "nats:"):
		subj := strings.TrimPrefix(d, "nats:")
		if subj == "" || len(subj) > 200 || strings.ContainsAny(subj, " \t\r\n*>") || strings.HasPrefix(subj, ".") || strings.HasSuffix(subj, ".") || strings.Contains(subj, "..") {
			return invalid("The destination %q is not a valid NATS subject (nats:name.with.dots, no wildcards)", d)
		}
		return nil
	case strings.HasPrefix(d, "arn:aws:lambda:"):
		parts := strings.Split(d, ":")
		if len(parts) < 7 || parts[5] != "function" || parts[6] == "" {
			return invalid("The destination ARN %s is not a function ARN", d)
		}
		if parts[4] != account {
			return invalid("The destination ARN %s is in another account", d)
		}
		return nil
	}
	return invalid("The destination %s is not supported: use a function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME) or nats:SUBJECT", d)
}

func (l *Ledger) putEventConfig(c PutEventConfig, idx uint64) (*Function, error) {
	f, err := l.function(c.Account, c.Function)
	if err != nil {
		return nil, err
	}
	q := c.Qualifier
	if q == "" {
		q = "$LATEST"
	}
	if q != "$LATEST" && l.provisionedVersion(f, q) == "" {
		return nil, fmt.Errorf("%w: Function not found: arn:aws:lambda:us-east-1:%s:function:%s:%s", ErrNotFound, c.Account, c.Function, q)
	}
	cur := f.EventConfigs[q]
	if c.Delete {
		if cur == nil {
			return nil, fmt.Errorf("%w: The function %s has no asynchronous invocation configuration", ErrNotFound, c.Function)
		}
		delete(f.EventConfigs, q)
		if len(f.EventConfigs) == 0 {
			f.EventConfigs = nil
		}
		f.Revision = idx
		return f.Clone(), nil
	}
	if c.Merge && cur == nil {
		return nil, fmt.Errorf("%w: The function %s has no asynchronous invocation configuration to update", ErrNotFound, c.Function)
	}
	next := EventInvokeConfig{Qualifier: q}
	if c.Merge {
		next = *cur
	}
	if c.MaximumRetryAttempts != nil {
		if v := *c.MaximumRetryAttempts; v < 0 || v > 2 {
			return nil, invalid("1 validation error detected: Value '%d' at 'maximumRetryAttempts' failed to satisfy constraint: Member must have value less than or equal to 2", v)
		}
		v := *c.MaximumRetryAttempts
		next.MaximumRetryAttempts = &v
	}
	if c.MaximumEventAgeSeconds != nil {
		if v := *c.MaximumEventAgeSeconds; v < 60 || v > 21600 {
			return nil, invalid("1 validation error detected: Value '%d' at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value between 60 and 21600", v)
		}
		v := *c.MaximumEventAgeSeconds
		next.MaximumEventAgeSeconds = &v
	}
	for _, d := range []struct {
		in  *string
		out *string
	}{{c.OnSuccess, &next.OnSuccess}, {c.OnFailure, &next.OnFailure}} {
		if d.in == nil {
			continue
		}
		if err := ValidDestination(c.Account, *d.in); err != nil {
			return nil, err
		}
		*d.out = *d.in
	}
	next.ModifiedNs = c.ModifiedNs
	if f.EventConfigs == nil {
		f.EventConfigs = map[string]*EventInvokeConfig{}
	}
	f.EventConfigs[q] = &next
	f.Revision = idx
	return f.Clone(), nil
}

// ValidIdempotencyKey accepts the platform's idempotency key sources.
func ValidIdempotencyKey(k string) error {
	switch {
	case k == "request-id":
	case strings.HasPrefix(k, "header:") && len(k) > len("header:") && len(k) <= 128:
	case strings.HasPrefix(k, "json:") && len(k) > len("json:") && len(k) <= 256:
	default:
		return invalid("idempotency key %q: use request-id, header:NAME or json:PATH", k)
	}
	return nil
}

func validFault(fc wire.FaultConfig) error {
	known := false
	for _, k := range wire.FaultKinds {
		known = known || k == fc.Kind
	}
	switch {
	case !known:
		return invalid("fault kind %q: one of %s", fc.Kind, strings.Join(wire.FaultKinds, ", "))
	case len(fc.Nth) == 0 && !(fc.Rate > 0 && fc.Rate <= 1):
		return invalid("a fault needs a rate in (0, 1] or a list of invocation numbers")
	case len(fc.Nth) > 10000:
		return invalid("at most 10000 invocation numbers")
	}
	for _, n := range fc.Nth {
		if n < 1 {
			return invalid("invocation numbers start at 1, got %d", n)
		}
	}
	return nil
}

func (l *Ledger) setFunctionOptions(c SetFunctionOptions, idx uint64) (*Function, error) {
	f, err := l.function(c.Account, c.Function)
	if err != nil {
		return nil, err
	}
	next := f.Clone()
	switch {
	case c.ClearIdempotency:
		next.Idempotency = nil
	case c.Idempotency != nil:
		if err := ValidIdempotencyKey(c.Idempotency.Key); err != nil {
			return nil, err
		}
		if c.Idempotency.TTLMs < 1000 || c.Idempotency.TTLMs > 7*24*3600*1000 {
			return nil, invalid("idempotency ttl must be between 1 s and 7 days")
		}
		cfg := *c.Idempotency
		next.Idempotency = &cfg
	}
	switch {
	case c.ClearFault:
		next.Fault = nil
	case c.Fault != nil:
		if err := validFault(*c.Fault); err != nil {
			return nil, err
		}
		fc := *c.Fault
		fc.Nth = append([]int(nil), c.Fault.Nth...)
		next.Fault = &fc
	}
	next.Revision = idx
	*f = *next
	return f.Clone(), nil
}
