package alipaysim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/shanghai"
)

// maxBody bounds a request.
const maxBody = 64 << 10

// nodeName is the answer's object for a method: alipay.trade.query → alipay_trade_query_response.
func nodeName(method string) string { return strings.ReplaceAll(method, ".", "_") + "_response" }

// handleGateway is POST /alipay/gateway.do. The parameters may come in the query string, the
// form body or both (the SDKs put the common ones in the query string), but a name only once.
func (s *Sim) handleGateway(c echo.Context) error {
	req := c.Request()
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		return s.answer(c, "error_response", gatewayError("40002", "isv.invalid-parameter", "请求过大或不可读"))
	}
	params, perr := mergeParams(req.URL.RawQuery, string(body))
	method := params["method"]
	node := "error_response"
	if method != "" {
		node = nodeName(method)
	}
	if perr != nil {
		return s.answer(c, node, gatewayError("40002", "isv.invalid-parameter", perr.Error()))
	}
	if e := s.checkCommon(params); e != nil {
		s.log.WarnContext(req.Context(), "alipay request refused", "method", method, "sub_code", e.SubCode, "reason", e.SubMsg)
		return s.answer(c, node, e)
	}
	var ans map[string]any
	switch method {
	case "alipay.trade.precreate":
		ans, err = s.precreate(params["biz_content"], params["notify_url"])
	case "alipay.trade.query":
		ans, err = s.query(params["biz_content"])
	case "alipay.trade.close":
		ans, err = s.closeTrade(params["biz_content"])
	case "alipay.trade.refund":
		var hang bool
		if ans, hang, err = s.refund(params["biz_content"]); hang {
			holdUnanswered(c)
			return s.answer(c, node, &apiError{Code: "20000", Msg: "Service Currently Unavailable", SubCode: "aop.timeout", SubMsg: "held"})
		}
	case "alipay.trade.fastpay.refund.query":
		ans, err = s.refundQuery(params["biz_content"])
	default:
		return s.answer(c, node, gatewayError("40002", "isv.invalid-method", "不存在的方法名"))
	}
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return s.answer(c, node, ae)
	case err != nil:
		return err
	}
	return s.answerMap(c, node, ans)
}

func gatewayError(code, subCode, subMsg string) *apiError {
	return &apiError{Code: code, Msg: "Invalid Arguments", SubCode: subCode, SubMsg: subMsg}
}

// mergeParams reads the query string and the form body into one set of parameters.
func mergeParams(query, body string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range []string{query, body} {
		vs, err := url.ParseQuery(part)
		if err != nil {
			return nil, errors.New("参数不是合法的表单编码")
		}
		for k, v := range vs {
			if _, dup := out[k]; dup || len(v) != 1 {
				return nil, errors.New("参数重复: " + k)
			}
			out[k] = v[0]
		}
	}
	return out, nil
}

// checkCommon checks the common parameters and the RSA2 signature.
func (s *Sim) checkCommon(p map[string]string) *apiError {
	switch {
	case p["method"] == "":
		return gatewayError("40001", "isv.missing-method", "缺少方法名参数")
	case p["app_id"] == "":
		return gatewayError("40001", "isv.missing-app-id", "缺少AppID参数")
	case p["app_id"] != s.cfg.AppID:
		return gatewayError("40002", "isv.invalid-app-id", "无效的AppID参数")
	case p["sign_type"] != "RSA2":
		return gatewayError("40002", "isv.invalid-signature-type", "无效的签名类型: 只支持 RSA2")
	case p["sign"] == "":
		return gatewayError("40001", "isv.missing-signature", "缺少签名参数")
	case p["charset"] != "" && !strings.EqualFold(p["charset"], "utf-8"):
		return gatewayError("40002", "isv.invalid-charset", "字符集错误: 沙箱只支持 utf-8")
	case p["format"] != "" && p["format"] != "JSON":
		return gatewayError("40002", "isv.invalid-format", "无效的数据格式")
	case p["version"] != "1.0":
		return gatewayError("40002", "isv.invalid-parameter", "version 必须为 1.0")
	}
	ts, err := time.ParseInLocation(timeLayout, p["timestamp"], shanghai.Location)
	if err != nil || s.now().Sub(ts).Abs() > 15*time.Minute {
		return gatewayError("40002", "isv.invalid-timestamp", "非法的时间戳参数: yyyy-MM-dd HH:mm:ss，与北京时间相差不超过15分钟")
	}
	if err := rsa2Verify(s.appKey, SignString(p, "sign"), p["sign"]); err != nil {
		return gatewayError("40002", "isv.invalid-signature", "验签出错: "+err.Error())
	}
	return nil
}

func (s *Sim) answer(c echo.Context, node string, e *apiError) error {
	m := map[string]any{"code": e.Code, "msg": e.Msg, "sub_code": e.SubCode, "sub_msg": e.SubMsg}
	return s.answerMap(c, node, m)
}

// answerMap writes {"<node>":<object>,"sign":"<RSA2 over the object's text>"}.
func (s *Sim) answerMap(c echo.Context, node string, m map[string]any) error {
	text, err := json.Marshal(m)
	if err != nil {
		return err
	}
	sig, err := rsa2(s.cfg.Keys.PlatformKey, string(text))
	if err != nil {
		return err
	}
	nodeJSON, _ := json.Marshal(node)
	sigJSON, _ := json.Marshal(sig)
	body := make([]byte, 0, len(text)+len(sig)+len(node)+16)
	body = append(append(append(append(append(append(body, '{'), nodeJSON...), ':'), text...), `,"sign":`...), sigJSON...)
	body = append(body, '}')
	return c.Blob(http.StatusOK, "text/html;charset=utf-8", body)
}
