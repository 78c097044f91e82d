package kubernetes

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"

	"github.com/hodei-jobs/hodei/provider"
)

// apiError names the operation and wraps provider.ErrUnavailable when err
// means the API server could not be reached or could not answer in time.
// It is the driver's one translation point for the client's errors. A nil
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
	// The API server's answers, by the Status reason it gives (or the
	// HTTP status when it gives no known reason), as client-go's apierrors
	// IsServerTimeout, IsTimeout, IsServiceUnavailable and
	// IsTooManyRequests (which also takes a 429 with a known reason).
	if isReason(err, reasonServerTimeout, 0) || isReason(err, reasonTimeout, http.StatusGatewayTimeout) ||
		isReason(err, reasonServiceUnavailable, http.StatusServiceUnavailable) ||
		isReason(err, reasonTooManyRequests, http.StatusTooManyRequests) {
		return true
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.Code == http.StatusTooManyRequests
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
	// http.Client reports its own Timeout and dropped connections only as
	// text.
	msg := err.Error()
	return strings.Contains(msg, "Client.Timeout exceeded") || strings.HasSuffix(msg, ": EOF") ||
		strings.Contains(msg, "connection reset by peer") || strings.Contains(msg, "http2: client connection lost")
}
