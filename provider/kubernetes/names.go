package kubernetes

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// The API server's rules for the names and values the driver makes, checked
// before a call so a bad instance id or secret name fails with a clear
// error instead of a rejected request.

// checkDNSLabel reports why s is not an RFC 1123 label (a namespace or Pod
// name), or "".
func checkDNSLabel(s string) string {
	if len(s) > 63 {
		return "must be no more than 63 characters"
	}
	if s == "" || !alnumLower(s[0]) || !alnumLower(s[len(s)-1]) || strings.IndexFunc(s, func(r rune) bool {
		return r > 0x7f || !alnumLower(byte(r)) && r != '-'
	}) >= 0 {
		return "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', " +
			"and must start and end with an alphanumeric character"
	}
	return ""
}

// checkSecretKey reports why s is not a valid Secret data key, or "".
func checkSecretKey(s string) string {
	if len(s) > 253 {
		return "must be no more than 253 characters"
	}
	if s == "" || strings.IndexFunc(s, func(r rune) bool {
		return r > 0x7f || !alnum(byte(r)) && r != '-' && r != '.' && r != '_'
	}) >= 0 {
		return "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
	}
	switch {
	case s == ".":
		return "must not be '.'"
	case s == "..":
		return "must not be '..'"
	case strings.HasPrefix(s, ".."):
		return "must not start with '..'"
	}
	return ""
}

// checkLabelValue reports why s is not a valid label value, or "". The
// empty string is valid.
func checkLabelValue(s string) string {
	if len(s) > 63 {
		return "must be no more than 63 characters"
	}
	if s == "" {
		return ""
	}
	if !alnum(s[0]) || !alnum(s[len(s)-1]) || strings.IndexFunc(s, func(r rune) bool {
		return r > 0x7f || !alnum(byte(r)) && r != '-' && r != '.' && r != '_'
	}) >= 0 {
		return "a valid label must consist of alphanumeric characters, '-', '_' or '.', " +
			"and must start and end with an alphanumeric character"
	}
	return ""
}

func alnumLower(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func alnum(c byte) bool { return alnumLower(c) || c >= 'A' && c <= 'Z' }

// selector is a label selector in the API's text form: "k=v" terms for
// set, sorted by key, and a "key notin (v1,v2)" term when notIn is not
// empty. Values are not checked: the API server rejects invalid ones.
func selector(set map[string]string, key string, notIn []string) string {
	var terms []string
	for _, k := range slices.Sorted(maps.Keys(set)) {
		terms = append(terms, k+"="+set[k])
	}
	if len(notIn) > 0 {
		terms = append(terms, fmt.Sprintf("%s notin (%s)", key, strings.Join(slices.Sorted(slices.Values(notIn)), ",")))
	}
	return strings.Join(terms, ",")
}
