package payment

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/internet-gateway/internal/alipay"
	"finepay/internet-gateway/internal/unionpay"
	"finepay/internet-gateway/internal/wechat"
	"finepay/shared/httpx"
)

// errUnreadable is the error of a request whose body could not be read.
var errUnreadable = errors.New("payment: unreadable notification body")

// read reads a notification request's body up to limit bytes (marking it truncated beyond)
// and runs handle on it with a context that survives the channel hanging up.
func read(c echo.Context, limit int, handle func(ctx context.Context, raw Raw) (Verdict, error)) (Verdict, error) {
	req := c.Request()
	body, err := io.ReadAll(io.LimitReader(req.Body, int64(limit)+1))
	if err != nil {
		return Verdict{}, fmt.Errorf("%w: %w", errUnreadable, err)
	}
	truncated := len(body) > limit
	if truncated {
		body = body[:limit]
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), 15*time.Second)
	defer cancel()
	return handle(ctx, Raw{RemoteAddr: req.RemoteAddr, Header: req.Header, Body: body, Truncated: truncated})
}

// HandleWeChatHTTP is POST /notify/wechat. It answers 204 once the payment is committed (or
// was committed before), 4xx {"code":"FAIL"} for a forged or invalid notification and 5xx
// {"code":"FAIL"} when storage failed, so that WeChat resends. The work is not cut short when
// the channel hangs up.
func (n *Notifications) HandleWeChatHTTP(c echo.Context) error {
	_, err := read(c, wechat.MaxNotification, n.HandleWeChat)
	var rej *Rejected
	switch {
	case errors.Is(err, errUnreadable):
		return httpx.Wrap(http.StatusBadRequest, "FAIL", "unreadable body", err)
	case errors.As(err, &rej):
		status := http.StatusBadRequest
		if rej.Reason == ReasonSignature || rej.Reason == ReasonSerial || rej.Reason == ReasonTimestamp {
			status = http.StatusUnauthorized
		}
		return httpx.Wrap(status, "FAIL", "notification rejected: "+rej.Reason, err)
	case err != nil:
		return httpx.Wrap(http.StatusInternalServerError, "FAIL", "not stored, please resend", err)
	}
	return c.NoContent(http.StatusNoContent)
}

// HandleAlipayHTTP is POST /notify/alipay. It answers the body "success" once the payment is
// committed (or was before, or the notification asks for nothing); Alipay reads any other body
// as a failure and resends: "fail" with 400 for a forged or invalid notification, with 500 when
// storage failed.
func (n *Notifications) HandleAlipayHTTP(c echo.Context) error {
	_, err := read(c, alipay.MaxNotification, n.HandleAlipay)
	var rej *Rejected
	switch {
	case errors.Is(err, errUnreadable), errors.As(err, &rej):
		return c.String(http.StatusBadRequest, "fail")
	case err != nil:
		n.log.Error("payment: alipay notification not stored", "err", err)
		return c.String(http.StatusInternalServerError, "fail")
	}
	return c.String(http.StatusOK, "success")
}

// HandleUnionPayHTTP is POST /notify/unionpay. It answers HTTP 200 once the payment is
// confirmed by a query and committed (or was before, or the notification asks for nothing);
// 400 for a forged, invalid or contradicted notification; 503 when it cannot be decided yet (the
// query failed, the payment is processing) and 500 when storage failed, so that UnionPay resends.
func (n *Notifications) HandleUnionPayHTTP(c echo.Context) error {
	_, err := read(c, unionpay.MaxNotification, n.HandleUnionPay)
	var rej *Rejected
	var tr *Transient
	switch {
	case errors.Is(err, errUnreadable):
		return c.String(http.StatusBadRequest, "fail")
	case errors.As(err, &rej):
		return c.String(http.StatusBadRequest, "fail: "+rej.Reason)
	case errors.As(err, &tr):
		return c.String(http.StatusServiceUnavailable, "retry")
	case err != nil:
		n.log.Error("payment: unionpay notification not stored", "err", err)
		return c.String(http.StatusInternalServerError, "fail")
	}
	return c.String(http.StatusOK, "ok")
}
