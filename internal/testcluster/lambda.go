package testcluster

import (
	"archive/zip"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// BuildGoHandler builds the aws-lambda-go main package in src (a path
// relative to the calling test's package) with main.tag set to tag, and
// zips it as a provided.al2023 bundle (an executable bootstrap). A test
// process builds each (src, tag) once: a compile takes both cores of the
// machine, and a cluster starved by one loses leases and leaders.
func BuildGoHandler(t testing.TB, src, tag string) []byte {
	t.Helper()
	abs, err := filepath.Abs(src)
	if err != nil {
		t.Fatal(err)
	}
	key := abs + "\x00" + tag
	builtMu.Lock()
	defer builtMu.Unlock()
	if zip, ok := built[key]; ok {
		return bytes.Clone(zip)
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-ldflags", "-X main.tag="+tag, "-o", filepath.Join(dir, "bootstrap"), src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the handler %s: %v\n%s", src, err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "bootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	w, _ := zw.CreateHeader(h)
	w.Write(bin)
	zw.Close()
	built[key] = bytes.Clone(buf.Bytes())
	return buf.Bytes()
}

var (
	builtMu sync.Mutex
	built   = map[string][]byte{} // (src, tag) -> zip, for this test process
)

// SDKClient is the official Lambda client pointed at a gateway, signed
// with the given key.
func SDKClient(url, key, secret string) *lambda.Client {
	return lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: aws.String(url), Credentials: credentials.NewStaticCredentialsProvider(key, secret, "")})
}

// Metrics is a node's /metrics text.
func Metrics(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
