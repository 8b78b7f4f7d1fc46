package codestore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Getter fetches a bundle by digest (*Store does).
type Getter interface {
	Get(ctx context.Context, digest string) ([]byte, error)
}

// Cache keeps bundles unpacked on a worker's disk, one read-only directory
// per digest: dir/<hex sha256>/. A directory appears by rename once fully
// unpacked, so any such directory is complete; temporary ones are
// dir/.tmp-*, and evicted ones are renamed to dir/.old-* before removal.
type Cache struct {
	dir      string
	src      Getter
	maxBytes int64

	mu       sync.Mutex
	loaded   bool
	entries  map[string]*cacheEntry // by hex name
	inflight map[string]*fetch
	waiters  int // callers waiting on another's fetch
	total    int64
}

type cacheEntry struct {
	name    string
	size    int64
	refs    int
	lastUse time.Time
}

type fetch struct {
	done chan struct{}
	err  error
}

// NewCache caches the bundles src returns under dir, keeping at most
// maxBytes unpacked (0: no limit) beyond the directories in use.
func NewCache(dir string, src Getter, maxBytes int64) *Cache {
	return &Cache{
		dir:      dir,
		src:      src,
		maxBytes: maxBytes,
		entries:  map[string]*cacheEntry{},
		inflight: map[string]*fetch{},
	}
}

// Dir returns the directory holding the bundle of digest unpacked,
// fetching and unpacking it on a miss (once for concurrent callers of
// one digest), and a release func to call once the directory is no
// longer used (the sandbox ended); until then it is never evicted.
// Files are read-only (0444, or 0555 when the zip marks them
// executable), directories 0555. A bundle that fails its digest or does
// not unpack safely is an error and leaves nothing behind.
func (c *Cache) Dir(ctx context.Context, digest string) (string, func(), error) {
	sum, err := decodeDigest(digest)
	if err != nil {
		return "", nil, err
	}
	name := hex.EncodeToString(sum[:])
	for {
		c.mu.Lock()
		if err := c.loadLocked(); err != nil {
			c.mu.Unlock()
			return "", nil, err
		}
		if e, ok := c.entries[name]; ok {
			e.refs++
			e.lastUse = time.Now()
			c.mu.Unlock()
			return filepath.Join(c.dir, name), c.releaser(e), nil
		}
		f, ok := c.inflight[name]
		if !ok {
			f = &fetch{done: make(chan struct{})}
			c.inflight[name] = f
			c.mu.Unlock()
			e, err := c.fill(ctx, digest, sum, name)
			f.err = err
			c.mu.Lock()
			delete(c.inflight, name)
			c.mu.Unlock()
			close(f.done)
			if err != nil {
				return "", nil, err
			}
			return filepath.Join(c.dir, name), c.releaser(e), nil
		}
		c.waiters++
		c.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
		}
		c.mu.Lock()
		c.waiters--
		c.mu.Unlock()
		if ctx.Err() != nil {
			return "", nil, ctx.Err()
		}
		if f.err != nil {
			// The fetch gave up because its caller did; this one has
			// not, so it tries itself.
			if (errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) && ctx.Err() == nil {
				continue
			}
			return "", nil, f.err
		}
	}
}

func (c *Cache) releaser(e *cacheEntry) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			e.refs--
			e.lastUse = time.Now()
			victims := c.evictLocked()
			c.mu.Unlock()
			removeAll(victims)
		})
	}
}

// fill fetches, verifies and unpacks a bundle, and records it, held once
// for the caller (so it is not evicted before the caller has it, however
// small maxBytes is).
func (c *Cache) fill(ctx context.Context, digest string, sum [sha256.Size]byte, name string) (*cacheEntry, error) {
	data, err := c.src.Get(ctx, digest)
	if err != nil {
		return nil, err
	}
	// The source may be anything: the digest is checked here too.
	if sha256.Sum256(data) != sum {
		return nil, &CorruptError{Digest: digest, Detail: "SHA-256 mismatch"}
	}
	tmp, err := os.MkdirTemp(c.dir, ".tmp-"+name+"-")
	if err != nil {
		return nil, err
	}
	size, err := unpack(data, tmp)
	if err != nil {
		removeAll([]string{tmp})
		return nil, fmt.Errorf("unpack code bundle %s: %w", digest, err)
	}
	final := filepath.Join(c.dir, name)
	c.mu.Lock()
	if err := os.Rename(tmp, final); err != nil {
		c.mu.Unlock()
		removeAll([]string{tmp})
		return nil, fmt.Errorf("unpack code bundle %s: %w", digest, err)
	}
	e := &cacheEntry{name: name, size: size, refs: 1, lastUse: time.Now()}
	c.entries[name] = e
	c.total += size
	victims := c.evictLocked()
	c.mu.Unlock()
	removeAll(victims)
	return e, nil
}

// evictLocked removes from the index, and renames out of the way, the
// least recently used directories no one holds until the cache fits
// maxBytes; it returns the renamed paths for the caller to delete
// outside the lock.
func (c *Cache) evictLocked() []string {
	if c.maxBytes <= 0 || c.total <= c.maxBytes {
		return nil
	}
	var idle []*cacheEntry
	for _, e := range c.entries {
		if e.refs == 0 {
			idle = append(idle, e)
		}
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i].lastUse.Before(idle[j].lastUse) })
	var victims []string
	for _, e := range idle {
		if c.total <= c.maxBytes {
			break
		}
		old := filepath.Join(c.dir, ".old-"+e.name+"-"+randSuffix())
		if err := os.Rename(filepath.Join(c.dir, e.name), old); err != nil {
			continue // still indexed: tried again on the next release
		}
		delete(c.entries, e.name)
		c.total -= e.size
		victims = append(victims, old)
	}
	return victims
}

// loadLocked indexes what an earlier run left in dir (complete
// directories only: the rest is removed), once.
func (c *Cache) loadLocked() error {
	if c.loaded {
		return nil
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	des, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	var junk []string
	for _, de := range des {
		name := de.Name()
		p := filepath.Join(c.dir, name)
		if strings.HasPrefix(name, ".tmp-") || strings.HasPrefix(name, ".old-") {
			junk = append(junk, p)
			continue
		}
		if b, err := hex.DecodeString(name); err != nil || len(b) != sha256.Size || !de.IsDir() {
			continue
		}
		size, err := dirSize(p)
		if err != nil {
			junk = append(junk, p)
			continue
		}
		mod := time.Now()
		if fi, err := de.Info(); err == nil {
			mod = fi.ModTime()
		}
		c.entries[name] = &cacheEntry{name: name, size: size, lastUse: mod}
		c.total += size
	}
	c.loaded = true
	removeAll(junk)
	return nil
}

func dirSize(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		} else if d.Type()&fs.ModeSymlink != 0 {
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			n += int64(len(t))
		}
		return nil
	})
	return n, err
}

func randSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// removeAll deletes trees whose directories are read-only: they are made
// writable first (root needs not, everyone else does).
func removeAll(paths []string) {
	for _, p := range paths {
		filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(q, 0o755)
			}
			return nil
		})
		os.RemoveAll(p)
	}
}

// unpack writes a bundle into the empty directory root, checked as
// Inspect checks it, and returns the bytes written. Directories and
// files come first, symlinks last, so nothing is ever written through
// a link; directories become read-only at the end.
func unpack(data []byte, root string) (int64, error) {
	zr, err := openZip(data)
	if err != nil {
		return 0, err
	}
	p, err := newPlan(zr)
	if err != nil {
		return 0, err
	}
	dirs := []string{}
	for name, k := range p.nodes {
		if k == kindDir {
			dirs = append(dirs, name)
		}
	}
	sort.Strings(dirs) // parents before children
	for _, d := range dirs {
		if err := os.Mkdir(filepath.Join(root, filepath.FromSlash(d)), 0o755); err != nil {
			return 0, err
		}
	}
	c := &counter{n: p.linkLen, limit: maxUnzipped}
	for _, e := range p.entries {
		if e.kind != kindFile {
			continue
		}
		if err := writeFile(root, e, c); err != nil {
			return 0, err
		}
	}
	for _, e := range p.entries {
		if e.kind == kindLink {
			if err := os.Symlink(e.target, filepath.Join(root, filepath.FromSlash(e.name))); err != nil {
				return 0, err
			}
		}
	}
	// Deepest first: a read-only parent would refuse the child's chmod
	// for anyone but root.
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	for _, d := range append(dirs, ".") {
		if err := os.Chmod(filepath.Join(root, filepath.FromSlash(d)), 0o555); err != nil {
			return 0, err
		}
	}
	return c.n, nil
}

func writeFile(root string, e entry, c *counter) error {
	// O_EXCL|O_NOFOLLOW: the plan admits no duplicate and no link on the
	// way, and the file system is held to that.
	f, err := os.OpenFile(filepath.Join(root, filepath.FromSlash(e.name)), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if err := c.copy(f, e); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	mode := fs.FileMode(0o444)
	if e.exec {
		mode = 0o555
	}
	return os.Chmod(filepath.Join(root, filepath.FromSlash(e.name)), mode)
}
