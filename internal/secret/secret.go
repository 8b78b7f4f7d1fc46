// Package secret holds the cluster secret and the keys derived from it.
//
// One random cluster secret (32 bytes, stored as hex text) is the root of
// trust inside a cluster. Every other key is HMAC-SHA256(secret, purpose):
//
//   - a node's NATS password: hex(DeriveKey(secret, "<role>.<id>")), see
//     internal/natsutil;
//   - the memberlist gossip key: DeriveKey(secret, PurposeMemberlist);
//   - the key placement signs sandbox grants with: DeriveKey(secret,
//     PurposeGrant).
//
// A node holding only derived keys cannot compute the secret or any other
// node's keys.
package secret

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Size is the length of a generated cluster secret in bytes.
const Size = 32

// MinSize is the shortest secret Parse accepts.
const MinSize = 16

// Purposes of derived keys. NATS user names ("<role>.<id>") always contain
// a dot and these never do, so no derived key is another one.
const (
	PurposeMemberlist = "memberlist"
	PurposeGrant      = "grant"
)

// Generate returns a new random cluster secret.
func Generate() ([]byte, error) {
	b := make([]byte, Size)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("cluster secret: %w", err)
	}
	return b, nil
}

// DeriveKey returns HMAC-SHA256(secret, purpose): 32 bytes.
func DeriveKey(secret []byte, purpose string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// Encode renders a secret or key as its file form: hex and a newline.
func Encode(b []byte) []byte {
	return append([]byte(hex.EncodeToString(b)), '\n')
}

// Parse reads the file form of a secret or key (hex; surrounding
// whitespace ignored). It refuses anything shorter than MinSize bytes.
func Parse(text []byte) ([]byte, error) {
	b, err := hex.DecodeString(string(bytes.TrimSpace(text)))
	if err != nil {
		return nil, errors.New("not hex")
	}
	if len(b) < MinSize {
		return nil, fmt.Errorf("%d bytes, want at least %d", len(b), MinSize)
	}
	return b, nil
}

// ReadFile reads a secret or key file written by Encode (or by hand:
// `head -c32 /dev/urandom | od -An -tx1 | tr -d ' \n'`).
func ReadFile(path string) ([]byte, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, err := Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// LoadOrCreate reads the secret at path, or, when there is no file, writes
// a new one there with mode 0600. created says which happened.
func LoadOrCreate(path string) (secret []byte, created bool, err error) {
	secret, err = ReadFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return secret, false, err
	}
	if secret, err = Generate(); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	// O_EXCL: never overwrite a secret another process has just written.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		secret, err = ReadFile(path)
		return secret, false, err
	}
	if err != nil {
		return nil, false, err
	}
	_, err = f.Write(Encode(secret))
	if err == nil {
		err = f.Sync() // a restart must find the secret its nodes were started with
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	return secret, true, nil
}
