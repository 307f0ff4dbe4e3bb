package httpx

import (
	"bytes"
	"net/http"

	"github.com/labstack/echo/v4"
)

// Captured is a buffered response.
type Captured struct {
	Status int
	Header http.Header
	Body   []byte
}

// Capture calls next with the response redirected to a buffer, so that a middleware can sign the
// exact bytes, or store them for an idempotent replay, before sending. An error returned by next is rendered
// into the buffer by the echo error handler, as echo would have done after the chain.
func Capture(c echo.Context, next echo.HandlerFunc) Captured {
	orig := c.Response()
	rec := &recorder{header: http.Header{}}
	c.SetResponse(echo.NewResponse(rec, c.Echo()))
	defer c.SetResponse(orig)
	if err := next(c); err != nil {
		c.Error(err)
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	return Captured{Status: status, Header: rec.header, Body: rec.body.Bytes()}
}

// WriteCaptured sends res through c's real response, adding its headers to those already set.
func WriteCaptured(c echo.Context, res Captured) error {
	h := c.Response().Header()
	for k, v := range res.Header {
		h[k] = append([]string(nil), v...)
	}
	c.Response().WriteHeader(res.Status)
	if len(res.Body) == 0 || c.Request().Method == http.MethodHead {
		return nil
	}
	_, err := c.Response().Write(res.Body)
	return err
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(p)
}

// Flush is a no-op: the body is sent whole by Write.
func (r *recorder) Flush() {}
