package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// GrantToken is placement's signature over a grant: the sandbox, what it was
// granted for, and the worker incarnation it was placed on. A worker given a
// key starts a cold sandbox only with a valid token (HdrGrantToken), so
// nothing but placement can make a worker create one.
func GrantToken(key []byte, sb *Sandbox) string {
	if len(key) == 0 || sb == nil {
		return ""
	}
	m := hmac.New(sha256.New, key)
	for _, f := range []string{sb.ID, sb.Account, sb.Function, sb.Version, sb.Worker, strconv.FormatUint(sb.WorkerInc, 10), strconv.FormatInt(sb.CreatedNs, 10)} {
		m.Write([]byte(f))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

// GrantClaim is what a worker learns about a grant from the request that
// carries it; VerifyGrant checks it against the token.
type GrantClaim struct {
	ID, Account, Function, Version, Worker string
	WorkerInc                              uint64
	CreatedNs                              int64
}

// VerifyGrant reports whether token signs the claim under key.
func VerifyGrant(key []byte, c GrantClaim, token string) bool {
	want := GrantToken(key, &Sandbox{ID: c.ID, Account: c.Account, Function: c.Function, Version: c.Version, Worker: c.Worker, WorkerInc: c.WorkerInc, CreatedNs: c.CreatedNs})
	return hmac.Equal([]byte(want), []byte(token))
}
