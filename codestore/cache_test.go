package codestore

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeGetter serves bundles from memory and counts fetches; gate, if
// set, holds every Get until closed.
type fakeGetter struct {
	mu    sync.Mutex
	blobs map[string][]byte
	gets  atomic.Int64
	gate  chan struct{}
}

func newFake(zips ...[]byte) *fakeGetter {
	g := &fakeGetter{blobs: map[string][]byte{}}
	for _, z := range zips {
		g.blobs[Digest(z)] = z
	}
	return g
}

func (g *fakeGetter) Get(ctx context.Context, digest string) ([]byte, error) {
	g.gets.Add(1)
	if g.gate != nil {
		select {
		case <-g.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	b, ok := g.blobs[digest]
	if !ok {
		return nil, ErrNotFound
	}
	return b, nil
}

func sampleZip(t testing.TB, body string) []byte {
	return makeZip(t,
		zfile{name: "bootstrap", body: "#!/bin/sh\n" + body, mode: 0o755},
		zfile{name: "src/app.py", body: "def handler(e, c):\n    return " + body + "\n"},
		zfile{name: "src/link", body: "app.py", mode: fs.ModeSymlink | 0o777},
	)
}

func TestCacheUnpacksReadOnly(t *testing.T) {
	z := sampleZip(t, "1")
	g := newFake(z)
	c := NewCache(t.TempDir(), g, 0)
	ctx := testCtx(t)
	dir, release, err := c.Dir(ctx, Digest(z))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	for name, want := range map[string]fs.FileMode{
		".":          fs.ModeDir | 0o555,
		"src":        fs.ModeDir | 0o555,
		"bootstrap":  0o555,
		"src/app.py": 0o444,
	} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "src/link")); err != nil || target != "app.py" {
		t.Errorf("src/link -> %q, %v", target, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "src/link")); err != nil || string(b) != "def handler(e, c):\n    return 1\n" {
		t.Errorf("read through the link: %q, %v", b, err)
	}
	name, _ := ObjectName(Digest(z))
	if filepath.Base(dir) != name {
		t.Errorf("dir %s is not named by the digest's hex %s", dir, name)
	}

	// A hit fetches nothing.
	dir2, release2, err := c.Dir(ctx, Digest(z))
	if err != nil {
		t.Fatal(err)
	}
	release2()
	if dir2 != dir || g.gets.Load() != 1 {
		t.Fatalf("second Dir: %s (first %s), %d fetches", dir2, dir, g.gets.Load())
	}
}

func TestCacheFetchesOnceForConcurrentCallers(t *testing.T) {
	z := sampleZip(t, "2")
	g := newFake(z)
	g.gate = make(chan struct{})
	c := NewCache(t.TempDir(), g, 0)
	ctx := testCtx(t)
	const n = 8
	var wg sync.WaitGroup
	dirs := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var release func()
			dirs[i], release, errs[i] = c.Dir(ctx, Digest(z))
			if release != nil {
				release()
			}
		}()
	}
	// Open the gate once one caller fetches and all the others wait
	// for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		w := c.waiters
		c.mu.Unlock()
		if g.gets.Load() >= 1 && w == n-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d fetches, %d waiting", g.gets.Load(), w)
		}
		time.Sleep(time.Millisecond)
	}
	close(g.gate)
	wg.Wait()
	for i := 0; i < n; i++ {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Fatalf("caller %d: %q %v", i, dirs[i], errs[i])
		}
	}
	if got := g.gets.Load(); got != 1 {
		t.Fatalf("%d fetches for one digest, want 1", got)
	}
}

func TestCacheRefusesCorruptAndKeepsServing(t *testing.T) {
	good, bad := sampleZip(t, "3"), sampleZip(t, "4")
	g := newFake(good)
	g.blobs[Digest(bad)] = good // the wrong bytes under bad's digest
	root := t.TempDir()
	c := NewCache(root, g, 0)
	ctx := testCtx(t)
	if _, _, err := c.Dir(ctx, Digest(bad)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt blob: %v, want ErrCorrupt", err)
	}
	assertOnly(t, root)
	// Not cached: asked again, it fetches again.
	if _, _, err := c.Dir(ctx, Digest(bad)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt blob again: %v", err)
	}
	if g.gets.Load() != 2 {
		t.Fatalf("%d fetches, want 2 (errors are not cached)", g.gets.Load())
	}
	dir, release, err := c.Dir(ctx, Digest(good))
	if err != nil {
		t.Fatal(err)
	}
	release()
	name, _ := ObjectName(Digest(good))
	assertOnly(t, root, name)
	if _, err := os.Stat(filepath.Join(dir, "bootstrap")); err != nil {
		t.Fatal(err)
	}

	// A blob that is what its digest says but does not unpack safely.
	evil := makeZip(t, zfile{name: "../evil", body: "x"})
	g.blobs[Digest(evil)] = evil
	if _, _, err := c.Dir(ctx, Digest(evil)); !errors.Is(err, ErrInvalidZip) {
		t.Fatalf("unsafe bundle: %v, want ErrInvalidZip", err)
	}
	assertOnly(t, root, name)
}

// assertOnly checks that root holds exactly the named entries.
func assertOnly(t *testing.T, root string, names ...string) {
	t.Helper()
	des, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range des {
		got = append(got, de.Name())
	}
	if len(got) != len(names) {
		t.Fatalf("%s holds %q, want %q", root, got, names)
	}
	for i := range names {
		if got[i] != names[i] {
			t.Fatalf("%s holds %q, want %q", root, got, names)
		}
	}
}

func TestCacheEvictsLeastRecentlyUsedUnusedDirs(t *testing.T) {
	// Three bundles of ~100 KB unpacked each, room for two.
	mk := func(b byte) []byte {
		body := make([]byte, 100<<10)
		for i := range body {
			body[i] = b
		}
		return makeZip(t, zfile{name: "data", body: string(body)})
	}
	a, b, d := mk('a'), mk('b'), mk('d')
	g := newFake(a, b, d)
	root := t.TempDir()
	c := NewCache(root, g, 250<<10)
	ctx := testCtx(t)
	exists := func(z []byte) bool {
		name, _ := ObjectName(Digest(z))
		_, err := os.Stat(filepath.Join(root, name))
		return err == nil
	}
	get := func(z []byte) func() {
		t.Helper()
		_, release, err := c.Dir(ctx, Digest(z))
		if err != nil {
			t.Fatal(err)
		}
		return release
	}
	get(a)()
	get(b)()
	get(a)() // b is now the least recently used
	get(d)()
	if !exists(a) || exists(b) || !exists(d) {
		t.Fatalf("after a, b, a, d: a %v b %v d %v; want b evicted", exists(a), exists(b), exists(d))
	}
	// A directory in use is never evicted, even over the limit.
	holdA := get(a)
	holdD := get(d)
	holdB := get(b) // fetched again: 300 KB, all in use
	if !exists(a) || !exists(b) || !exists(d) {
		t.Fatal("a directory in use was evicted")
	}
	holdA()
	if exists(a) {
		t.Fatal("a stayed after its release, over the limit")
	}
	holdD()
	holdB()
	if !exists(b) || !exists(d) {
		t.Fatal("evicted below the limit")
	}
	if g.gets.Load() != 4 {
		t.Fatalf("%d fetches, want 4", g.gets.Load())
	}
}

func TestCacheAdoptsAnEarlierRunsDirectories(t *testing.T) {
	z := sampleZip(t, "5")
	root := t.TempDir()
	c1 := NewCache(root, newFake(z), 0)
	ctx := testCtx(t)
	dir, release, err := c1.Dir(ctx, Digest(z))
	if err != nil {
		t.Fatal(err)
	}
	release()
	if err := os.Mkdir(filepath.Join(root, ".tmp-leftover"), 0o755); err != nil {
		t.Fatal(err)
	}
	g := newFake(z)
	c2 := NewCache(root, g, 0)
	dir2, release2, err := c2.Dir(ctx, Digest(z))
	if err != nil {
		t.Fatal(err)
	}
	release2()
	if dir2 != dir || g.gets.Load() != 0 {
		t.Fatalf("restarted cache: %s, %d fetches", dir2, g.gets.Load())
	}
	name, _ := ObjectName(Digest(z))
	assertOnly(t, root, name)
}

func TestCacheOverStore(t *testing.T) {
	nc := jsConn(t)
	ctx := testCtx(t)
	s, err := Open(ctx, nc, 1)
	if err != nil {
		t.Fatal(err)
	}
	good, victim := sampleZip(t, "6"), sampleZip(t, "7")
	dGood, err := s.Put(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	dVictim, err := s.Put(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	obs, err := js.ObjectStore(ctx, Bucket)
	if err != nil {
		t.Fatal(err)
	}
	name, _ := ObjectName(dVictim)
	if _, err := obs.PutBytes(ctx, name, victim[:len(victim)-10]); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	c := NewCache(root, s, 0)
	if _, _, err := c.Dir(ctx, dVictim); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated blob: %v, want ErrCorrupt", err)
	}
	assertOnly(t, root)
	dir, release, err := c.Dir(ctx, dGood)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if fi, err := os.Stat(filepath.Join(dir, "bootstrap")); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("bootstrap: %v %v", fi, err)
	}
}
