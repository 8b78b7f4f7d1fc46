package check

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeRecords: any input decodes to records and per-line errors
// without a panic; every record accepted re-encodes to a line that decodes
// to the same record; the same holds for the limit history decoder; and
// Run takes whatever was accepted.
func FuzzDecodeRecords(f *testing.F) {
	f.Add(`{"request_id":"a","account":"A","function":"f","sandbox":"s1","worker":"w1","received_ns":1000,"granted_ns":900,"start_ns":1100,"end_ns":2000,"released_ns":2001,"cold":true,"init_ms":0.2,"duration_ms":0.9,"billed_ms":2,"memory_mb":128,"gb_s":0.00025,"outcome":"ok"}
{"request_id":"b","account":"A","function":"f","sandbox":"s1","worker":"w1","received_ns":1500,"start_ns":1600,"end_ns":1700,"outcome":"ok"}
{"request_id":"t","account":"A","function":"f","received_ns":1800,"outcome":"throttled","reason":"ConcurrentInvocationLimitExceeded","gateway":"g1"}`)
	f.Add(`{"request_id":"z","account":"A","function":"f","sandbox":"s9","received_ns":50,"start_ns":60,"end_ns":40,"outcome":"fenced"}` + "\r\n\r\n" + `{"request_id":"y"`)
	f.Add(`{"at_ns":5,"account":"A","limit":10}
{"at_ns":6,"account":"A","function":"f","reserved":3}
{"at_ns":7,"account":"","function":"f","reserved":null}`)
	f.Add("null\n[]\n\"x\"\n{}\n{\"account\":\"\\u00e9\\ud800\"}\n")
	f.Add(`{"account":"A","received_ns":9223372036854775807,"start_ns":1,"end_ns":2}`)
	f.Add(`{"at_ns":-1,"limit":1e3}` + "\n" + `{"function":"f","reserved":1.5}` + "\n" + strings.Repeat(" ", 100))
	f.Fuzz(func(t *testing.T, data string) {
		recs, bad, err := DecodeRecords(strings.NewReader(data))
		if err != nil {
			t.Fatalf("a string reader failed: %v", err)
		}
		for _, e := range bad {
			if e.Line < 1 || e.Err == "" {
				t.Fatalf("decode error %+v", e)
			}
		}
		for _, r := range recs {
			line, err := json.Marshal(r)
			if err != nil {
				t.Fatalf("marshal %+v: %v", r, err)
			}
			back, err := ParseRecord(line)
			if err != nil || !reflect.DeepEqual(back, r) {
				t.Fatalf("%s round-trips to %+v, %v; want %+v", line, back, err, r)
			}
		}
		changes, _, err := DecodeLimits(strings.NewReader(data))
		if err != nil {
			t.Fatalf("a string reader failed: %v", err)
		}
		for _, c := range changes {
			line, err := json.Marshal(c)
			if err != nil {
				t.Fatalf("marshal %+v: %v", c, err)
			}
			back, err := ParseLimitChange(line)
			if err != nil || !reflect.DeepEqual(back, c) {
				t.Fatalf("%s round-trips to %+v, %v; want %+v", line, back, err, c)
			}
		}
		rep := Run(recs, Options{DefaultLimit: 1, Limits: changes, Window: time.Millisecond, Partial: len(data)%2 == 0})
		if rep.Records != len(recs) {
			t.Fatalf("report counts %d records of %d", rep.Records, len(recs))
		}
	})
}
