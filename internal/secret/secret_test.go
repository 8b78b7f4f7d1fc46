package secret

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadOrCreateWritesPrivateFileOnceAndReusesIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "cluster-secret")
	s1, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("first: created %v, %v", created, err)
	}
	if len(s1) != Size {
		t.Fatalf("secret of %d bytes", len(s1))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	s2, created, err := LoadOrCreate(path)
	if err != nil || created {
		t.Fatalf("second: created %v, %v", created, err)
	}
	if !bytes.Equal(s1, s2) {
		t.Fatal("second call returned another secret")
	}
	if s3, err := ReadFile(path); err != nil || !bytes.Equal(s1, s3) {
		t.Fatalf("ReadFile: %v", err)
	}
}

func TestLoadOrCreateRefusesABrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster-secret")
	os.WriteFile(path, []byte("short\n"), 0o600)
	if _, _, err := LoadOrCreate(path); err == nil {
		t.Fatal("a broken secret file was accepted (or replaced)")
	}
	if b, _ := os.ReadFile(path); string(b) != "short\n" {
		t.Fatal("the broken file was overwritten")
	}
}

func TestParse(t *testing.T) {
	s, _ := Generate()
	if got, err := Parse(append([]byte("  "), Encode(s)...)); err != nil || !bytes.Equal(got, s) {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range []string{"", "zz", "00112233", "0011223344556677889900112233445"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestDerivedKeysDiffer(t *testing.T) {
	s, _ := Generate()
	other, _ := Generate()
	keys := map[string]bool{}
	for _, k := range [][]byte{DeriveKey(s, PurposeMemberlist), DeriveKey(s, PurposeGrant), DeriveKey(s, "worker.w1"), DeriveKey(other, PurposeGrant)} {
		if len(k) != 32 || keys[string(k)] {
			t.Fatalf("derived key of %d bytes or repeated", len(k))
		}
		keys[string(k)] = true
	}
	if !bytes.Equal(DeriveKey(s, PurposeGrant), DeriveKey(s, PurposeGrant)) {
		t.Fatal("DeriveKey is not deterministic")
	}
}
