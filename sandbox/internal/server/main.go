package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
)

// Main runs the sandbox with the command line args and the environment getenv, logging JSON to
// stderr, until ctx is done. Once the listener is bound it logs "sandbox listening" with the
// bound address, so that a test starting it on port 0 learns the port.
func Main(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := ParseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	m, err := LoadMaterial(cfg.CertsDir, cfg.PartnerCallers)
	if err != nil {
		err = fmt.Errorf("%w (make the development PKI with: go run ./shared/cmd/fpcerts -dir %s)", err, cfg.CertsDir)
		log.Error("sandbox cannot start", "err", err)
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		log.Error("sandbox cannot listen", "addr", cfg.Listen, "err", err)
		return err
	}
	defer ln.Close()
	if !cfg.PublicURLSet {
		if a, ok := ln.Addr().(*net.TCPAddr); ok {
			cfg.PublicURL = "http://127.0.0.1:" + strconv.Itoa(a.Port)
		}
	}
	srv, err := New(cfg, m, Deps{Log: log})
	if err != nil {
		log.Error("sandbox cannot start", "err", err)
		return err
	}
	trusted := map[string]bool{}
	for _, fp := range cfg.PartnerFingerprints {
		trusted[normalize(fp)] = true
	}
	for _, c := range m.Callers {
		ok := len(trusted) == 0 || trusted[normalize(c.Fingerprint)]
		level := slog.LevelInfo
		if !ok {
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "partner caller", "node", c.Name, "fingerprint", c.Fingerprint, "trusted", ok)
	}
	log.Info("sandbox listening", "addr", ln.Addr().String(), "url", cfg.PublicURL,
		"wechat_schedule_scale", cfg.WeChatScheduleScale, "wechat_duplicates", cfg.WeChatDuplicates,
		"alipay_schedule_scale", cfg.AlipayScheduleScale, "alipay_duplicate_rate", cfg.AlipayDuplicateRate,
		"alipay_out_of_order_rate", cfg.AlipayOutOfOrderRate, "unionpay_schedule_scale", cfg.UnionPayScheduleScale,
		"unionpay_duplicate_rate", cfg.UnionPayDuplicateRate, "unionpay_out_of_order_rate", cfg.UnionPayOutOfOrderRate)
	err = srv.Run(ctx, ln)
	if err != nil {
		log.Error("sandbox stopped", "err", err)
		return err
	}
	log.Info("sandbox stopped")
	return nil
}
