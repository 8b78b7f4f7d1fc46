package codestore

import (
	"archive/zip"
	"bytes"
	"errors"
	"io/fs"
	"testing"
)

// zfile is one entry of a test zip.
type zfile struct {
	name string
	body string
	mode fs.FileMode // 0: a regular 0644 file (or a directory for a name ending in '/')
}

func makeZip(t testing.TB, files ...zfile) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate}
		switch {
		case f.mode != 0:
			h.SetMode(f.mode)
		case len(f.name) > 0 && f.name[len(f.name)-1] == '/':
			h.SetMode(fs.ModeDir | 0o755)
		default:
			h.SetMode(0o644)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestInspectAcceptsABundleWithAnExecutableBootstrap(t *testing.T) {
	z := makeZip(t,
		zfile{name: "bootstrap", body: "#!/bin/sh\necho hi\n", mode: 0o755},
		zfile{name: "lib/", mode: 0},
		zfile{name: "lib/util.py", body: "x = 1\n"},
		zfile{name: "app.py", body: "def handler(e, c): return e\n"},
		zfile{name: "bin/tool", body: "ELF", mode: 0o755},
		zfile{name: "lib/link", body: "../bin/tool", mode: fs.ModeSymlink | 0o777},
	)
	b, err := Inspect(z)
	if err != nil {
		t.Fatal(err)
	}
	if !b.HasBootstrap || !b.BootstrapExecutable {
		t.Errorf("bootstrap: has %v executable %v", b.HasBootstrap, b.BootstrapExecutable)
	}
	if b.Files != 5 {
		t.Errorf("Files = %d, want 5", b.Files)
	}
	want := int64(len("#!/bin/sh\necho hi\n") + len("x = 1\n") + len("def handler(e, c): return e\n") + len("ELF") + len("../bin/tool"))
	if b.Unzipped != want {
		t.Errorf("Unzipped = %d, want %d", b.Unzipped, want)
	}
	for _, name := range []string{"app.py", "./lib/util.py", "lib/link", "bootstrap"} {
		if !HasFile(b, name) {
			t.Errorf("HasFile(%q) = false", name)
		}
	}
	for _, name := range []string{"index.js", "lib", "util.py"} {
		if HasFile(b, name) {
			t.Errorf("HasFile(%q) = true", name)
		}
	}
	if len(b.Names) != 5 || b.Names[0] != "bootstrap" {
		t.Errorf("Names = %q", b.Names)
	}

	// A bootstrap without an execute bit is reported as such.
	b, err = Inspect(makeZip(t, zfile{name: "bootstrap", body: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if !b.HasBootstrap || b.BootstrapExecutable {
		t.Errorf("non-executable bootstrap: has %v executable %v", b.HasBootstrap, b.BootstrapExecutable)
	}
}

func TestInspectNamesAreBounded(t *testing.T) {
	var files []zfile
	for i := 0; i < 150; i++ {
		files = append(files, zfile{name: "f/" + string(rune('a'+i%26)) + string(rune('a'+i/26)), body: "x"})
	}
	b, err := Inspect(makeZip(t, files...))
	if err != nil {
		t.Fatal(err)
	}
	if b.Files != 150 || len(b.Names) != maxNames {
		t.Fatalf("Files %d, Names %d", b.Files, len(b.Names))
	}
	if !HasFile(b, files[149].name) {
		t.Error("HasFile misses a file beyond Names")
	}
}

func TestInspectRefuses(t *testing.T) {
	link := fs.ModeSymlink | 0o777
	for _, tc := range []struct {
		name string
		zip  []byte
	}{
		{"garbage", []byte("this is not a zip file at all")},
		{"empty input", nil},
		{"traversal", makeZip(t, zfile{name: "../evil", body: "x"})},
		{"traversal inside", makeZip(t, zfile{name: "a/../../evil", body: "x"})},
		{"backslash traversal", makeZip(t, zfile{name: `a\..\..\evil`, body: "x"})},
		{"absolute", makeZip(t, zfile{name: "/etc/cron.d/evil", body: "x"})},
		{"drive letter", makeZip(t, zfile{name: "C:/evil", body: "x"})},
		{"absolute symlink", makeZip(t, zfile{name: "l", body: "/etc/passwd", mode: link})},
		{"escaping symlink", makeZip(t, zfile{name: "a/l", body: "../../etc/passwd", mode: link})},
		{"symlink chain escaping", makeZip(t,
			zfile{name: "x/d", body: "..", mode: link},
			zfile{name: "l", body: "x/d/..", mode: link})},
		{"symlink loop", makeZip(t,
			zfile{name: "a", body: "b", mode: link},
			zfile{name: "b", body: "a", mode: link})},
		{"file below a symlink", makeZip(t,
			zfile{name: "d", body: "sub", mode: link},
			zfile{name: "d/f", body: "x"})},
		{"duplicate", makeZip(t, zfile{name: "a", body: "1"}, zfile{name: "a", body: "2"})},
		{"file and directory", makeZip(t, zfile{name: "a", body: "1"}, zfile{name: "a/b", body: "2"})},
		{"device", makeZip(t, zfile{name: "dev", mode: fs.ModeDevice | 0o644})},
	} {
		_, err := Inspect(tc.zip)
		if !errors.Is(err, ErrInvalidZip) {
			t.Errorf("%s: %v, want ErrInvalidZip", tc.name, err)
			continue
		}
		var ie *InvalidZipError
		if !errors.As(err, &ie) || ie.Reason == "" {
			t.Errorf("%s: %v is not an *InvalidZipError with a reason", tc.name, err)
		}
	}
}

func TestInspectAcceptsLinksThatStayInside(t *testing.T) {
	link := fs.ModeSymlink | 0o777
	b, err := Inspect(makeZip(t,
		zfile{name: "node_modules/pkg/bin/cli.js", body: "x", mode: 0o755},
		zfile{name: "node_modules/.bin/cli", body: "../pkg/bin/cli.js", mode: link},
		zfile{name: "x/d", body: "..", mode: link},
		zfile{name: "bootstrap", body: "node_modules/.bin/cli", mode: link},
	))
	if err != nil {
		t.Fatal(err)
	}
	if !b.HasBootstrap || !b.BootstrapExecutable {
		t.Errorf("bootstrap through links: has %v executable %v", b.HasBootstrap, b.BootstrapExecutable)
	}
}

// withLimits lowers the bundle limits for one test.
func withLimits(t *testing.T, unzipped int64, files int) {
	t.Helper()
	u, f := maxUnzipped, maxFiles
	maxUnzipped, maxFiles = unzipped, files
	t.Cleanup(func() { maxUnzipped, maxFiles = u, f })
}

// bomb is a few KB of zip that inflates to n bytes of zeros.
func bomb(t testing.TB, n int) []byte {
	t.Helper()
	return makeZip(t, zfile{name: "zeros", body: string(make([]byte, n))})
}

func TestInspectRefusesAZipBomb(t *testing.T) {
	withLimits(t, 1<<20, MaxFiles)
	z := bomb(t, 4<<20)
	if len(z) > 16<<10 {
		t.Fatalf("the bomb is %d bytes", len(z))
	}
	if _, err := Inspect(z); !errors.Is(err, ErrInvalidZip) {
		t.Fatalf("bomb: %v, want ErrInvalidZip", err)
	}
	// The sum over files counts, not each file.
	var files []zfile
	for i := 0; i < 4; i++ {
		files = append(files, zfile{name: "z" + string(rune('0'+i)), body: string(make([]byte, 300<<10))})
	}
	if _, err := Inspect(makeZip(t, files...)); !errors.Is(err, ErrInvalidZip) {
		t.Fatalf("four files of 300 KiB under a 1 MiB limit: %v, want ErrInvalidZip", err)
	}
	// Under the limit it is fine.
	if _, err := Inspect(bomb(t, 1<<19)); err != nil {
		t.Fatalf("512 KiB: %v", err)
	}
}

func TestInspectRefusesAZipWhoseHeaderLies(t *testing.T) {
	withLimits(t, 1<<20, MaxFiles)
	// Claim 10 bytes, hold 2 MiB: the limit counts what inflates.
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "liar", Method: zip.Deflate}
	h.SetMode(0o644)
	w, err := zw.CreateHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(make([]byte, 2<<20))
	zw.Close()
	z := buf.Bytes()
	// Patch the sizes in the central directory to 10 bytes.
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	zr.File[0].UncompressedSize64 = 10
	if _, err := newPlan(zr); err != nil {
		t.Fatal(err)
	}
	c := &counter{limit: maxUnzipped}
	if err := c.copy(discard{}, entry{f: zr.File[0], name: "liar", kind: kindFile}); !errors.Is(err, ErrInvalidZip) {
		t.Fatalf("lying header: %v, want ErrInvalidZip", err)
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func TestInspectRefusesTooManyFiles(t *testing.T) {
	withLimits(t, MaxUnzipped, 10)
	var files []zfile
	for i := 0; i < 11; i++ {
		files = append(files, zfile{name: string(rune('a' + i)), body: "x"})
	}
	if _, err := Inspect(makeZip(t, files...)); !errors.Is(err, ErrInvalidZip) {
		t.Fatalf("11 files over a limit of 10: %v", err)
	}
	if _, err := Inspect(makeZip(t, files[:10]...)); err != nil {
		t.Fatalf("10 files: %v", err)
	}
}

func FuzzInspect(f *testing.F) {
	link := fs.ModeSymlink | 0o777
	f.Add(makeZip(f, zfile{name: "bootstrap", body: "#!/bin/sh\n", mode: 0o755}, zfile{name: "app.py", body: "x"}))
	f.Add(makeZip(f, zfile{name: "d/", mode: 0}, zfile{name: "d/l", body: "../x", mode: link}, zfile{name: "x", body: "1"}))
	f.Add(makeZip(f, zfile{name: "../evil", body: "x"}))
	f.Add(makeZip(f, zfile{name: "a", body: "b", mode: link}, zfile{name: "b", body: "a", mode: link}))
	f.Add(makeZip(f))
	f.Add([]byte("PK\x03\x04garbage"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Inspect(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidZip) {
				t.Fatalf("error %v is not ErrInvalidZip", err)
			}
			return
		}
		if b.Unzipped > maxUnzipped || b.Files > maxFiles || len(b.Names) > maxNames || len(b.Names) > b.Files {
			t.Fatalf("bundle beyond limits: %+v", b)
		}
		for _, n := range b.Names {
			if _, _, err := cleanName(n); err != nil || n == "" || n[0] == '/' {
				t.Fatalf("accepted name %q", n)
			}
		}
	})
}
