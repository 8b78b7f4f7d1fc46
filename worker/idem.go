package worker

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/coldstart-dev/coldstart/idempotency"
	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
	"github.com/coldstart-dev/coldstart/worker/pool"
)

// The platform's idempotency (a function's IdempotencyConfig): before the
// handler runs, the worker claims the invocation's key in Redis with SET
// NX PX, the record INPROGRESS and expiring with the invocation's
// remaining time (a worker that dies mid-handler frees it then); a handler
// that succeeds turns it COMPLETED with its response for the configured
// TTL, which every duplicate receives without running; a function error
// deletes it so a retry runs. A duplicate while the first still runs gets
// a typed, retryable error; a different payload under a completed key a
// typed error. Without Redis nothing runs: fail closed, the caller (or the
// async dispatcher) retries later.

// Errors the platform's idempotency answers with (their types reach the
// caller as Lambda error types).
var (
	errIdemInProgress  = errors.New("IdempotencyAlreadyInProgressException")
	errIdemValidation  = errors.New("IdempotencyValidationException")
	errIdemUnavailable = errors.New("IdempotencyStoreUnavailableException")
	errIdemNoKey       = errors.New("IdempotencyKeyException")
)

// idemRecord is the platform's record in Redis.
type idemRecord struct {
	Status     string `json:"status"` // INPROGRESS | COMPLETED
	RequestID  string `json:"request_id"`
	Validation string `json:"validation"`
	Data       string `json:"data,omitempty"` // base64 of the stored response
}

// idemClaim is a claimed key, settled after the handler.
type idemClaim struct {
	key, validation, reqID string
	ttl                    time.Duration
}

// idemKey is the key an invocation's payload and headers give under cfg,
// "" when the key source finds nothing.
func idemKey(cfg *wire.IdempotencyConfig, m *nats.Msg) (string, error) {
	switch {
	case cfg.Key == "request-id":
		return m.Header.Get(wire.HdrRequestID), nil
	case strings.HasPrefix(cfg.Key, "header:"):
		return m.Header.Get(wire.HdrIdemKey), nil
	case strings.HasPrefix(cfg.Key, "json:"):
		p, err := idempotency.CompilePath(strings.TrimPrefix(cfg.Key, "json:"))
		if err != nil {
			return "", err
		}
		var ev any
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			return "", fmt.Errorf("the payload is not JSON: %w", err)
		}
		v, err := p.Search(ev)
		if err != nil || v == nil {
			return "", err
		}
		b, _ := json.Marshal(v)
		if string(b) == `""` || string(b) == "{}" || string(b) == "[]" {
			return "", nil
		}
		return string(b), nil
	}
	return "", fmt.Errorf("unknown key source %q", cfg.Key)
}

// claim runs before the handler. It returns the claim to settle; or the
// stored response (replayed) of an earlier invocation with the key; or an
// error the caller must get instead of a run.
func (n *Node) claim(cfg *wire.IdempotencyConfig, m *nats.Msg, account, function string, deadline time.Time) (*idemClaim, []byte, error) {
	if n.cfg.Redis == nil {
		return nil, nil, fmt.Errorf("%w: this worker has no Redis (--redis); the invocation does not run without an idempotency record", errIdemUnavailable)
	}
	raw, err := idemKey(cfg, m)
	if err != nil || raw == "" {
		return nil, nil, fmt.Errorf("%w: no idempotency key from %s (%v)", errIdemNoKey, cfg.Key, err)
	}
	sum := sha256.Sum256([]byte(raw))
	key := "cs:idem:" + account + ":" + function + ":" + hex.EncodeToString(sum[:16])
	vsum := sha256.Sum256(m.Data)
	c := &idemClaim{key: key, validation: hex.EncodeToString(vsum[:16]), reqID: m.Header.Get(wire.HdrRequestID), ttl: time.Duration(cfg.TTLMs) * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	inProgress, _ := json.Marshal(idemRecord{Status: "INPROGRESS", RequestID: c.reqID, Validation: c.validation})
	remaining := time.Until(deadline)
	if remaining < time.Millisecond {
		remaining = time.Millisecond
	}
	for try := 0; try < 3; try++ {
		ok, err := n.cfg.Redis.SetNX(ctx, key, inProgress, remaining).Result()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", errIdemUnavailable, err)
		}
		if ok {
			return c, nil, nil
		}
		b, err := n.cfg.Redis.Get(ctx, key).Bytes()
		if errors.Is(err, redis.Nil) {
			continue // expired between the two: claim again
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", errIdemUnavailable, err)
		}
		var rec idemRecord
		if json.Unmarshal(b, &rec) != nil {
			return nil, nil, fmt.Errorf("%w: the record under the key does not decode", errIdemUnavailable)
		}
		if rec.Validation != c.validation {
			return nil, nil, fmt.Errorf("%w: Payload does not match stored record for this event key (first request %s)", errIdemValidation, rec.RequestID)
		}
		if rec.Status != "COMPLETED" {
			return nil, nil, fmt.Errorf("%w: Execution already in progress with idempotency key %s (request %s); retry later", errIdemInProgress, cfg.Key, rec.RequestID)
		}
		data, err := base64.StdEncoding.DecodeString(rec.Data)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: the stored response does not decode", errIdemUnavailable)
		}
		return nil, data, nil
	}
	return nil, nil, fmt.Errorf("%w: the key kept expiring while claimed", errIdemUnavailable)
}

// settle records the handler's outcome: COMPLETED with its response, or
// the record deleted after a function error so a retry runs. A settle
// that fails leaves the INPROGRESS record to expire with the invocation.
func (n *Node) settle(c *idemClaim, resp []byte, failed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if failed {
		if err := n.cfg.Redis.Del(ctx, c.key).Err(); err != nil {
			n.log.Warn("idempotency record not deleted", "key", c.key, "err", err)
		}
		return
	}
	b, _ := json.Marshal(idemRecord{Status: "COMPLETED", RequestID: c.reqID, Validation: c.validation, Data: base64.StdEncoding.EncodeToString(resp)})
	if err := n.cfg.Redis.Set(ctx, c.key, b, c.ttl).Err(); err != nil {
		n.log.Warn("idempotency record not completed", "key", c.key, "err", err)
	}
}

// idemErrorType is the Lambda error type the caller gets for err.
func idemErrorType(err error) string {
	for _, e := range []error{errIdemInProgress, errIdemValidation, errIdemUnavailable, errIdemNoKey} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "ServiceException"
}

// idemConfigOf reads the function's platform idempotency from the
// invocation (nil: off).
func idemConfigOf(m *nats.Msg) *wire.IdempotencyConfig {
	return wire.DecodeIdemConfig(m.Header.Get(wire.HdrIdemConfig))
}

// idemBefore runs the platform's idempotency before a handler: it returns
// the claim to settle afterwards, or answers the invocation itself (a
// replayed response, or an error) and reports done.
func (n *Node) idemBefore(m *nats.Msg, sb *pool.Sandbox, spec *wire.Spec, cold bool, received, deadline time.Time, initDur time.Duration) (*idemClaim, bool) {
	cfg := idemConfigOf(m)
	if cfg == nil {
		return nil, false
	}
	c, stored, err := n.claim(cfg, m, sb.Key.Account, sb.Key.Function, deadline)
	if c != nil {
		return c, false
	}
	now := time.Now()
	rec := api.Record{RequestID: m.Header.Get(wire.HdrRequestID), Account: sb.Key.Account, Function: sb.Key.Function, Version: sb.Key.Version,
		Sandbox: sb.ID, Worker: n.cfg.ID, ReceivedNs: received.UnixNano(), StartNs: now.UnixNano(), EndNs: now.UnixNano(), ReleasedNs: now.UnixNano(),
		Cold: cold, InitMs: ms(initDur), MemoryMB: spec.MemoryMB, Outcome: api.OutcomeOK, CodeSha256: spec.CodeSha256, Revision: spec.Revision,
		Attempt: attemptOf(m), Trigger: triggerOf(m), Replayed: true}
	if cold {
		rec.GrantedNs, _ = strconv.ParseInt(m.Header.Get(wire.HdrGranted), 10, 64)
	}
	n.finish(sb, false)
	if err != nil {
		rec.Outcome, rec.Reason, rec.Replayed = api.OutcomeRejected, idemErrorType(err), false
		n.replyStatus(m, wire.StatusError, idemErrorType(err), err.Error())
		n.records.Add(rec)
		return nil, true
	}
	r := nats.NewMsg(m.Reply)
	r.Header.Set(wire.HdrStatus, wire.StatusOK)
	r.Header.Set(wire.HdrWorker, n.cfg.ID)
	r.Header.Set(wire.HdrSandbox, sb.ID)
	r.Header.Set(wire.HdrCold, strconv.FormatBool(cold))
	r.Header.Set(wire.HdrInitMs, strconv.FormatFloat(rec.InitMs, 'f', 2, 64))
	r.Header.Set(wire.HdrReplayed, "true")
	r.Data = stored
	_ = m.RespondMsg(r)
	n.records.Add(rec)
	return nil, true
}
