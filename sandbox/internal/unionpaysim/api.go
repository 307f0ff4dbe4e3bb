package unionpaysim

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"
)

// maxBody bounds a request.
const maxBody = 64 << 10

// readForm reads and checks a signed request: a form, each name once, version 5.1.0, UTF-8,
// our merId, the merchant's signature.
func (s *Sim) readForm(c echo.Context) (map[string]string, *respError) {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		return nil, formatError("the request is too large or unreadable")
	}
	vs, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, formatError("the request is not a form")
	}
	f := map[string]string{}
	for k, v := range vs {
		if len(v) != 1 {
			return nil, formatError("%s given %d times", k, len(v))
		}
		f[k] = v[0]
	}
	switch {
	case f["version"] != "5.1.0":
		return f, formatError("version must be 5.1.0")
	case f["encoding"] != "UTF-8" && f["encoding"] != "utf-8":
		return f, formatError("encoding must be UTF-8")
	case f["merId"] != s.cfg.MerID:
		return f, &respError{"31", "商户状态不正确: merId " + f["merId"] + " is not the sandbox's merchant"}
	}
	if err := s.cfg.Keys.verifyMerchant(f); err != nil {
		s.log.Warn("unionpay request signature refused", "path", c.Path(), "err", err)
		return f, &respError{"11", "验证签名失败: " + err.Error()}
	}
	return f, nil
}

// answer writes the signed answer as UnionPay does: name=value joined with &, in name order,
// values not URL-encoded.
func (s *Sim) answer(c echo.Context, req, fields map[string]string) error {
	f := map[string]string{"version": "5.1.0", "encoding": "UTF-8", "accessType": "0", "merId": s.cfg.MerID}
	for _, k := range []string{"bizType", "txnType", "txnSubType", "orderId", "txnTime"} {
		if v := req[k]; v != "" {
			f[k] = v
		}
	}
	for k, v := range fields {
		f[k] = v
	}
	if err := s.cfg.Keys.sign(f); err != nil {
		return err
	}
	names := make([]string, 0, len(f))
	for k := range f {
		names = append(names, k)
	}
	sort.Strings(names)
	pairs := make([]string, len(names))
	for i, k := range names {
		pairs[i] = k + "=" + f[k]
	}
	return c.Blob(http.StatusOK, "text/plain;charset=UTF-8", []byte(strings.Join(pairs, "&")))
}

func (s *Sim) answerError(c echo.Context, req map[string]string, e *respError) error {
	return s.answer(c, req, map[string]string{"respCode": e.Code, "respMsg": e.Msg})
}

// handleBackTrans is POST /unionpay/gateway/api/backTransReq.do: consume QR codes (txnType 01,
// txnSubType 07, bizType 000000).
func (s *Sim) handleBackTrans(c echo.Context) error {
	f, rerr := s.readForm(c)
	if rerr != nil {
		return s.answerError(c, f, rerr)
	}
	if f["txnType"] == "04" {
		return s.handleRefund(c, f)
	}
	if f["txnType"] != "01" || f["txnSubType"] != "07" || f["bizType"] != "000000" {
		return s.answerError(c, f, &respError{"12", "交易类型错误: the sandbox takes consume QR codes (txnType 01, txnSubType 07, bizType 000000)"})
	}
	o, err := s.consume(f, false)
	var re *respError
	switch {
	case errors.As(err, &re):
		return s.answerError(c, f, re)
	case err != nil:
		return err
	}
	return s.answer(c, f, map[string]string{"respCode": "00", "respMsg": "成功[0000000]", "qrCode": o.qrCode()})
}

// handleQuery is POST /unionpay/gateway/api/queryTrans.do (txnType 00).
func (s *Sim) handleQuery(c echo.Context) error {
	f, rerr := s.readForm(c)
	if rerr != nil {
		return s.answerError(c, f, rerr)
	}
	if f["txnType"] != "00" {
		return s.answerError(c, f, &respError{"12", "交易类型错误: the query endpoint takes txnType 00"})
	}
	a, err := s.query(f)
	var re *respError
	switch {
	case errors.As(err, &re):
		return s.answerError(c, f, re)
	case err != nil:
		return err
	}
	return s.answer(c, f, a)
}

// handleFrontTrans is POST /unionpay/gateway/api/frontTransReq.do: the form a merchant's page
// makes the payer's browser submit (consume, txnType 01, txnSubType 01, bizType 000201, with
// frontUrl). It answers the payer page; once paid, the page returns the payer to frontUrl with
// the signed result, and the result is notified to backUrl.
func (s *Sim) handleFrontTrans(c echo.Context) error {
	f, rerr := s.readForm(c)
	if rerr == nil && (f["txnType"] != "01" || f["txnSubType"] != "01" || f["bizType"] != "000201") {
		rerr = &respError{"12", "交易类型错误: the front endpoint takes consume (txnType 01, txnSubType 01, bizType 000201)"}
	}
	var o *order
	if rerr == nil {
		var err error
		o, err = s.consume(f, true)
		var re *respError
		switch {
		case errors.As(err, &re):
			rerr = re
		case err != nil:
			return err
		}
	}
	if rerr != nil {
		return s.render(c, http.StatusBadRequest, pageData{View: "missing", Message: rerr.Code + " " + rerr.Msg})
	}
	d, _ := s.pageFor(o.Code)
	return s.render(c, http.StatusOK, d)
}
