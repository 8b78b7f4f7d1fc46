package placement

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/coldstart-dev/coldstart/wire"
)

// ErrCorruptSnapshot marks a snapshot that decodes but does not describe a
// state this ledger could have reached.
var ErrCorruptSnapshot = errors.New("corrupt placement snapshot")

// Validate checks a decoded state before it replaces the ledger's: no nil
// entries, every key matching its entry, sandboxes with a known pool and an
// account, positive limits. A snapshot is written by this code, so any of
// these means damage on disk or a forged transfer, and restoring it would
// make this replica decide differently from the others.
func Validate(s *State) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrCorruptSnapshot}, a...)...)
	}
	for k, a := range s.Accounts {
		if a == nil {
			return bad("account %q is null", k)
		}
		if a.ID != k || a.Limit < 1 {
			return bad("account %q: id %q, limit %d", k, a.ID, a.Limit)
		}
	}
	for k, f := range s.Functions {
		if f == nil {
			return bad("function %q is null", k)
		}
		if wire.FunctionKey(f.Account, f.Name) != k {
			return bad("function key %q names %q", k, wire.FunctionKey(f.Account, f.Name))
		}
		if f.Reserved != nil && *f.Reserved < 0 {
			return bad("function %q: reserved %d", k, *f.Reserved)
		}
		for name, a := range f.Aliases {
			if a == nil || a.Name != name {
				return bad("function %q: alias %q is null or misnamed", k, name)
			}
		}
		for q, pc := range f.Provisioned {
			if pc == nil || pc.Qualifier != q || pc.Requested < 1 {
				return bad("function %q: provisioned config %q is null or invalid", k, q)
			}
		}
		prev := 0
		for _, v := range f.Versions {
			if v.Version <= prev || v.Version > f.LastVersion {
				return bad("function %q: version %d out of order", k, v.Version)
			}
			prev = v.Version
		}
	}
	for k, w := range s.Workers {
		if w == nil {
			return bad("worker %q is null", k)
		}
		if w.ID != k || w.Capacity < 0 || w.MemoryMB < 0 {
			return bad("worker %q: %+v", k, *w)
		}
	}
	for k, sb := range s.Sandboxes {
		if sb == nil {
			return bad("sandbox %q is null", k)
		}
		if sb.ID != k || sb.Account == "" || sb.Function == "" || sb.Worker == "" {
			return bad("sandbox %q: id %q account %q function %q worker %q", k, sb.ID, sb.Account, sb.Function, sb.Worker)
		}
		if !sb.Pool.Valid() {
			return bad("sandbox %q: pool %d", k, sb.Pool)
		}
		if sb.MemoryMB < 0 {
			return bad("sandbox %q: memory %d", k, sb.MemoryMB)
		}
	}
	for k, b := range s.Buckets {
		if b == nil {
			return bad("bucket %q is null", k)
		}
	}
	return nil
}

// Digest is a short hash of the replicated state. Replicas that applied the
// same log report the same digest at the same index; JSON encodes maps with
// sorted keys, so the encoding is canonical.
// The applied index is left out: it is reported beside the digest.
func (l *Ledger) Digest() string {
	s := l.s
	s.Applied = 0
	b, err := json.Marshal(&s)
	if err != nil {
		return "error:" + err.Error()
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
