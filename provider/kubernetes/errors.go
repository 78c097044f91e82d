package kubernetes

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/hodei-jobs/hodei/provider"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// apiError names the operation and wraps provider.ErrUnavailable when err
// means the API server could not be reached or could not answer in time.
// It is the driver's one translation point for client-go errors. A nil
// err stays nil.
func apiError(op string, err error) error {
	if err == nil {
		return nil
	}
	if unavailable(err) {
		return fmt.Errorf("kubernetes: %s: %w: %w", op, provider.ErrUnavailable, err)
	}
	return fmt.Errorf("kubernetes: %s: %w", op, err)
}

func unavailable(err error) bool {
	if apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsTooManyRequests(err) {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	// http.Client reports its own Timeout (rest.Config.Timeout) and
	// dropped connections only as text.
	msg := err.Error()
	return strings.Contains(msg, "Client.Timeout exceeded") || strings.HasSuffix(msg, ": EOF") ||
		strings.Contains(msg, "connection reset by peer") || strings.Contains(msg, "http2: client connection lost")
}

// inClusterNamespace is the namespace of the Pod the server runs in, or ""
// outside a Pod.
func inClusterNamespace() string {
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
