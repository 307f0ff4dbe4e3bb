package refund

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"finepay/ferry/outbox"
	"finepay/shared/envelope"
)

// GatewayInstructor hands refunds of channel payments (WeChat Pay, Alipay, UnionPay) to the
// gateway: a refund.instructed message on the outbox, in the transaction that marks the refund
// sent. The gateway calls the channel with the refund number as the channel's refund request
// number and ferries back refund.result messages.
type GatewayInstructor struct {
	Outbox *outbox.Outbox
	Now    func() time.Time
}

// InstructRefund implements Instructor.
func (g GatewayInstructor) InstructRefund(ctx context.Context, tx *sql.Tx, r Refund) error {
	var tradeNo string
	var paid int64
	err := tx.QueryRowContext(ctx, `SELECT channel_trade_no, amount FROM payments WHERE id = $1`, r.PaymentID).Scan(&tradeNo, &paid)
	if err != nil {
		return fmt.Errorf("refund: payment of %s: %w", r.RefundNo, err)
	}
	env, err := envelope.New(envelope.RefundInstructionID(r.RefundNo), r.RefundNo, g.Now(), &envelope.RefundInstructed{
		RefundNo: r.RefundNo, Channel: r.Channel, OrderNo: r.OrderNo, ChannelTradeNo: tradeNo,
		PaidAmount: paid, Amount: r.Amount, Reason: reasonText(r.Reason)})
	if err != nil {
		return fmt.Errorf("refund: instruction %s: %w", r.RefundNo, err)
	}
	_, err = g.Outbox.Put(ctx, tx, env)
	return err
}

// reasonText bounds a reason to what the channels show the payer.
func reasonText(s string) string {
	if len(s) <= envelope.MaxRefundReason {
		return s
	}
	r := []rune(s)
	for len(string(r)) > envelope.MaxRefundReason {
		r = r[:len(r)-1]
	}
	return string(r)
}

// HandleResult is the inbox handler of refund.result: it records the channel's word on a refund
// in the consumer's transaction. A result for a refund the core does not know is an error the
// inbox keeps for an operator; it never creates a refund.
func (s *Service) HandleResult(ctx context.Context, tx *sql.Tx, env envelope.Envelope) error {
	pl, err := env.Decode()
	if err != nil {
		return err
	}
	res, ok := pl.(*envelope.RefundResult)
	if !ok {
		return fmt.Errorf("refund: %s is not refund.result", env.Type)
	}
	ref, err := s.store.lock(ctx, tx, res.RefundNo)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("refund: result for unknown refund %s", res.RefundNo)
	}
	if err != nil {
		return err
	}
	if ref.Channel != res.Channel {
		return fmt.Errorf("refund: result for %s from channel %s, refund is of %s", res.RefundNo, res.Channel, ref.Channel)
	}
	if res.Status == envelope.RefundSuccess && res.RefundedAmount != ref.Amount {
		s.cfg.Logger.Error("refund result amount differs; kept unknown for an operator", "refund_no", res.RefundNo,
			"refunded", res.RefundedAmount, "amount", ref.Amount)
		return s.ApplyResult(ctx, tx, res.RefundNo, ResultUnknown, res.ChannelRefundNo, "gateway",
			fmt.Sprintf("channel refunded %d, asked %d", res.RefundedAmount, ref.Amount))
	}
	return s.ApplyResult(ctx, tx, res.RefundNo, res.Status, res.ChannelRefundNo, "gateway:"+res.Channel, res.Detail)
}
