// Package codestore keeps function code bundles (Lambda deployment
// packages) in a JetStream Object Store bucket, by digest, and unpacks
// them on workers into a read-only cache. The Raft log holds only the
// digest. See DESIGN.md.
package codestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the Object Store bucket of code bundles; its stream is
// "OBJ_" + Bucket and its subjects "$O.<Bucket>.>".
const Bucket = "cs-code"

// StreamName is the JetStream stream behind Bucket.
const StreamName = "OBJ_" + Bucket

// chunkSize is the bucket's message size: a 50 MB bundle is 100 messages,
// well under the server's 8 MB max payload.
const chunkSize = 512 << 10

// defaultGetTimeout bounds a Get whose context has no deadline: the
// object client would otherwise give the whole transfer its 5 s default.
const defaultGetTimeout = 5 * time.Minute

var (
	// ErrNotFound: no bundle was stored under the digest.
	ErrNotFound = errors.New("code bundle not found")
	// ErrCorrupt: the stored bundle is not the one the digest names
	// (truncated, missing chunks, other bytes). The error is a
	// *CorruptError.
	ErrCorrupt = errors.New("code bundle corrupt")
	// ErrInvalidDigest: the digest is not base64 of 32 bytes.
	ErrInvalidDigest = errors.New("invalid code digest")
)

// CorruptError says how a stored bundle fails its digest.
type CorruptError struct {
	Digest string
	Detail string
	Err    error // the object client's error, if any
}

func (e *CorruptError) Error() string {
	s := fmt.Sprintf("code bundle %s corrupt: %s", e.Digest, e.Detail)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }
func (e *CorruptError) Unwrap() error        { return e.Err }

// Digest is Lambda's CodeSha256 of a bundle: standard base64 of the
// SHA-256 of the zip's bytes.
func Digest(zip []byte) string {
	sum := sha256.Sum256(zip)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func decodeDigest(digest string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	b, err := base64.StdEncoding.DecodeString(digest)
	if err != nil || len(b) != sha256.Size {
		return sum, fmt.Errorf("%w: %q", ErrInvalidDigest, digest)
	}
	copy(sum[:], b)
	return sum, nil
}

// ObjectName is the object a digest's bundle is stored under: the
// SHA-256 in lower-case hex. Base64's '/' and '+' are awkward in object
// names and directory names alike; hex is neither.
func ObjectName(digest string) (string, error) {
	sum, err := decodeDigest(digest)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sum[:]), nil
}

// Store is the bucket of code bundles.
type Store struct {
	obs    jetstream.ObjectStore
	stream jetstream.Stream
}

// Open opens the bucket, creating it (file storage, replicas copies) if
// it does not exist yet. Gateways call it; several may at once: the
// server accepts a create of an identical stream, and a bucket someone
// else created with other settings is used as it is.
func Open(ctx context.Context, nc *nats.Conn, replicas int) (*Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if replicas < 1 {
		replicas = 1
	}
	obs, err := js.ObjectStore(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		obs, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      Bucket,
			Description: "coldstart function code bundles, by SHA-256",
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			obs, err = js.ObjectStore(ctx, Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("code bucket %s: %w", Bucket, err)
	}
	return bind(ctx, js, obs)
}

// OpenReader binds to the existing bucket without ever creating it:
// workers may read bundles only.
func OpenReader(ctx context.Context, nc *nats.Conn) (*Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	obs, err := js.ObjectStore(ctx, Bucket)
	if err != nil {
		return nil, fmt.Errorf("code bucket %s: %w", Bucket, err)
	}
	return bind(ctx, js, obs)
}

func bind(ctx context.Context, js jetstream.JetStream, obs jetstream.ObjectStore) (*Store, error) {
	st, err := js.Stream(ctx, StreamName)
	if err != nil {
		return nil, fmt.Errorf("code bucket %s: %w", Bucket, err)
	}
	return &Store{obs: obs, stream: st}, nil
}

// Put stores a bundle and returns its digest. The same bytes are stored
// once: a second Put finds them and writes nothing.
func (s *Store) Put(ctx context.Context, zip []byte) (string, error) {
	if len(zip) > MaxUnzipped {
		return "", fmt.Errorf("code bundle of %d bytes: more than %d", len(zip), MaxUnzipped)
	}
	digest := Digest(zip)
	name, _ := ObjectName(digest)
	info, err := s.obs.GetInfo(ctx, name)
	switch {
	case err == nil && info.Size == uint64(len(zip)) && info.Digest == objectDigest(zip):
		n, err := s.chunksStored(ctx, info)
		if err != nil {
			return "", fmt.Errorf("code bundle %s: %w", digest, err)
		}
		if n == uint64(info.Chunks) {
			return digest, nil
		}
	case err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) && !errors.Is(err, jetstream.ErrBadObjectMeta):
		return "", fmt.Errorf("code bundle %s: %w", digest, err)
	}
	// Absent, or there but broken: (re)write it. The object client
	// replaces the old chunks.
	_, err = s.obs.Put(ctx, jetstream.ObjectMeta{
		Name: name,
		Opts: &jetstream.ObjectMetaOptions{ChunkSize: chunkSize},
	}, bytes.NewReader(zip))
	if err != nil {
		return "", fmt.Errorf("put code bundle %s: %w", digest, err)
	}
	return digest, nil
}

// objectDigest is the digest the object client records for data.
func objectDigest(data []byte) string {
	sum := sha256.Sum256(data)
	return "SHA-256=" + base64.URLEncoding.EncodeToString(sum[:])
}

// Get returns the bundle stored under digest, checked against it: its
// size against the object's record, its SHA-256 against the digest. A
// bundle that fails either is ErrCorrupt; one never stored, ErrNotFound.
func (s *Store) Get(ctx context.Context, digest string) ([]byte, error) {
	sum, err := decodeDigest(digest)
	if err != nil {
		return nil, err
	}
	name := hex.EncodeToString(sum[:])
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultGetTimeout)
		defer cancel()
	}
	corrupt := func(detail string, err error) error {
		return &CorruptError{Digest: digest, Detail: detail, Err: err}
	}
	info, err := s.obs.GetInfo(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	if errors.Is(err, jetstream.ErrBadObjectMeta) {
		return nil, corrupt("unreadable object record", err)
	}
	if err != nil {
		return nil, fmt.Errorf("code bundle %s: %w", digest, err)
	}
	if info.Size > MaxUnzipped {
		return nil, corrupt(fmt.Sprintf("recorded size %d is more than any bundle", info.Size), nil)
	}
	if info.Size == 0 {
		// No zip is empty; and the object client would return at once.
		return nil, corrupt("empty object", nil)
	}
	// Chunks lost from the stream would leave the reader waiting for
	// them until the deadline: count them first.
	n, err := s.chunksStored(ctx, info)
	if err != nil {
		return nil, fmt.Errorf("code bundle %s: %w", digest, err)
	}
	if n != uint64(info.Chunks) {
		return nil, corrupt(fmt.Sprintf("%d of %d chunks stored", n, info.Chunks), nil)
	}
	res, err := s.obs.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	if err != nil {
		return nil, fmt.Errorf("code bundle %s: %w", digest, err)
	}
	defer res.Close()
	data, err := io.ReadAll(io.LimitReader(res, int64(info.Size)+1))
	if errors.Is(err, jetstream.ErrDigestMismatch) {
		return nil, corrupt("object digest mismatch", err)
	}
	if err != nil {
		return nil, fmt.Errorf("code bundle %s: %w", digest, err)
	}
	if uint64(len(data)) != info.Size {
		return nil, corrupt(fmt.Sprintf("%d bytes, recorded %d", len(data), info.Size), nil)
	}
	if sha256.Sum256(data) != sum {
		return nil, corrupt("SHA-256 mismatch", nil)
	}
	return data, nil
}

// chunksStored counts the stream's messages holding the object's chunks.
func (s *Store) chunksStored(ctx context.Context, info *jetstream.ObjectInfo) (uint64, error) {
	subject := "$O." + Bucket + ".C." + info.NUID
	si, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, err
	}
	return si.State.Subjects[subject], nil
}
