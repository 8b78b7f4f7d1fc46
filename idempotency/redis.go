package idempotency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore is Powertools' Redis persistence layer (CachePersistenceLayer)
// over any Redis-protocol server. Each record is one string key holding the
// record's JSON, with a Redis TTL equal to the record's expiration so that
// Redis evicts what no longer deduplicates.
type RedisStore struct {
	client      redis.UniversalClient
	lockTimeout time.Duration
}

// RedisOption configures a RedisStore.
type RedisOption func(*RedisStore)

// WithOrphanLockTimeout sets how long the "{key}:lock" taken while
// overwriting an orphaned record lives. The default is Powertools'
// min(10 s, ExpiresAfter); it is rounded up to whole seconds because the
// lock is set with EX.
func WithOrphanLockTimeout(d time.Duration) RedisOption {
	return func(s *RedisStore) { s.lockTimeout = d }
}

// NewRedisStore returns a store using client (a single node, a cluster or a
// failover client). Each command touches one key (the record or its
// "{key}:lock"), so in a cluster the two may live on different nodes.
func NewRedisStore(client redis.UniversalClient, opts ...RedisOption) *RedisStore {
	s := &RedisStore{client: client}
	for _, o := range opts {
		o(s)
	}
	return s
}

const defaultOrphanLockTimeout = 10 * time.Second

// ttlFor is the EX value for a record: whole seconds until its expiration,
// at least 1 (Redis refuses EX 0, and a record written at all should live
// long enough to be read back).
func ttlFor(expiration int64, now time.Time) time.Duration {
	s := expiration - now.Unix()
	if s < 1 {
		s = 1
	}
	return time.Duration(s) * time.Second
}

// wholeSeconds rounds d up to a whole number of seconds (>= 1) so go-redis
// sends EX rather than PX, as Powertools does.
func wholeSeconds(d time.Duration) time.Duration {
	s := (d + time.Second - 1) / time.Second
	if s < 1 {
		s = 1
	}
	return s * time.Second
}

// PutInProgress runs Powertools' sequence:
//
//	SET key <record> EX ttl NX
//	  ok   -> claimed
//	  nil  -> GET key
//	          COMPLETED, unexpired                 -> *ExistsError
//	          INPROGRESS, in-progress expiry ahead -> *ExistsError
//	          anything else (orphan)               -> SET key:lock "True" EX lock NX
//	                                                  ok  -> SET key <record> EX ttl
//	                                                  nil -> ErrAlreadyInProgress
//
// The lock is never released: while it lives, a concurrent attempt that
// still saw the old orphan cannot take it over a second time.
func (s *RedisStore) PutInProgress(ctx context.Context, rec Record, now time.Time) error {
	val, err := EncodeRecord(rec)
	if err != nil {
		return err
	}
	ttl := ttlFor(rec.Expiration, now)
	ok, err := s.client.SetNX(ctx, rec.Key, val, ttl).Result()
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	raw, err := s.client.Get(ctx, rec.Key).Bytes()
	if errors.Is(err, redis.Nil) {
		// Deleted (a failed attempt) or evicted between SET NX and GET.
		return ErrInconsistentState
	}
	if err != nil {
		return err
	}
	if old, derr := DecodeRecord(rec.Key, raw); derr == nil {
		if old.StatusAt(now) == StatusCompleted || old.InProgressLive(now) {
			return &ExistsError{Record: &old}
		}
	}
	lock := s.lockTimeout
	if lock <= 0 {
		lock = min(defaultOrphanLockTimeout, time.Duration(rec.Expiration-now.Unix())*time.Second)
	}
	ok, err = s.client.SetNX(ctx, rec.Key+":lock", "True", wholeSeconds(lock)).Result()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: another attempt is taking over the orphaned record %s", ErrAlreadyInProgress, rec.Key)
	}
	return s.client.Set(ctx, rec.Key, val, ttl).Err()
}

// Get is GET key.
func (s *RedisStore) Get(ctx context.Context, key string) (Record, error) {
	raw, err := s.client.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, err
	}
	return DecodeRecord(key, raw)
}

// PutCompleted is SET key <record> EX ttl (no NX: the attempt owns the key).
func (s *RedisStore) PutCompleted(ctx context.Context, rec Record, now time.Time) error {
	val, err := EncodeRecord(rec)
	if err != nil {
		return err
	}
	return s.client.Set(ctx, rec.Key, val, ttlFor(rec.Expiration, now)).Err()
}

// Delete is DEL key.
func (s *RedisStore) Delete(ctx context.Context, key string) error {
	return s.client.Del(ctx, key).Err()
}
