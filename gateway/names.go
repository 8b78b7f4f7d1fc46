package gateway

import (
	"fmt"
	"regexp"
	"strings"
)

// DefaultAccount is the account of unsigned requests in development mode.
const DefaultAccount = "000000000000"

// LatestVersion is the unpublished version.
const LatestVersion = "$LATEST"

var (
	// Lambda's FunctionName pattern for Invoke (name, name:qualifier,
	// partial ARN or full ARN).
	fnPattern        = regexp.MustCompile(`^(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?$`)
	qualifierPattern = regexp.MustCompile(`^(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_$]{1,128})$`)
)

// FunctionRef is a parsed FunctionName plus Qualifier.
type FunctionRef struct {
	Account   string // empty when the name carried none
	Name      string
	Qualifier string // empty means $LATEST
}

// ParseFunctionName parses an Invoke FunctionName (already path-unescaped)
// and the Qualifier query parameter.
func ParseFunctionName(raw, qualifier string) (FunctionRef, error) {
	if raw == "" || len(raw) > 256 {
		return FunctionRef{}, fmt.Errorf("1 validation error detected: Value '%s' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 256 and at least 1", clip(raw))
	}
	if q := qualifier; len(raw) <= 64 && ValidName(raw) && (q == "" || q == LatestVersion) {
		// The common case, a bare name: no need for the ARN pattern.
		return FunctionRef{Name: raw, Qualifier: q}, nil
	}
	m := fnPattern.FindStringSubmatch(raw)
	if m == nil {
		return FunctionRef{}, fmt.Errorf("1 validation error detected: Value '%s' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?", clip(raw))
	}
	ref := FunctionRef{Account: strings.TrimSuffix(m[8], ":"), Name: m[10], Qualifier: m[12]}
	if len(ref.Name) > 64 {
		return FunctionRef{}, fmt.Errorf("1 validation error detected: Value '%s' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 64", clip(ref.Name))
	}
	if qualifier != "" {
		if !qualifierPattern.MatchString(qualifier) {
			return FunctionRef{}, fmt.Errorf("1 validation error detected: Value '%s' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)", clip(qualifier))
		}
		if ref.Qualifier != "" && ref.Qualifier != qualifier {
			return FunctionRef{}, fmt.Errorf("The derived qualifier from the function name does not match the specified qualifier.")
		}
		ref.Qualifier = qualifier
	}
	return ref, nil
}

// ValidName reports whether name is a valid CreateFunction name:
// [a-zA-Z0-9-_]{1,64}, checked by hand (it runs on every invocation).
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
