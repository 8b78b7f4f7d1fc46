package quota

import (
	"fmt"
	"sort"
)

// Pool is the share of an account a sandbox was admitted under. It is fixed
// at the grant: a reservation set, changed or removed later, or the function
// deleted and created again, never moves a live sandbox from one pool to
// another. That is what makes every count a pure function of the live
// sandboxes, so a ledger rebuilt from a snapshot and one that replayed the
// log agree, whatever happened to the configuration in between.
type Pool uint8

const (
	// PoolUnreserved: admitted against the account's unreserved concurrency.
	PoolUnreserved Pool = 1
	// PoolReserved: admitted against its function's reserved concurrency.
	PoolReserved Pool = 2
)

func (p Pool) String() string {
	switch p {
	case PoolUnreserved:
		return "unreserved"
	case PoolReserved:
		return "reserved"
	}
	return fmt.Sprintf("pool(%d)", uint8(p))
}

// Valid reports whether p is a known pool.
func (p Pool) Valid() bool { return p == PoolUnreserved || p == PoolReserved }

// Class is what a sandbox was admitted as. Incarnation identifies the
// function's configuration lifetime (the Raft index of its create): a
// function deleted and created again under its name is a new incarnation,
// and the old one's sandboxes never count against the new one's reservation.
type Class struct {
	Account     string
	Function    string
	Incarnation uint64
	Pool        Pool
}

// PoolFor is the pool a new sandbox of fn is admitted under.
func PoolFor(fn Function) Pool {
	if fn.HasReserved {
		return PoolReserved
	}
	return PoolUnreserved
}

type fnKey struct {
	account, function string
	incarnation       uint64
}

type acctCounts struct{ total, unreserved int }

// Accounting holds the counts admission needs, kept incrementally from the
// classes of the live sandboxes. Add and Remove must be given the class the
// sandbox was admitted under; Recount rebuilds the same counts from scratch.
// The placement ledger and the simulator both keep their counts here.
type Accounting struct {
	acct map[string]*acctCounts
	fn   map[fnKey]int
}

// NewAccounting returns empty counts.
func NewAccounting() *Accounting {
	return &Accounting{acct: map[string]*acctCounts{}, fn: map[fnKey]int{}}
}

// Add counts one more live sandbox of class c.
func (a *Accounting) Add(c Class) { a.add(c, 1) }

// Remove stops counting a live sandbox of class c.
func (a *Accounting) Remove(c Class) { a.add(c, -1) }

func (a *Accounting) add(c Class, d int) {
	ac := a.acct[c.Account]
	if ac == nil {
		ac = &acctCounts{}
		a.acct[c.Account] = ac
	}
	ac.total += d
	if c.Pool == PoolUnreserved {
		ac.unreserved += d
	}
	if ac.total == 0 && ac.unreserved == 0 {
		delete(a.acct, c.Account)
	}
	k := fnKey{c.Account, c.Function, c.Incarnation}
	if a.fn[k] += d; a.fn[k] == 0 {
		delete(a.fn, k)
	}
}

// Sandboxes is the number of live sandboxes of an account.
func (a *Accounting) Sandboxes(account string) int {
	if ac := a.acct[account]; ac != nil {
		return ac.total
	}
	return 0
}

// Unreserved is the number of live sandboxes of an account admitted under
// its unreserved pool.
func (a *Accounting) Unreserved(account string) int {
	if ac := a.acct[account]; ac != nil {
		return ac.unreserved
	}
	return 0
}

// Function is the number of live sandboxes of one function incarnation,
// whichever pool admitted them: a reservation caps them all.
func (a *Accounting) Function(account, function string, incarnation uint64) int {
	return a.fn[fnKey{account, function, incarnation}]
}

// Usage fills the live counts into the admission inputs.
func (a *Accounting) Usage(account, function string, incarnation uint64, limit, reservedTotal int, reserved *int) (Account, Function) {
	acc := Account{Limit: limit, ReservedTotal: reservedTotal, Sandboxes: a.Sandboxes(account), Unreserved: a.Unreserved(account)}
	fn := Function{Sandboxes: a.Function(account, function, incarnation)}
	if reserved != nil {
		fn.HasReserved, fn.Reserved = true, *reserved
	}
	return acc, fn
}

// Recount returns counts rebuilt from the classes of the live sandboxes.
func Recount(classes []Class) *Accounting {
	a := NewAccounting()
	for _, c := range classes {
		a.Add(c)
	}
	return a
}

// Diff describes how two Accountings differ ("" when they are equal); the
// ledger's model tests compare incremental counts with a recount this way.
func (a *Accounting) Diff(b *Accounting) string {
	var out []string
	for k, v := range a.acct {
		w := b.acct[k]
		if w == nil || *w != *v {
			out = append(out, fmt.Sprintf("account %q: %+v vs %+v", k, *v, w))
		}
	}
	for k, v := range b.acct {
		if a.acct[k] == nil {
			out = append(out, fmt.Sprintf("account %q: missing vs %+v", k, *v))
		}
	}
	for k, v := range a.fn {
		if b.fn[k] != v {
			out = append(out, fmt.Sprintf("function %v: %d vs %d", k, v, b.fn[k]))
		}
	}
	for k, v := range b.fn {
		if _, ok := a.fn[k]; !ok {
			out = append(out, fmt.Sprintf("function %v: missing vs %d", k, v))
		}
	}
	sort.Strings(out)
	s := ""
	for _, l := range out {
		s += l + "\n"
	}
	return s
}

// Negative reports a count below zero: a sandbox removed under a class it
// was not added with.
func (a *Accounting) Negative() string {
	for k, v := range a.acct {
		if v.total < 0 || v.unreserved < 0 || v.unreserved > v.total {
			return fmt.Sprintf("account %q: %+v", k, *v)
		}
	}
	for k, v := range a.fn {
		if v < 0 {
			return fmt.Sprintf("function %v: %d", k, v)
		}
	}
	return ""
}
