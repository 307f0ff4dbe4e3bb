// Command demo runs the whole FinePay system on one machine with nothing installed: the sandbox
// of outside parties, the gateway, the core and both ferry daemons, on SQLite files and
// in-process caches. `make demo` builds the binaries and the development PKI, then runs it.
// Ctrl-C stops everything.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"finepay/sandbox/launch"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding the built binaries")
	certs := flag.String("certs", "certs", "development PKI directory (make certs)")
	varDir := flag.String("var", "var/demo", "directory for the SQLite files and other state")
	quiet := flag.Bool("quiet", false, "do not print the processes' logs")
	flag.Parse()
	if err := run(*bin, *certs, *varDir, *quiet); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(bin, certs, varDir string, quiet bool) error {
	if _, err := os.Stat(filepath.Join(certs, "ca.pem")); err != nil {
		return fmt.Errorf("no PKI in %s: run `make certs` first", certs)
	}
	if err := os.MkdirAll(varDir, 0o755); err != nil {
		return err
	}
	pw, err := clerkPassword(filepath.Join(varDir, "clerk-password.txt"))
	if err != nil {
		return err
	}
	rpw, err := clerkPassword(filepath.Join(varDir, "reviewer-password.txt"))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logs := os.Stdout
	if quiet {
		logs = nil
	}
	o := launch.Options{
		BinDir: bin, Certs: certs, VarDir: varDir,
		GatewayDB: "sqlite:" + filepath.Join(varDir, "gateway.db"), CoreDB: "sqlite:" + filepath.Join(varDir, "core.db"),
		SandboxPort: 8070, GatewayPort: 8080, CorePort: 8090, LinkPort: 7443, DMZMetricsPort: 8081, IntranetMetricsPort: 8091,
		ClerkPassword: pw, ReviewerPassword: rpw,
	}
	if logs != nil {
		o.Logs = logs
	}
	sys, err := launch.Start(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf(`
FinePay is running (SQLite in %s, in-process cache; Ctrl-C stops everything).

  clerk console  %s/console      user clerk, password %s
                                 user reviewer, password %s (reviews refunds the clerk starts)
  cashier        %s/q/<token>    (the QR URL the console prints for a new bill)
  sandbox        %s/_sandbox/state   (WeChat Pay, Alipay, UnionPay, non-tax, e-receipt and window simulators)
  ferry metrics  %s/metrics (DMZ)   %s/metrics (intranet)

Create a bill in the console, open its QR URL, press 微信支付, 支付宝 or 云闪付, then
在支付模拟器中付款 to pay in that channel's simulator; the result page shows the payment and then
the e-receipt.

`, varDir, sys.CoreURL, pw, rpw, sys.GatewayURL, sys.SandboxURL, sys.DMZMetricsURL, sys.IntranetMetricsURL)
	select {
	case <-ctx.Done():
		fmt.Println("\nstopping...")
	case name := <-sys.Exited():
		fmt.Printf("\n%s exited; stopping the rest\n", name)
	}
	return sys.Stop()
}

// clerkPassword returns a demo console user's password, made at random on the first run and
// kept in path so that later runs log in with the same one.
func clerkPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	r := make([]byte, 9)
	rand.Read(r)
	pw := "Fp-" + base64.RawURLEncoding.EncodeToString(r) + "9a"
	return pw, os.WriteFile(path, []byte(pw+"\n"), 0o600)
}
