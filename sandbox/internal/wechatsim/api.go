package wechatsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"finepay/shared/httpx"
)

// maxBody bounds an API request body.
const maxBody = 64 << 10

// signedAPI verifies the merchant's signature of every /v3 request and signs every response,
// errors included, with the platform key.
func (s *Sim) signedAPI(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
		var res httpx.Captured
		switch {
		case err != nil:
			res = httpx.Capture(c, fail(apiError(http.StatusBadRequest, "PARAM_ERROR", "reading the body failed")))
		case len(body) > maxBody:
			res = httpx.Capture(c, fail(apiError(http.StatusRequestEntityTooLarge, "PARAM_ERROR", "the body exceeds %d bytes", maxBody)))
		default:
			req.Body = io.NopCloser(bytes.NewReader(body))
			if verr := s.verifyRequest(req, body); verr != nil {
				s.log.WarnContext(req.Context(), "wechat request signature refused", "path", req.URL.Path, "err", verr)
				res = httpx.Capture(c, fail(apiError(http.StatusUnauthorized, "SIGN_ERROR", "签名错误: %s", reason(verr))))
			} else {
				res = httpx.Capture(c, next)
			}
		}
		h, err := s.platformHeaders(res.Body)
		if err != nil {
			return err
		}
		for k, v := range h {
			res.Header[k] = v
		}
		return httpx.WriteCaptured(c, res)
	}
}

func fail(err error) echo.HandlerFunc { return func(echo.Context) error { return err } }

func reason(err error) string {
	return strings.TrimPrefix(err.Error(), errAuth.Error()+": ")
}

func decode(r io.Reader, dst any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return apiError(http.StatusBadRequest, "PARAM_ERROR", "输入源“/body”映射到值字段失败: %v", err)
	}
	if dec.More() {
		return apiError(http.StatusBadRequest, "PARAM_ERROR", "the body must hold one JSON object")
	}
	return nil
}

// NativeResponse is the answer to a Native order.
type NativeResponse struct {
	CodeURL string `json:"code_url"`
}

func (s *Sim) handleNative(c echo.Context) error {
	var req NativeRequest
	if err := decode(c.Request().Body, &req); err != nil {
		return err
	}
	expire, err := s.validate(&req)
	if err != nil {
		return err
	}
	code, err := s.create(&req, expire)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, NativeResponse{CodeURL: code})
}

func (s *Sim) checkMchID(mchid string) error {
	switch mchid {
	case "":
		return apiError(http.StatusBadRequest, "PARAM_ERROR", "mchid is required")
	case s.cfg.MchID:
		return nil
	}
	return apiError(http.StatusBadRequest, "MCH_NOT_EXISTS", "mchid %s does not match the signing merchant", mchid)
}

func pathParam(c echo.Context, name string) string {
	v := c.Param(name)
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

func (s *Sim) handleQuery(c echo.Context) error {
	if err := s.checkMchID(c.QueryParam("mchid")); err != nil {
		return err
	}
	t, err := s.lookup(pathParam(c, "out_trade_no"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, t)
}

func (s *Sim) handleQueryByID(c echo.Context) error {
	if err := s.checkMchID(c.QueryParam("mchid")); err != nil {
		return err
	}
	t, err := s.lookupTxn(pathParam(c, "transaction_id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, t)
}

// CloseRequest is the body of a close.
type CloseRequest struct {
	MchID string `json:"mchid"`
}

func (s *Sim) handleClose(c echo.Context) error {
	var req CloseRequest
	if err := decode(c.Request().Body, &req); err != nil {
		return err
	}
	if err := s.checkMchID(req.MchID); err != nil {
		return err
	}
	if err := s.close(pathParam(c, "out_trade_no")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// RobotRequest is the body of POST /wechat/robot/pay: the order by out_trade_no or by the pr
// of its code_url, and optionally the payer's openid.
type RobotRequest struct {
	OutTradeNo string `json:"out_trade_no"`
	PR         string `json:"pr"`
	OpenID     string `json:"openid"`
}

func (s *Sim) handleRobotPay(c echo.Context) error {
	var req RobotRequest
	if err := decode(c.Request().Body, &req); err != nil {
		return err
	}
	if (req.OutTradeNo == "") == (req.PR == "") {
		return apiError(http.StatusBadRequest, "PARAM_ERROR", "give exactly one of out_trade_no and pr")
	}
	t, err := s.pay(s.finder(req.OutTradeNo, req.PR), req.OpenID)
	if err != nil {
		return payError(err)
	}
	return c.JSON(http.StatusOK, t)
}

// finder looks an order up by out_trade_no or pr; it runs under s.mu.
func (s *Sim) finder(outTradeNo, pr string) func() (*order, bool) {
	return func() (*order, bool) {
		if outTradeNo != "" {
			o, ok := s.byTrade[outTradeNo]
			return o, ok
		}
		o, ok := s.byPR[pr]
		return o, ok
	}
}

func payError(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return errOrderNotExist()
	case errors.Is(err, ErrClosed):
		return apiError(http.StatusBadRequest, "ORDER_CLOSED", "订单已关闭")
	case errors.Is(err, ErrExpired):
		return apiError(http.StatusBadRequest, "ORDER_EXPIRED", "订单已过期")
	}
	return err
}
