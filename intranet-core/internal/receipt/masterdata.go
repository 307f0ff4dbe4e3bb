package receipt

import (
	"context"
	"database/sql"

	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/task"
)

// HandleMasterData is the task.Handler of KindMasterData: it reads finance's unit and item
// master data and stores it (inserting new codes, updating changed names; codes finance no
// longer lists are kept).
func (s *Service) HandleMasterData(ctx context.Context, t task.Task) (task.Finish, error) {
	md, err := s.cfg.Platform.MasterData(ctx, t.RequestID)
	if err != nil {
		if partner.IsFinal(err) {
			return nil, task.Permanent(err)
		}
		return nil, err
	}
	return func(ctx context.Context, tx *sql.Tx) error {
		now := s.cfg.Now().UTC()
		for _, u := range md.Units {
			if _, err := tx.ExecContext(ctx, `INSERT INTO receipt_units (unit_code, unit_name, region_code, version, synced_at)
				VALUES ($1, $2, $3, $4, $5) ON CONFLICT (unit_code) DO UPDATE SET unit_name = excluded.unit_name,
				region_code = excluded.region_code, version = excluded.version, synced_at = excluded.synced_at`,
				u.UnitCode, u.UnitName, u.RegionCode, md.Version, now); err != nil {
				return err
			}
		}
		for _, it := range md.Items {
			if _, err := tx.ExecContext(ctx, `INSERT INTO receipt_items (item_code, item_name, version, synced_at)
				VALUES ($1, $2, $3, $4) ON CONFLICT (item_code) DO UPDATE SET item_name = excluded.item_name,
				version = excluded.version, synced_at = excluded.synced_at`, it.ItemCode, it.ItemName, md.Version, now); err != nil {
				return err
			}
		}
		s.cfg.Logger.Info("e-receipt master data synchronised", "version", md.Version, "units", len(md.Units), "items", len(md.Items))
		return nil
	}, nil
}
