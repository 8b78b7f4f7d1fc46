package codestore

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// Lambda's limits on a deployment package.
const (
	MaxZipped   = 50 << 20  // a zip uploaded directly
	MaxUnzipped = 250 << 20 // its contents, unpacked
	MaxFiles    = 20000     // entries in one bundle
	// maxNames bounds Bundle.Names: enough to show a user what the bundle
	// holds without copying every name of a node_modules tree.
	maxNames = 100
	// maxLinkTarget bounds a symlink's target; a longer one is not a path
	// any file system takes.
	maxLinkTarget = 4096
	// maxLinkDepth bounds symlink chains while resolving them, as the
	// kernel does (ELOOP).
	maxLinkDepth = 40
)

// The limits Inspect and the cache apply; variables so the tests can lower
// them instead of building a 250 MB bomb.
var (
	maxUnzipped int64 = MaxUnzipped
	maxFiles          = MaxFiles
)

// ErrInvalidZip is what every refusal of a bundle matches (errors.Is); the
// error itself is an *InvalidZipError naming the entry and the reason.
var ErrInvalidZip = errors.New("invalid code bundle")

// InvalidZipError says why a bundle was refused.
type InvalidZipError struct {
	Name   string // the zip entry, if one is to blame
	Reason string
	Err    error // the archive/zip error, if any
}

func (e *InvalidZipError) Error() string {
	var b strings.Builder
	b.WriteString("invalid code bundle")
	if e.Name != "" {
		fmt.Fprintf(&b, ": %q", e.Name)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *InvalidZipError) Is(target error) bool { return target == ErrInvalidZip }
func (e *InvalidZipError) Unwrap() error        { return e.Err }

func invalid(name, reason string, err error) error {
	return &InvalidZipError{Name: name, Reason: reason, Err: err}
}

// Bundle describes a valid code bundle.
type Bundle struct {
	Files               int      // regular files and symlinks
	Unzipped            int64    // bytes they unpack to (decompressed, counted)
	HasBootstrap        bool     // a "bootstrap" at the root (custom runtimes)
	BootstrapExecutable bool     // ... with an execute bit in the zip
	Names               []string // the first names (files and links) in zip order

	files map[string]bool // every file and link, for HasFile
}

// HasFile says whether the bundle holds a file or link called name, a
// slash-separated path relative to the bundle's root ("app.py",
// "src/index.mjs").
func HasFile(b Bundle, name string) bool {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	if b.files != nil {
		return b.files[name]
	}
	for _, n := range b.Names {
		if n == name {
			return true
		}
	}
	return false
}

type kind int

const (
	kindDir kind = iota
	kindFile
	kindLink
)

// entry is a validated zip entry.
type entry struct {
	f      *zip.File
	name   string // cleaned, relative, slash-separated; "" is never used
	kind   kind
	exec   bool
	target string // a link's target
}

// plan is a bundle whose names, tree and links have been checked, before
// any file content is decompressed.
type plan struct {
	entries []entry
	nodes   map[string]kind // every path of the tree, implicit parents included
	links   map[string]string
	linkLen int64 // bytes of link targets, counted into the unpacked size
}

func openZip(data []byte) (*zip.Reader, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, invalid("", "not a zip file", err)
	}
	return zr, nil
}

// cleanName validates a zip entry's name and returns it cleaned. Names
// are refused, not repaired: a bundle that tries to climb out of its
// directory is hostile or broken either way.
func cleanName(raw string) (string, bool, error) {
	if raw == "" || strings.ContainsRune(raw, 0) {
		return "", false, invalid(raw, "empty name or NUL byte", nil)
	}
	if strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, `\`) ||
		(len(raw) >= 2 && raw[1] == ':' && (raw[0]|0x20 >= 'a' && raw[0]|0x20 <= 'z')) {
		return "", false, invalid(raw, "absolute path", nil)
	}
	// Backslashes are file name characters on Linux, but an unpacker on
	// another system reads them as separators: a ".." between them is a
	// traversal all the same.
	for _, part := range strings.FieldsFunc(raw, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == ".." {
			return "", false, invalid(raw, "path traversal", nil)
		}
	}
	isDir := strings.HasSuffix(raw, "/")
	name := path.Clean(raw)
	if name == "." {
		if isDir {
			return "", true, nil // "./": the root itself
		}
		return "", false, invalid(raw, "empty name", nil)
	}
	return name, isDir, nil
}

func newPlan(zr *zip.Reader) (*plan, error) {
	if len(zr.File) > maxFiles {
		return nil, invalid("", fmt.Sprintf("%d entries, more than %d", len(zr.File), maxFiles), nil)
	}
	p := &plan{nodes: map[string]kind{}, links: map[string]string{}}
	// addDir records name and its parents as directories.
	addDir := func(raw, name string) error {
		for d := name; d != "." && d != ""; d = path.Dir(d) {
			k, seen := p.nodes[d]
			if seen && k != kindDir {
				return invalid(raw, fmt.Sprintf("%q is a file and a directory", d), nil)
			}
			if seen {
				break
			}
			p.nodes[d] = kindDir
		}
		return nil
	}
	for _, f := range zr.File {
		name, isDir, err := cleanName(f.Name)
		if err != nil {
			return nil, err
		}
		mode := f.Mode()
		if name == "" {
			continue
		}
		switch {
		case isDir || mode.IsDir():
			if err := addDir(f.Name, name); err != nil {
				return nil, err
			}
			p.entries = append(p.entries, entry{f: f, name: name, kind: kindDir})
			continue
		case mode&fs.ModeSymlink != 0:
			target, err := readLink(f)
			if err != nil {
				return nil, err
			}
			p.linkLen += int64(len(target))
			if p.linkLen > maxUnzipped {
				return nil, invalid(f.Name, fmt.Sprintf("unpacks to more than %d bytes", maxUnzipped), nil)
			}
			p.links[name] = target
			p.entries = append(p.entries, entry{f: f, name: name, kind: kindLink, target: target})
		case mode.IsRegular():
			p.entries = append(p.entries, entry{f: f, name: name, kind: kindFile, exec: mode&0o111 != 0})
		default:
			// Devices, pipes and sockets have no place in a deployment
			// package.
			return nil, invalid(f.Name, "not a regular file, directory or symlink: "+mode.String(), nil)
		}
		if _, seen := p.nodes[name]; seen {
			return nil, invalid(f.Name, "duplicate name", nil)
		}
		if err := addDir(f.Name, path.Dir(name)); err != nil {
			return nil, err
		}
		if p.entries[len(p.entries)-1].kind == kindLink {
			p.nodes[name] = kindLink
		} else {
			p.nodes[name] = kindFile
		}
	}
	// addDir refused a file or directory below a file or a symlink: it
	// would be written through the link.
	for name, target := range p.links {
		if _, err := p.resolve(path.Dir(name), target, 0); err != nil {
			return nil, invalid(name, "symlink to "+target+": "+err.Error(), nil)
		}
	}
	return p, nil
}

func readLink(f *zip.File) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", invalid(f.Name, "unreadable", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
	if err != nil {
		return "", invalid(f.Name, "unreadable", err)
	}
	if len(b) == 0 || len(b) > maxLinkTarget || bytes.IndexByte(b, 0) >= 0 {
		return "", invalid(f.Name, "bad symlink target", nil)
	}
	return string(b), nil
}

var errEscapes = errors.New("leads out of the bundle")

// resolve follows target from directory dir (both relative to the root)
// through the bundle's own links, as the kernel would once unpacked, and
// returns where it ends. Checking the cleaned target alone is not enough:
// "a -> x/.." is inside, but not when x is itself a link to "..".
func (p *plan) resolve(dir, target string, depth int) (string, error) {
	if depth > maxLinkDepth {
		return "", errors.New("too many levels of symlinks")
	}
	if strings.HasPrefix(target, "/") {
		return "", errEscapes
	}
	var cur []string
	if dir != "." && dir != "" {
		cur = strings.Split(dir, "/")
	}
	for _, part := range strings.Split(target, "/") {
		switch part {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return "", errEscapes
			}
			cur = cur[:len(cur)-1]
			continue
		}
		cur = append(cur, part)
		at := strings.Join(cur, "/")
		if t, ok := p.links[at]; ok {
			r, err := p.resolve(path.Dir(at), t, depth+1)
			if err != nil {
				return "", err
			}
			cur = nil
			if r != "" {
				cur = strings.Split(r, "/")
			}
		}
	}
	return strings.Join(cur, "/"), nil
}

// counter counts decompressed bytes across a bundle and fails past the
// limit. The sizes in the zip's headers are the archive's word, not its
// content: a bomb lies in them.
type counter struct {
	n, limit int64
}

func (c *counter) copy(w io.Writer, e entry) error {
	rc, err := e.f.Open()
	if err != nil {
		return invalid(e.f.Name, "unreadable", err)
	}
	defer rc.Close()
	r := &readErr{r: io.LimitReader(rc, c.limit-c.n+1)}
	n, err := io.Copy(w, r)
	c.n += n
	if r.err != nil {
		return invalid(e.f.Name, "corrupt entry", r.err)
	}
	if err != nil {
		return err // the writer's (a full disk while unpacking)
	}
	if c.n > c.limit {
		return invalid(e.f.Name, fmt.Sprintf("unpacks to more than %d bytes", c.limit), nil)
	}
	return nil
}

// readErr remembers a read error, to tell a broken archive from a failing
// destination.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// Inspect checks a bundle the way an upload is validated: a zip whose
// entries stay inside its root (no "..", no absolute names, no symlink
// leading out, no file below a symlink), at most MaxFiles entries and
// MaxUnzipped bytes decompressed. Every entry is decompressed (and its
// CRC checked) to count its real size. Any refusal is ErrInvalidZip.
func Inspect(data []byte) (Bundle, error) {
	zr, err := openZip(data)
	if err != nil {
		return Bundle{}, err
	}
	p, err := newPlan(zr)
	if err != nil {
		return Bundle{}, err
	}
	c := &counter{n: p.linkLen, limit: maxUnzipped}
	b := Bundle{files: map[string]bool{}}
	for _, e := range p.entries {
		if e.kind == kindDir {
			continue
		}
		b.Files++
		b.files[e.name] = true
		if len(b.Names) < maxNames {
			b.Names = append(b.Names, e.name)
		}
		if e.kind == kindFile {
			if err := c.copy(io.Discard, e); err != nil {
				return Bundle{}, err
			}
		}
	}
	b.Unzipped = c.n
	if k, ok := p.nodes["bootstrap"]; ok && k != kindDir {
		b.HasBootstrap = true
		b.BootstrapExecutable = p.executable("bootstrap")
	}
	return b, nil
}

// executable says whether name, after its links, is a file with an
// execute bit.
func (p *plan) executable(name string) bool {
	if t, ok := p.links[name]; ok {
		r, err := p.resolve(path.Dir(name), t, 0)
		if err != nil {
			return false
		}
		name = r
	}
	for _, e := range p.entries {
		if e.name == name && e.kind == kindFile {
			return e.exec
		}
	}
	return false
}
