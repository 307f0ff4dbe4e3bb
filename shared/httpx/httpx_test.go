package httpx_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"finepay/shared/httpx"
	"finepay/shared/logging"
)

func TestErrorRendering(t *testing.T) {
	t.Parallel()
	e, _ := httpx.New(httpx.Options{Service: "t", Logger: logging.Discard()})
	e.GET("/bad", func(c echo.Context) error {
		return httpx.Wrap(http.StatusBadRequest, "BAD_AMOUNT", "amount must be positive", errors.New("secret detail"))
	})
	e.GET("/boom", func(c echo.Context) error { return errors.New("database password is hunter2") })
	e.GET("/panic", func(c echo.Context) error { panic("oops") })
	tests := []struct {
		path, want string
		status     int
	}{
		{"/bad", `{"code":"BAD_AMOUNT","message":"amount must be positive"}`, 400},
		{"/boom", `{"code":"INTERNAL","message":"Internal Server Error"}`, 500},
		{"/panic", `{"code":"INTERNAL","message":"Internal Server Error"}`, 500},
		{"/nowhere", `{"code":"NOT_FOUND","message":"Not Found"}`, 404},
		{"/healthz", "ok", 200},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
		if rec.Code != tt.status || strings.TrimSpace(rec.Body.String()) != tt.want {
			t.Errorf("%s: %d %q, want %d %q", tt.path, rec.Code, rec.Body.String(), tt.status, tt.want)
		}
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `http_request_duration_seconds_count{method="GET",route="/bad",service="t",status="400"} 1`) {
		t.Errorf("metrics lack the request histogram:\n%s", rec.Body.String())
	}
}
