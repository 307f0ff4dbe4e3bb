package bill

import (
	"context"

	"finepay/internet-gateway/internal/store"
)

// ReceiptFile returns the e-receipt of a token's bill with its signed file, for the payer's
// download; ErrNotFound (wrapped) when the bill is unpaid or its receipt came without a file.
func (s *Service) ReceiptFile(ctx context.Context, token string) (store.Receipt, store.ReceiptFile, error) {
	out, err := s.Outcome(ctx, token)
	if err != nil {
		return store.Receipt{}, store.ReceiptFile{}, err
	}
	if out.Receipt == nil || !out.Receipt.HasFile {
		return store.Receipt{}, store.ReceiptFile{}, ErrNotFound
	}
	f, err := s.store.ReceiptFileByOrder(ctx, s.store.DB, out.Receipt.OrderNo)
	if err != nil {
		return store.Receipt{}, store.ReceiptFile{}, err
	}
	return *out.Receipt, f, nil
}
