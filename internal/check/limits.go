package check

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
)

// LimitChange is one entry of a limit history: from AtNs on, an account's
// concurrency limit is Limit (Function empty), or a function's reserved
// concurrency is *Reserved (nil: the reservation was removed). An empty
// Account applies the change to every account. Changes apply in AtNs order;
// of two at the same instant, the later in the list wins.
//
// As a JSON line:
//
//	{"at_ns":N,"account":"A","limit":L}
//	{"at_ns":N,"account":"A","function":"F","reserved":R}   (R null: removed)
type LimitChange struct {
	AtNs     int64
	Account  string
	Function string
	Limit    int
	Reserved *int
}

type accountLimitJSON struct {
	AtNs    int64  `json:"at_ns"`
	Account string `json:"account"`
	Limit   int    `json:"limit"`
}

type reservedJSON struct {
	AtNs     int64  `json:"at_ns"`
	Account  string `json:"account"`
	Function string `json:"function"`
	Reserved *int   `json:"reserved"`
}

// MarshalJSON writes the line form that UnmarshalJSON reads.
func (c LimitChange) MarshalJSON() ([]byte, error) {
	if c.Function == "" {
		return json.Marshal(accountLimitJSON{c.AtNs, c.Account, c.Limit})
	}
	return json.Marshal(reservedJSON{c.AtNs, c.Account, c.Function, c.Reserved})
}

// UnmarshalJSON reads one change. Unknown members are errors (a misspelt
// "reserved" must not silently mean something else), as are a negative
// value, an account change without "limit" and a function change without
// "reserved". A missing at_ns means from the start.
func (c *LimitChange) UnmarshalJSON(b []byte) error {
	var a struct {
		AtNs     *int64          `json:"at_ns"`
		Account  string          `json:"account"`
		Function string          `json:"function"`
		Limit    *int            `json:"limit"`
		Reserved json.RawMessage `json:"reserved"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return err
	}
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return errors.New("null is not a limit change")
	}
	out := LimitChange{Account: a.Account, Function: a.Function}
	if a.AtNs != nil {
		out.AtNs = *a.AtNs
	}
	if a.Function == "" {
		switch {
		case a.Reserved != nil:
			return errors.New(`"reserved" needs a "function"`)
		case a.Limit == nil:
			return errors.New(`a limit change needs "limit" (or "function" and "reserved")`)
		case *a.Limit < 0:
			return fmt.Errorf("negative limit %d", *a.Limit)
		}
		out.Limit = *a.Limit
		*c = out
		return nil
	}
	if a.Limit != nil {
		return errors.New(`"limit" is an account's; a function has "reserved"`)
	}
	if a.Reserved == nil {
		return errors.New(`a function change needs "reserved" (null removes it)`)
	}
	if !bytes.Equal(a.Reserved, []byte("null")) {
		var n int
		if err := json.Unmarshal(a.Reserved, &n); err != nil {
			return fmt.Errorf("reserved: %w", err)
		}
		if n < 0 {
			return fmt.Errorf("negative reserved %d", n)
		}
		out.Reserved = &n
	}
	*c = out
	return nil
}

// ParseLimitChange decodes one JSON line of a limit history.
func ParseLimitChange(line []byte) (LimitChange, error) {
	var c LimitChange
	if err := json.Unmarshal(line, &c); err != nil {
		return LimitChange{}, err
	}
	return c, nil
}

// DecodeLimits reads a limit history, one LimitChange JSON line each. Bad
// lines are reported and skipped as in DecodeRecords.
func DecodeLimits(r io.Reader) ([]LimitChange, []DecodeError, error) {
	var out []LimitChange
	var bad []DecodeError
	err := eachLine(r, func(n int, line []byte, tooLong bool) {
		if tooLong {
			bad = append(bad, lineError(n, line, fmt.Errorf("line longer than %d bytes", MaxLine)))
			return
		}
		c, err := ParseLimitChange(line)
		if err != nil {
			bad = append(bad, lineError(n, line, err))
			return
		}
		out = append(out, c)
	})
	return out, bad, err
}

// none is the value of a function timeline while it has no reservation.
const none = -1

// timeline is a value stepping over time: base before the first change,
// v[i] from at[i] on.
type timeline struct {
	base int
	at   []int64
	v    []int
}

func (tl *timeline) valueAt(t int64) int {
	i := sort.Search(len(tl.at), func(i int) bool { return tl.at[i] > t }) - 1
	if i < 0 {
		return tl.base
	}
	return tl.v[i]
}

// highest is the highest value in force at some instant of [lo, hi]; none
// (no cap) is higher than any number.
func (tl *timeline) highest(lo, hi int64) int {
	m := tl.valueAt(lo)
	for i := sort.Search(len(tl.at), func(i int) bool { return tl.at[i] > lo }); i < len(tl.at) && tl.at[i] <= hi; i++ {
		m = higher(m, tl.v[i])
	}
	return m
}

// values lists the values in force during [lo, hi], consecutive repeats
// dropped; none is left out.
func (tl *timeline) values(lo, hi int64) []int {
	var out []int
	add := func(v int) {
		if v != none && (len(out) == 0 || out[len(out)-1] != v) {
			out = append(out, v)
		}
	}
	add(tl.valueAt(lo))
	for i := sort.Search(len(tl.at), func(i int) bool { return tl.at[i] > lo }); i < len(tl.at) && tl.at[i] <= hi; i++ {
		add(tl.v[i])
	}
	return out
}

func higher(a, b int) int {
	if a == none || b == none {
		return none
	}
	return max(a, b)
}

// limits is the limit history of one account.
type limits struct {
	account  timeline
	reserved map[string]*timeline // functions that ever had a reservation
	resSum   timeline             // sum of the reservations in force
}

func (l *limits) fn(name string) *timeline { return l.reserved[name] }

// unreservedCap is what the reservations leave of the account limit at t.
func (l *limits) unreservedCap(t int64) int {
	return max(0, l.account.valueAt(t)-l.resSum.valueAt(t))
}

// changeTimes is every instant the account limit or a reservation changes.
func (l *limits) changeTimes() []int64 {
	ts := append([]int64(nil), l.account.at...)
	ts = append(ts, l.resSum.at...)
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts
}

func buildLimits(account string, def int, changes []LimitChange) *limits {
	var mine []LimitChange
	for _, c := range changes {
		if c.Account == "" || c.Account == account {
			mine = append(mine, c)
		}
	}
	sort.SliceStable(mine, func(i, j int) bool { return mine[i].AtNs < mine[j].AtNs })
	l := &limits{account: timeline{base: def}, reserved: map[string]*timeline{}}
	for _, c := range mine {
		if c.Function == "" {
			l.account.at = append(l.account.at, c.AtNs)
			l.account.v = append(l.account.v, c.Limit)
			continue
		}
		tl := l.reserved[c.Function]
		if tl == nil {
			tl = &timeline{base: none}
			l.reserved[c.Function] = tl
		}
		v := none
		if c.Reserved != nil {
			v = *c.Reserved
		}
		tl.at = append(tl.at, c.AtNs)
		tl.v = append(tl.v, v)
	}
	var ts []int64
	for _, tl := range l.reserved {
		ts = append(ts, tl.at...)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	sum := func(t int64) int {
		s := 0
		for _, tl := range l.reserved {
			if v := tl.valueAt(t); v != none {
				s += v
			}
		}
		return s
	}
	l.resSum.base = sum(math.MinInt64)
	for i, t := range ts {
		if i > 0 && ts[i-1] == t {
			continue
		}
		l.resSum.at = append(l.resSum.at, t)
		l.resSum.v = append(l.resSum.v, sum(t))
	}
	return l
}
