// Package apierr is the sandbox's one HTTP error type and the echo error handler that renders it
// as {"code":"...","message":"..."}, the error body shared by WeChat Pay v3 and the partner protocol.
package apierr

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"
)

// Error is an error answered to the client. Code and Message are sent; Cause is only logged.
type Error struct {
	Status  int
	Code    string
	Message string
	Cause   error
}

// New returns an Error with a formatted message.
func New(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error that keeps cause for the log.
func Wrap(cause error, status int, code, format string, args ...any) *Error {
	e := New(status, code, format, args...)
	e.Cause = cause
	return e
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Code, e.Message, e.Cause)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Cause }

// Body is the JSON error body.
type Body struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Invalid is the 400 answer for a field that fails validation.
func Invalid(code, format string, args ...any) *Error {
	return New(http.StatusBadRequest, code, format, args...)
}

// Handler returns an echo HTTPErrorHandler rendering *Error as its status and body, echo's own
// errors (unknown route, wrong method, body too large) with a code derived from the status, and
// anything else as a 500 whose cause is logged but not sent.
func Handler(log *slog.Logger) echo.HTTPErrorHandler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, body := Render(err)
		if status >= 500 {
			log.ErrorContext(c.Request().Context(), "request failed",
				"method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
		}
		var werr error
		if c.Request().Method == http.MethodHead {
			werr = c.NoContent(status)
		} else {
			werr = c.JSON(status, body)
		}
		if werr != nil {
			log.WarnContext(c.Request().Context(), "writing error response", "err", werr)
		}
	}
}

// Render maps err to the status and body the client sees.
func Render(err error) (int, Body) {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Status, Body{Code: ae.Code, Message: ae.Message}
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg := http.StatusText(he.Code)
		if s, ok := he.Message.(string); ok && s != "" {
			msg = s
		}
		return he.Code, Body{Code: codeFor(he.Code), Message: msg}
	}
	return http.StatusInternalServerError, Body{Code: "INTERNAL", Message: http.StatusText(http.StatusInternalServerError)}
}

func codeFor(status int) string {
	switch status {
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusMethodNotAllowed:
		return "METHOD_NOT_ALLOWED"
	case http.StatusRequestEntityTooLarge:
		return "BODY_TOO_LARGE"
	case http.StatusUnsupportedMediaType:
		return "UNSUPPORTED_MEDIA_TYPE"
	case http.StatusBadRequest:
		return "INVALID_REQUEST"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	}
	if status >= 500 {
		return "INTERNAL"
	}
	return "ERROR"
}
