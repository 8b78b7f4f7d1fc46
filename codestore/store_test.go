package codestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/coldstart-dev/coldstart/internal/natsutil"
)

// jsConn starts an embedded JetStream server without authentication and
// connects to it.
func jsConn(t *testing.T) *nats.Conn {
	t.Helper()
	s, err := natsutil.StartServer(natsutil.ServerConfig{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	nc, err := natsutil.Connect(natsutil.URL(s), "codestore-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDigestIsLambdaCodeSha256(t *testing.T) {
	sum := sha256.Sum256([]byte("zip"))
	if got, want := Digest([]byte("zip")), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		t.Fatalf("Digest = %q, want %q", got, want)
	}
	name, err := ObjectName(Digest([]byte("zip")))
	if err != nil || len(name) != 64 {
		t.Fatalf("ObjectName = %q, %v", name, err)
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := ObjectName(bad); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("ObjectName(%q): %v, want ErrInvalidDigest", bad, err)
		}
	}
}

func TestPutGetRoundTrip(t *testing.T) {
	nc := jsConn(t)
	ctx := testCtx(t)
	s, err := Open(ctx, nc, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1 << 10, 20 << 20} {
		data := randomBytes(t, n)
		d, err := s.Put(ctx, data)
		if err != nil {
			t.Fatalf("put %d bytes: %v", n, err)
		}
		if d != Digest(data) {
			t.Fatalf("Put returned %q, want Digest %q", d, Digest(data))
		}
		got, err := s.Get(ctx, d)
		if err != nil {
			t.Fatalf("get %d bytes: %v", n, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("get %d bytes: different bytes back (%d)", n, len(got))
		}
	}
	// A reader sees them too.
	r, err := OpenReader(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 4096)
	d, err := s.Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Get(ctx, d); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reader get: %v", err)
	}
}

func TestPutIsIdempotent(t *testing.T) {
	nc := jsConn(t)
	ctx := testCtx(t)
	s, err := Open(ctx, nc, 1)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 3*chunkSize+5)
	d1, err := s.Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	st, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	before, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := s.Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Fatalf("digests %q and %q for the same bytes", d1, d2)
	}
	after, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.State.Msgs != before.State.Msgs || after.State.LastSeq != before.State.LastSeq {
		t.Fatalf("second put wrote: %d msgs (last %d) before, %d (last %d) after",
			before.State.Msgs, before.State.LastSeq, after.State.Msgs, after.State.LastSeq)
	}
	obs, err := js.ObjectStore(ctx, Bucket)
	if err != nil {
		t.Fatal(err)
	}
	list, err := obs.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("%d objects, want 1", len(list))
	}
}

func TestGetMissingIsNotFound(t *testing.T) {
	nc := jsConn(t)
	ctx := testCtx(t)
	s, err := Open(ctx, nc, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, Digest([]byte("never put"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a digest never put: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "garbage"); !errors.Is(err, ErrInvalidDigest) {
		t.Fatalf("Get of garbage: %v, want ErrInvalidDigest", err)
	}
}

func TestOpenReaderDoesNotCreate(t *testing.T) {
	nc := jsConn(t)
	ctx := testCtx(t)
	if _, err := OpenReader(ctx, nc); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("OpenReader without a bucket: %v, want ErrBucketNotFound", err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.Stream(ctx, StreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("the bucket exists after OpenReader: %v", err)
	}
}

func TestOpenConcurrently(t *testing.T) {
	nc := jsConn(t)
	ctx := testCtx(t)
	errs := make(chan error, 4)
	for i := 0; i < cap(errs); i++ {
		go func() {
			_, err := Open(ctx, nc, 1)
			errs <- err
		}()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
}

// corruptions overwrite the object under a digest's name through the raw
// object store API.
func TestGetCorruptIsErrCorrupt(t *testing.T) {
	nc := jsConn(t)
	ctx := testCtx(t)
	s, err := Open(ctx, nc, 1)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	obs, err := js.ObjectStore(ctx, Bucket)
	if err != nil {
		t.Fatal(err)
	}
	good := randomBytes(t, 2*chunkSize+100)
	for _, tc := range []struct {
		name    string
		corrupt func(name string)
	}{
		{"other bytes", func(name string) {
			if _, err := obs.PutBytes(ctx, name, randomBytes(t, len(good))); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated copy", func(name string) {
			if _, err := obs.PutBytes(ctx, name, good[:len(good)/2]); err != nil {
				t.Fatal(err)
			}
		}},
		{"lost chunk", func(name string) {
			info, err := obs.GetInfo(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := js.Stream(ctx, StreamName)
			m, err := st.GetLastMsgForSubject(ctx, "$O."+Bucket+".C."+info.NUID)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.DeleteMsg(ctx, m.Sequence); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		good = randomBytes(t, len(good))
		d, err := s.Put(ctx, good)
		if err != nil {
			t.Fatal(err)
		}
		name, _ := ObjectName(d)
		tc.corrupt(name)
		_, err = s.Get(ctx, d)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: Get: %v, want ErrCorrupt", tc.name, err)
		}
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Digest != d || ce.Detail == "" {
			t.Fatalf("%s: %v is not a *CorruptError naming the digest", tc.name, err)
		}
		// Put repairs it.
		if _, err := s.Put(ctx, good); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(ctx, d); err != nil || !bytes.Equal(got, good) {
			t.Fatalf("%s: Get after a repairing Put: %v", tc.name, err)
		}
	}
}
