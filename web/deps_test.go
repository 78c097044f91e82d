package web_test

import (
	"testing"

	"github.com/hodei-jobs/hodei/internal/deptest"
)

// Package web is a leaf: the standard library only, nothing of Hodei.
func TestDependencies(t *testing.T) {
	deptest.Check(t, deptest.Module+"web", func(string) bool { return false })
}
