package bill

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"finepay/ferry/outbox"
	"finepay/shared/httpx"
)

// A full ferry lane (outbox.ErrBackpressure) reaches the caller as 503, so that it retries later;
// nothing was stored.
func TestBackpressureIs503(t *testing.T) {
	err := HTTPError(fmt.Errorf("bill: publish: %w", outbox.ErrBackpressure))
	var he *httpx.Error
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable || he.Code != "BACKPRESSURE" {
		t.Fatalf("HTTPError = %#v", err)
	}
}
