package receipt

import (
	"context"
	"database/sql"
	"log/slog"
	"time"

	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/task"
	"finepay/shared/bizdate"
)

// Scheduler queues the life cycle's periodic tasks in the durable task runner: a stock pull
// every hour, the master data once a day, and each day's write-off report once the day is over
// by WriteOffAfter. Tasks are keyed by their period, so ticking often (or on several replicas)
// queues each one once.
type Scheduler struct {
	DB *sqldb.DB
	// Every is the time between ticks; one minute when zero.
	Every time.Duration
	// WriteOffAfter is how long after midnight (Asia/Shanghai) the previous day is reported,
	// so that receipts issued just before midnight are stored by then; two hours when zero.
	WriteOffAfter time.Duration
	Now           func() time.Time
	// Queued is called after a tick queued a task (the runner's Wake).
	Queued func()
	Logger *slog.Logger
}

// Tick queues the tasks due at now.
func (s *Scheduler) Tick(ctx context.Context) error {
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	after := s.WriteOffAfter
	if after <= 0 {
		after = 2 * time.Hour
	}
	local := now.In(bizdate.Location)
	today := bizdate.Of(now)
	specs := []task.Spec{
		{Kind: KindStock, Key: "hour-" + local.Format("2006010215")},
		{Kind: KindMasterData, Key: today.String()},
	}
	if now.Sub(today.Start()) >= after {
		specs = append(specs, task.Spec{Kind: KindWriteOff, Key: today.AddDays(-1).String()})
	}
	queued := false
	err := s.DB.Tx(ctx, func(tx *sql.Tx) error {
		for _, sp := range specs {
			sp.RequestID = partner.StableRequestID(map[string]string{KindStock: "stk", KindMasterData: "md", KindWriteOff: "wo"}[sp.Kind], sp.Key)
			added, err := task.Enqueue(ctx, tx, now, sp)
			if err != nil {
				return err
			}
			queued = queued || added
		}
		return nil
	})
	if err == nil && queued && s.Queued != nil {
		s.Queued()
	}
	return err
}

// Run ticks now and then every Every until ctx ends.
func (s *Scheduler) Run(ctx context.Context) {
	every := s.Every
	if every <= 0 {
		every = time.Minute
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			log.Error("receipt: schedule", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
