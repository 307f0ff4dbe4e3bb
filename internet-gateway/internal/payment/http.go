package payment

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/internet-gateway/internal/wechat"
	"finepay/shared/httpx"
)

// HandleWeChatHTTP is POST /notify/wechat. It answers 204 once the payment is committed (or
// was committed before), 4xx {"code":"FAIL"} for a forged or invalid notification and 5xx
// {"code":"FAIL"} when storage failed, so that WeChat resends. The work is not cut short when
// the channel hangs up.
func (n *Notifications) HandleWeChatHTTP(c echo.Context) error {
	req := c.Request()
	body, err := io.ReadAll(io.LimitReader(req.Body, wechat.MaxNotification+1))
	if err != nil {
		return httpx.Wrap(http.StatusBadRequest, "FAIL", "unreadable body", err)
	}
	truncated := len(body) > wechat.MaxNotification
	if truncated {
		body = body[:wechat.MaxNotification]
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), 15*time.Second)
	defer cancel()
	_, err = n.HandleWeChat(ctx, Raw{RemoteAddr: req.RemoteAddr, Header: req.Header, Body: body, Truncated: truncated})
	var rej *Rejected
	switch {
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
