package cashier

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"finepay/internet-gateway/internal/bill"
	"finepay/internet-gateway/internal/store"
	"finepay/shared/bizdate"
)

// signedReceipt is the download GET /q/{token}/receipt.json: the e-receipt as signed, enough
// to verify both signatures offline (docs/partners.md): the unit's SM2 signature over data, and
// the finance supervision seal over the seal string built from the other fields.
type signedReceipt struct {
	ReceiptCode   string `json:"receipt_code"`
	ReceiptNo     string `json:"receipt_no"`
	CheckCode     string `json:"check_code"`
	IssuedAt      string `json:"issued_at"`
	Amount        int64  `json:"amount"`
	Data          []byte `json:"data"` // base64 of the unit's signed receipt data
	UnitSignature string `json:"unit_signature"`
	Seal          string `json:"seal"`
}

func (h *Handler) receiptFile(c echo.Context) (store.Receipt, store.ReceiptFile, error) {
	r, f, err := h.cfg.Bills.ReceiptFile(c.Request().Context(), c.Param("token"))
	if errors.Is(err, bill.ErrNotFound) || errors.Is(err, store.ErrNotFound) {
		return r, f, errNotFound
	}
	return r, f, err
}

// getReceiptPDF is GET /q/{token}/receipt.pdf: the receipt's layout file, as the e-receipt
// platform made it.
func (h *Handler) getReceiptPDF(c echo.Context) error {
	r, f, err := h.receiptFile(c)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="ereceipt-%s-%s.pdf"`, r.ReceiptCode, r.ReceiptNo))
	return c.Blob(http.StatusOK, "application/pdf", f.Layout)
}

// getReceiptJSON is GET /q/{token}/receipt.json: the signed receipt.
func (h *Handler) getReceiptJSON(c echo.Context) error {
	r, f, err := h.receiptFile(c)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="ereceipt-%s-%s.json"`, r.ReceiptCode, r.ReceiptNo))
	return c.JSON(http.StatusOK, signedReceipt{
		ReceiptCode: r.ReceiptCode, ReceiptNo: r.ReceiptNo, CheckCode: r.CheckCode,
		IssuedAt: r.IssuedAt.In(bizdate.Location).Format("2006-01-02T15:04:05Z07:00"), Amount: int64(r.Amount),
		Data: f.Data, UnitSignature: f.UnitSignature, Seal: f.Seal,
	})
}
