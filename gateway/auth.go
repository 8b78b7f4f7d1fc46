package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
)

// Accounts and SigV4. Every Lambda API request is verified against the
// access keys in placement's ledger (the snapshot the gateway caches),
// plus, unless NoDefaultKey, the built-in key "test"/"test" of
// DefaultAccount. Unsigned requests act as DefaultAccount in development
// mode and are refused with StrictAuth. The account a request acts as is
// the only account it sees: another account's function is "not found",
// exactly like a function that does not exist.

// DefaultKeyID and DefaultKeySecret are the development key local
// emulators' users expect.
const (
	DefaultKeyID     = "test"
	DefaultKeySecret = "test"
)

type reqInfo struct {
	account string
	body    []byte
}

type ctxKey struct{}

// account returns the account the request acts as.
func (g *Gateway) account(r *http.Request) string {
	if ri, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok {
		return ri.account
	}
	return DefaultAccount
}

// keyStore looks keys up in the cached ledger.
type keyStore struct{ g *Gateway }

func (k keyStore) LookupKey(id string) (string, string, bool) {
	if sn := k.g.cache.snapshot(); sn != nil {
		for _, a := range sn.Accounts {
			for _, key := range a.Keys {
				if key.ID == id {
					return a.ID, key.Secret, true
				}
			}
		}
	}
	if id == DefaultKeyID && !k.g.cfg.NoDefaultKey {
		return DefaultAccount, DefaultKeySecret, true
	}
	return "", "", false
}

// authExempt lists what is served without authentication: health, metrics,
// the dashboard and the cluster status an operator looks at.
func authExempt(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	switch p := r.URL.Path; {
	case p == "/" || p == "/healthz" || p == "/metrics" || p == "/dashboard" || p == api.PathStatus || p == PathTimeline || p == PathSeries:
		return true
	case strings.HasPrefix(p, "/static/"):
		return true
	}
	return false
}

// bodyLimit is the largest body a route accepts, with Lambda's message.
func bodyLimit(r *http.Request) (int64, string) {
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/invocations"):
		return MaxSyncPayload, "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
	case strings.HasSuffix(p, "/code") || p == "/2015-03-31/functions" || p == "/2015-03-31/functions/":
		return maxCodeBody, "Request must be smaller than 69905067 bytes for the CreateFunction operation"
	}
	return 1 << 20, "request body is larger than 1 MiB"
}

// authenticate reads the body (bounded per route), verifies the
// signature, and runs next as the request's account.
func (g *Gateway) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if authExempt(r) {
			next.ServeHTTP(w, r)
			return
		}
		// Every answer carries a request id, errors included.
		w.Header().Set(api.HeaderRequestID, newRequestID())
		limit, tooLarge := bodyLimit(r)
		if r.ContentLength > limit {
			writeError(w, errTooLarge(tooLarge))
			return
		}
		body, lerr := g.readBody(w, r, limit, tooLarge)
		if lerr != nil {
			writeError(w, lerr)
			return
		}
		res, lerr := verifySigV4(r, body, keyStore{g}, g.cfg.Now())
		if lerr != nil {
			g.m.authFailures.Inc()
			writeError(w, lerr)
			return
		}
		acct := res.Account
		if !res.Signed {
			if g.cfg.StrictAuth {
				g.m.authFailures.Inc()
				writeError(w, &lambdaError{http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token: this cluster runs with --strict-auth and refuses unsigned requests", ""})
				return
			}
			acct = DefaultAccount
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, &reqInfo{account: acct, body: body})))
	})
}

// requestBody is the body authenticate read.
func requestBody(r *http.Request) []byte {
	if ri, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok {
		return ri.body
	}
	return nil
}

// The account admin API (coldstart account create|keys). Only the
// operator account (DefaultAccount) may use it.

func (g *Gateway) operator(w http.ResponseWriter, r *http.Request) bool {
	if g.account(r) != DefaultAccount {
		writeError(w, &lambdaError{http.StatusForbidden, "AccessDeniedException", "only the operator account " + DefaultAccount + " manages accounts", ""})
		return false
	}
	return true
}

func randomDigits(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		d, _ := rand.Int(rand.Reader, big.NewInt(10))
		b.WriteByte(byte('0' + d.Int64()))
	}
	return b.String()
}

func newAccessKey() wire.AccessKey {
	var id [8]byte
	var sec [20]byte
	rand.Read(id[:])
	rand.Read(sec[:])
	return wire.AccessKey{ID: "AKCS" + strings.ToUpper(hex.EncodeToString(id[:])), Secret: hex.EncodeToString(sec[:]), CreatedNs: time.Now().UnixNano()}
}

func accountInfo(a wire.Account, fresh *wire.AccessKey) api.AccountInfo {
	out := api.AccountInfo{Account: a.ID, Limit: a.Limit, Keys: []api.KeyInfo{}}
	for _, k := range a.Keys {
		ki := api.KeyInfo{AccessKeyID: k.ID, Created: lastModified(k.CreatedNs)}
		if fresh != nil && k.ID == fresh.ID {
			ki.SecretAccessKey = k.Secret
		}
		out.Keys = append(out.Keys, ki)
	}
	return out
}

func (g *Gateway) handleCreateAccount(w http.ResponseWriter, r *http.Request) {
	if !g.operator(w, r) {
		return
	}
	var in struct {
		Account string `json:"Account"`
		Limit   int    `json:"Limit"`
	}
	if lerr := g.decodeBody(r, &in); lerr != nil {
		writeError(w, lerr)
		return
	}
	if in.Account == "" {
		in.Account = randomDigits(12)
	}
	key := newAccessKey()
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpCreateAccount, NewAccount: &wire.CreateAccount{ID: in.Account, Limit: in.Limit, Key: &key}}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	g.cache.wrote(resp.Index)
	g.refreshFresh(resp.Index)
	writeJSON(w, http.StatusCreated, accountInfo(*resp.Account, &key))
}

func (g *Gateway) handleAccountKeys(w http.ResponseWriter, r *http.Request) {
	if !g.operator(w, r) {
		return
	}
	id := r.PathValue("id")
	if r.Method == http.MethodPost {
		key := newAccessKey()
		resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpAddAccessKey, AddKey: &wire.AddAccessKey{Account: id, Key: key}}, controlBudget)
		if err != nil {
			writeError(w, placementError(err))
			return
		}
		g.cache.wrote(resp.Index)
		g.refreshFresh(resp.Index)
		writeJSON(w, http.StatusCreated, accountInfo(*resp.Account, &key))
		return
	}
	sn, err := g.pl.Read(r.Context())
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	for _, a := range sn.Accounts {
		if a.ID == id && a.Created {
			writeJSON(w, http.StatusOK, accountInfo(a, nil))
			return
		}
	}
	writeError(w, errNotFound("Account not found: "+clip(id)))
}
