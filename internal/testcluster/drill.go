package testcluster

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/gateway"
	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/check"
	"github.com/coldstart-dev/coldstart/placement"
)

// Faults is the schedule of a chaos drill, for the checker. A fault, until
// its effects have settled (a lease expired, a leader elected), is not
// steady state: 429s there are not judged, the limits are. The drills in
// this package and cmd/coldstart's process drill share it.
type Faults struct {
	// Handler is the longest handler of the drill's functions: an
	// interval starts that long (plus the checker's window) before its
	// fault, since the records of invocations running when a worker is
	// cut off are lost with its traffic.
	Handler  time.Duration
	Unsteady []check.Interval
}

// Settle is how long a fault's effects last after it ends: a lease
// expired and a second to spare.
var Settle = placement.DefaultLease.Expiry() + time.Second

// Ended records a fault that began at from and has just ended.
func (f *Faults) Ended(from time.Time) {
	before := f.Handler + check.DefaultWindow
	f.Unsteady = append(f.Unsteady, check.Interval{FromNs: from.Add(-before).UnixNano(), ToNs: time.Now().Add(Settle).UnixNano()})
}

// WriteRecords writes a drill's records to the file CS_DRILL_RECORDS
// names, if it does, for `coldstart check --records FILE` by hand.
func WriteRecords(t testing.TB, recs []api.Record) {
	t.Helper()
	path := os.Getenv("CS_DRILL_RECORDS")
	if path == "" {
		return
	}
	var b bytes.Buffer
	for _, r := range recs {
		line, _ := json.Marshal(r)
		b.Write(append(line, '\n'))
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Error(err)
	}
}

// Judge runs the checker over a drill's records with the account limit,
// logs the fault spans, the verdict table and the fenced invocations, and
// fails t on any violation. CS_DRILL_RECORDS=FILE also writes the
// records there, for `coldstart check --records FILE` by hand.
func (f *Faults) Judge(t testing.TB, recs []api.Record, limit int) check.Report {
	t.Helper()
	WriteRecords(t, recs)
	first, fenced := int64(0), 0
	for _, r := range recs {
		if h := check.HeldFrom(r); first == 0 || h < first {
			first = h
		}
		if r.Outcome == api.OutcomeFenced {
			fenced++
		}
	}
	for _, iv := range f.Unsteady {
		t.Logf("fault: +%.0fms .. +%.0fms", float64(iv.FromNs-first)/1e6, float64(iv.ToNs-first)/1e6)
	}
	rep := check.Run(recs, check.Options{Unsteady: f.Unsteady, Limits: []check.LimitChange{{AtNs: 0, Account: gateway.DefaultAccount, Limit: limit}}})
	var table strings.Builder
	rep.WriteTable(&table)
	t.Logf("coldstart check:\n%s", table.String())
	if !rep.OK() {
		t.Error("coldstart check failed over the drill")
	}
	t.Logf("%d invocations fenced", fenced)
	return rep
}
