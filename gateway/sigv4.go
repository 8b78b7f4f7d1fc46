package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// KeyStore finds an access key's secret and the account it belongs to.
type KeyStore interface {
	LookupKey(accessKeyID string) (account, secret string, ok bool)
}

// AuthResult is who signed a request.
type AuthResult struct {
	Account, AccessKey, Region string
	Signed                     bool
}

const (
	sigAlgorithm    = "AWS4-HMAC-SHA256"
	sigService      = "lambda"
	sigTerminator   = "aws4_request"
	sigTimeFormat   = "20060102T150405Z"
	sigMaxSkew      = 5 * time.Minute
	sigMaxExpires   = 7 * 24 * 60 * 60 // seconds; SigV4's ceiling for X-Amz-Expires
	unsignedPayload = "UNSIGNED-PAYLOAD"

	// The header and the query parameters of the presigned form.
	hdrAmzDate        = "X-Amz-Date"
	hdrSecurityToken  = "X-Amz-Security-Token"
	hdrContentSHA256  = "X-Amz-Content-Sha256"
	qAlgorithm        = "X-Amz-Algorithm"
	qCredential       = "X-Amz-Credential"
	qSignedHeaders    = "X-Amz-SignedHeaders"
	qSignature        = "X-Amz-Signature"
	qExpires          = "X-Amz-Expires"
	msgBadSignature   = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	msgUnknownKey     = "The security token included in the request is invalid."
	msgHostNotSigned  = "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
	maxEchoedAuthSize = 512
)

// The authentication errors are 403s whatever statusOf says, so they are
// built with their status rather than looked up by name.
func errUnrecognizedClient() *lambdaError {
	return &lambdaError{http.StatusForbidden, "UnrecognizedClientException", msgUnknownKey, ""}
}
func errInvalidSignature(msg string) *lambdaError {
	return &lambdaError{http.StatusForbidden, "InvalidSignatureException", msg, ""}
}
func errIncompleteSignature(msg string) *lambdaError {
	return &lambdaError{http.StatusForbidden, "IncompleteSignatureException", msg, ""}
}

// sigRequest is the signature a client sent, in either form.
type sigRequest struct {
	presigned     bool
	credential    string
	signedHeaders string
	signature     string
	amzDate       string
	expires       string
}

// verifySigV4 checks r's AWS Signature Version 4, sent in the Authorization
// header or as a presigned query string. body is the request body as read.
// The signature is recomputed by the SDK's own signer over a copy of the
// request that carries only what the client signed, so whatever the
// official clients canonicalise is canonicalised the same way here.
//
// A request with neither form is not an error: it returns Signed false and
// the caller decides what unsigned requests may do.
func verifySigV4(r *http.Request, body []byte, keys KeyStore, now time.Time) (AuthResult, *lambdaError) {
	sr, lerr := parseSigRequest(r)
	if lerr != nil || sr == nil {
		return AuthResult{}, lerr
	}

	parts := strings.Split(sr.credential, "/")
	if len(parts) != 5 {
		return AuthResult{}, errIncompleteSignature("Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '" + clipAuth(sr.credential) + "'")
	}
	accessKey, scopeDate, region, service, term := parts[0], parts[1], parts[2], parts[3], parts[4]

	// The signer re-renders the date from the parsed time, so only the
	// exact basic format (which Parse would loosen, e.g. a one-digit hour)
	// can be reproduced.
	signingTime, err := time.Parse(sigTimeFormat, sr.amzDate)
	if err != nil || signingTime.Format(sigTimeFormat) != sr.amzDate {
		return AuthResult{}, errIncompleteSignature("Date must be in ISO-8601 'basic format'. Got '" + clipAuth(sr.amzDate) + "'. See http://en.wikipedia.org/wiki/ISO_8601")
	}

	// AWS reports every scope fault at once, each sentence ending ". ".
	var scope strings.Builder
	if region == "" {
		scope.WriteString("Credential should be scoped to a valid region, not ''. ")
	}
	if service != sigService {
		scope.WriteString("Credential should be scoped to correct service: '" + sigService + "'. ")
	}
	if term != sigTerminator {
		scope.WriteString("Credential should be scoped with a valid terminator: '" + sigTerminator + "', not '" + clipAuth(term) + "'. ")
	}
	if scopeDate != sr.amzDate[:8] {
		from := "'X-Amz-Date' header"
		if sr.presigned {
			from = "'X-Amz-Date' query parameter"
		}
		scope.WriteString("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '" + clipAuth(scopeDate) + "' != '" + sr.amzDate[:8] + "', from " + from + ".")
	}
	if scope.Len() > 0 {
		return AuthResult{}, errInvalidSignature(scope.String())
	}

	signed := strings.Split(sr.signedHeaders, ";")
	if !containsString(signed, "host") {
		return AuthResult{}, errInvalidSignature(msgHostNotSigned)
	}

	if lerr := checkSigningTime(sr, signingTime, now); lerr != nil {
		return AuthResult{}, lerr
	}

	if keys == nil {
		return AuthResult{}, errUnrecognizedClient()
	}
	account, secret, ok := keys.LookupKey(accessKey)
	if !ok {
		return AuthResult{}, errUnrecognizedClient()
	}

	payloadHash, lerr := payloadHashOf(r, sr, body)
	if lerr != nil {
		return AuthResult{}, lerr
	}

	want, wantHeaders, ok := resign(r, sr, signed, accessKey, secret, region, signingTime, payloadHash)
	if !ok && sr.presigned && payloadHash != unsignedPayload && !hasContentSHA256(r, sr) {
		// A presigned URL is usually made before the body exists, so its
		// signer may have declared the payload unsigned.
		want, wantHeaders, ok = resign(r, sr, signed, accessKey, secret, region, signingTime, unsignedPayload)
	}
	if !ok || wantHeaders != sr.signedHeaders || !hmac.Equal([]byte(want), []byte(sr.signature)) {
		return AuthResult{}, errInvalidSignature(msgBadSignature)
	}
	return AuthResult{Account: account, AccessKey: accessKey, Region: region, Signed: true}, nil
}

// parseSigRequest finds the signature in r. It returns nil, nil for a
// request that carries none.
func parseSigRequest(r *http.Request) (*sigRequest, *lambdaError) {
	if auth, present := r.Header["Authorization"]; present {
		var value string
		if len(auth) > 0 {
			value = auth[0]
		}
		return parseAuthorization(r, value)
	}
	if r.URL == nil || !strings.Contains(r.URL.RawQuery, "X-Amz-") {
		return nil, nil
	}
	q := r.URL.Query()
	if !q.Has(qAlgorithm) && !q.Has(qCredential) && !q.Has(qSignature) {
		return nil, nil
	}
	sr := &sigRequest{
		presigned:     true,
		credential:    q.Get(qCredential),
		signedHeaders: q.Get(qSignedHeaders),
		signature:     q.Get(qSignature),
		amzDate:       q.Get(hdrAmzDate),
		expires:       q.Get(qExpires),
	}
	var missing strings.Builder
	for _, p := range [...]struct{ name, v string }{
		{qAlgorithm, q.Get(qAlgorithm)}, {qCredential, sr.credential}, {qSignature, sr.signature},
		{qSignedHeaders, sr.signedHeaders}, {hdrAmzDate, sr.amzDate},
	} {
		if p.v == "" {
			missing.WriteString("AWS query-string parameters must include '" + p.name + "'. ")
		}
	}
	if missing.Len() > 0 {
		return nil, errIncompleteSignature(missing.String() + "Re-examine the query-string parameters.")
	}
	if alg := q.Get(qAlgorithm); alg != sigAlgorithm {
		return nil, errIncompleteSignature("Unsupported AWS 'algorithm': '" + clipAuth(alg) + "'")
	}
	return sr, nil
}

// parseAuthorization reads "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
// Signature=...". The date comes from X-Amz-Date: the signer always signs
// that header, so a request dated only by Date cannot be reproduced.
func parseAuthorization(r *http.Request, value string) (*sigRequest, *lambdaError) {
	alg, params, _ := strings.Cut(strings.TrimSpace(value), " ")
	sr := &sigRequest{amzDate: r.Header.Get(hdrAmzDate)}
	credential, signedHeaders, signature := authParams(params)
	sr.credential, sr.signedHeaders, sr.signature = credential, signedHeaders, signature

	var missing []string
	if credential == "" {
		missing = append(missing, "Authorization header requires 'Credential' parameter.")
	}
	if signature == "" {
		missing = append(missing, "Authorization header requires 'Signature' parameter.")
	}
	if signedHeaders == "" {
		missing = append(missing, "Authorization header requires 'SignedHeaders' parameter.")
	}
	if sr.amzDate == "" {
		if r.Header.Get("Date") == "" {
			missing = append(missing, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
		} else {
			missing = append(missing, "Authorization header requires existence of a 'X-Amz-Date' header; a request dated only by 'Date' is not supported.")
		}
	}
	if len(missing) > 0 {
		return nil, errIncompleteSignature(strings.Join(missing, " ") + " Authorization=" + clipAuth(value))
	}
	if alg != sigAlgorithm {
		return nil, errIncompleteSignature("Unsupported AWS 'algorithm': '" + clipAuth(alg) + "'")
	}
	return sr, nil
}

// authParams picks the three named parameters out of the comma-separated
// remainder of an Authorization header; the first of each name wins.
func authParams(s string) (credential, signedHeaders, signature string) {
	for s != "" {
		var p string
		p, s, _ = strings.Cut(s, ",")
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			continue
		}
		switch k {
		case "Credential":
			if credential == "" {
				credential = v
			}
		case "SignedHeaders":
			if signedHeaders == "" {
				signedHeaders = v
			}
		case "Signature":
			if signature == "" {
				signature = v
			}
		}
	}
	return
}

// checkSigningTime applies AWS's five-minute window, or for a presigned URL
// its X-Amz-Expires lifetime (the window still bounds how far ahead it may
// be dated).
func checkSigningTime(sr *sigRequest, t, now time.Time) *lambdaError {
	now = now.UTC()
	f := func(x time.Time) string { return x.Format(sigTimeFormat) }
	if t.After(now.Add(sigMaxSkew)) {
		return errInvalidSignature("Signature not yet current: " + f(t) + " is still later than " + f(now.Add(sigMaxSkew)) + " (" + f(now) + " + 5 min.)")
	}
	if sr.presigned && sr.expires != "" {
		secs, err := strconv.Atoi(sr.expires)
		if err != nil || secs < 0 || secs > sigMaxExpires {
			return errIncompleteSignature("X-Amz-Expires must be an integer from 0 to " + strconv.Itoa(sigMaxExpires) + " seconds, got '" + clipAuth(sr.expires) + "'")
		}
		life := time.Duration(secs) * time.Second
		if now.Sub(t) > life {
			return errInvalidSignature("Signature expired: " + f(t) + " is now earlier than " + f(now.Add(-life)) + " (" + f(now) + " - " + sr.expires + " sec.)")
		}
		return nil
	}
	if now.Sub(t) > sigMaxSkew {
		return errInvalidSignature("Signature expired: " + f(t) + " is now earlier than " + f(now.Add(-sigMaxSkew)) + " (" + f(now) + " - 5 min.)")
	}
	return nil
}

func hasContentSHA256(r *http.Request, sr *sigRequest) bool {
	if _, ok := r.Header[hdrContentSHA256]; ok {
		return true
	}
	return sr.presigned && r.URL.Query().Has(hdrContentSHA256)
}

// payloadHashOf is the hash the client must have signed: the one it
// declared in X-Amz-Content-Sha256 if that agrees with the body (or is
// UNSIGNED-PAYLOAD), else the body's own.
func payloadHashOf(r *http.Request, sr *sigRequest, body []byte) (string, *lambdaError) {
	sum := sha256.Sum256(body)
	computed := hex.EncodeToString(sum[:])
	declared, ok := r.Header[hdrContentSHA256]
	if !ok && sr.presigned {
		declared, ok = r.URL.Query()[hdrContentSHA256]
	}
	if !ok {
		return computed, nil
	}
	var d string
	if len(declared) > 0 {
		d = declared[0]
	}
	switch {
	case d == unsignedPayload:
		return d, nil
	case strings.EqualFold(d, computed):
		return d, nil
	}
	return "", errInvalidSignature("The provided 'x-amz-content-sha256' header does not match what was computed.")
}

// resign signs a fresh request holding exactly what the client says it
// signed and returns the signature and signed-header list the signer made.
// ok is false when the signer would not produce one.
func resign(r *http.Request, sr *sigRequest, signed []string, accessKey, secret, region string, t time.Time, payloadHash string) (sig, signedHeaders string, ok bool) {
	var rawQuery string
	if r.URL != nil {
		rawQuery = r.URL.RawQuery
	}
	if sr.presigned {
		q, _ := url.ParseQuery(rawQuery)
		q.Del(qSignature)
		rawQuery = q.Encode()
	}
	fresh := &http.Request{
		Method: r.Method,
		// The signer reads the path from Opaque as given, so the client's
		// own escaping (%3A in ARNs) survives; "//h" is a placeholder host
		// the signer skips, the signed host being fresh.Host.
		URL:    &url.URL{Opaque: "//h" + escapedPath(r), RawQuery: rawQuery},
		Host:   r.Host,
		Header: make(http.Header, len(signed)),
	}
	// The token is given to the signer only where the client signed it,
	// so a token sent but not signed is not added to the signed set.
	creds := aws.Credentials{AccessKeyID: accessKey, SecretAccessKey: secret}
	tokenSigned := false
	for _, name := range signed {
		switch name {
		case "host":
			// The signer always signs fresh.Host.
		case "x-amz-date":
			// The signer writes X-Amz-Date from the signing time.
		case "content-length":
			// The signer signs ContentLength, and only when positive.
			fresh.ContentLength = signedContentLength(r)
		case "x-amz-security-token":
			if sr.presigned {
				creds.SessionToken = r.URL.Query().Get(hdrSecurityToken)
			}
			if creds.SessionToken == "" {
				creds.SessionToken = r.Header.Get(hdrSecurityToken)
			}
			tokenSigned = true
		default:
			// Copied: the signer may write into the slices it is given.
			v := append([]string(nil), r.Header.Values(textproto.CanonicalMIMEHeaderKey(name))...)
			if len(v) == 0 {
				v = []string{""}
			}
			// A lower-case key is outside the signer's ignore list
			// (User-Agent, Expect, ...), which it matches by canonical
			// spelling, so a header the client chose to sign is signed
			// here too.
			fresh.Header[name] = v
		}
	}
	if sr.presigned && !tokenSigned {
		// The presigned form carries the token as a query parameter.
		creds.SessionToken = r.URL.Query().Get(hdrSecurityToken)
	}
	opts := func(o *v4.SignerOptions) {
		// Headers stay headers: what the client hoisted into the query is
		// already in rawQuery.
		o.DisableHeaderHoisting = true
	}
	signer := signerFor(accessKey, secret)
	if sr.presigned {
		uri, _, err := signer.PresignHTTP(context.Background(), creds, fresh, payloadHash, sigService, region, t, opts)
		if err != nil {
			return "", "", false
		}
		_, query, _ := strings.Cut(uri, "?")
		q, _ := url.ParseQuery(query)
		return q.Get(qSignature), q.Get(qSignedHeaders), true
	}
	if err := signer.SignHTTP(context.Background(), creds, fresh, payloadHash, sigService, region, t, opts); err != nil {
		return "", "", false
	}
	_, params, _ := strings.Cut(fresh.Header.Get("Authorization"), " ")
	_, signedHeaders, sig = authParams(params)
	return sig, signedHeaders, true
}

// escapedPath is the path as the client sent it. RequestURI is the request
// line itself; r.URL.EscapedPath may re-escape a path whose escaping differs
// from Go's preferred form.
func escapedPath(r *http.Request) string {
	if u := r.RequestURI; u != "" && u[0] == '/' {
		p, _, _ := strings.Cut(u, "?")
		return p
	}
	if r.URL == nil {
		return "/"
	}
	return r.URL.EscapedPath()
}

func signedContentLength(r *http.Request) int64 {
	if v := r.Header.Get("Content-Length"); v != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 {
			return 0
		}
		return n
	}
	if r.ContentLength > 0 {
		return r.ContentLength
	}
	return 0
}

// The signer caches one derived key per region and service and tells
// entries apart by access key id alone, not by secret. One signer per
// (access key, secret) keeps that cache from vouching for a rotated-out
// secret; the map is dropped whole when it grows past signerCacheMax.
var signers struct {
	sync.Mutex
	m map[string]*v4.Signer
}

const signerCacheMax = 1024

func signerFor(accessKey, secret string) *v4.Signer {
	k := accessKey + "\x00" + secret
	signers.Lock()
	defer signers.Unlock()
	if s, ok := signers.m[k]; ok {
		return s
	}
	if signers.m == nil || len(signers.m) >= signerCacheMax {
		signers.m = make(map[string]*v4.Signer)
	}
	s := v4.NewSigner()
	signers.m[k] = s
	return s
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// clip bounds client text echoed into an error message.
func clipAuth(s string) string {
	if len(s) > maxEchoedAuthSize {
		return s[:maxEchoedAuthSize] + "..."
	}
	return s
}
