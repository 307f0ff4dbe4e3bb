package bill

import (
	"context"
	"database/sql"
	"fmt"

	"finepay/ferry/inbox"
	"finepay/internet-gateway/internal/store"
	"finepay/shared/envelope"
	"finepay/shared/money"
)

// Handlers returns the inbox handlers of the messages the core sends the gateway.
func (s *Service) Handlers() map[string]inbox.Handler {
	return map[string]inbox.Handler{
		envelope.TypeBillPublished: s.applyBillPublished,
		envelope.TypeReceiptIssued: s.applyReceiptIssued,
	}
}

// applyBillPublished upserts the bill (a republication updates it; a paid bill stays paid) and
// drops the cached views under its old and new tokens.
func (s *Service) applyBillPublished(ctx context.Context, tx *sql.Tx, env envelope.Envelope) error {
	p, err := env.Decode()
	if err != nil {
		return err
	}
	m, ok := p.(*envelope.BillPublished)
	if !ok {
		return fmt.Errorf("bill: %s carries a %T", env.Type, p)
	}
	old, err := s.store.BillUpsert(ctx, tx, store.Bill{
		BillNo: m.BillNo, Token: m.Token, DecisionNo: m.DecisionNo, PartyMasked: m.PartyMasked, PlateMasked: m.PlateMasked,
		Fine: money.Fen(m.Fine), ServedDate: m.ServedDate, LateFeeApplies: m.LateFeeApplies, UnitName: m.UnitName,
		ItemName: m.ItemName, FormNo: m.FormNo, PayCode: m.PayCode, LookupHash: m.LookupHash, Status: store.BillPayable,
		IssuedAt: m.IssuedAt, UpdatedAt: s.now(),
	})
	if err != nil {
		return err
	}
	s.Invalidate(ctx, old, m.Token)
	return nil
}

// applyReceiptIssued stores the e-receipt of a payment.
func (s *Service) applyReceiptIssued(ctx context.Context, tx *sql.Tx, env envelope.Envelope) error {
	p, err := env.Decode()
	if err != nil {
		return err
	}
	m, ok := p.(*envelope.ReceiptIssued)
	if !ok {
		return fmt.Errorf("bill: %s carries a %T", env.Type, p)
	}
	r := store.Receipt{
		OrderNo: m.OrderNo, BillNo: m.BillNo, ReceiptCode: m.ReceiptCode, ReceiptNo: m.ReceiptNo, CheckCode: m.CheckCode,
		Amount: money.Fen(m.Amount), PayerMasked: m.PayerMasked, IssuedAt: m.IssuedAt, ReceivedAt: s.now(),
	}
	if len(m.Layout) > 0 {
		r.File = &store.ReceiptFile{Data: m.Data, UnitSignature: m.UnitSignature, Seal: m.Seal, Layout: m.Layout}
	}
	return s.store.ReceiptUpsert(ctx, tx, r)
}
