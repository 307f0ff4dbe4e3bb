// Package launch starts the whole FinePay system as separate processes — the sandbox of outside
// parties, the internet gateway, the intranet core and the two ferry daemons — wired to each
// other on loopback. `make demo` and the end-to-end tests both use it, so the demo runs exactly
// what the tests check.
package launch

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options say where the binaries, keys and databases are and which ports to use.
type Options struct {
	BinDir string // holds gateway, core, ferryd, sandbox
	Certs  string // the development PKI (fpcerts)
	VarDir string // quarantine and other state

	GatewayDB string // database URL of the gateway (shared with the DMZ ferry)
	CoreDB    string // database URL of the core (shared with the intranet ferry)
	Redis     string // redis URL for the gateway; empty = in-process
	RedisPfx  string // key prefix in Redis

	// Ports; zero picks a free one.
	SandboxPort, GatewayPort, CorePort, LinkPort, DMZMetricsPort, IntranetMetricsPort int

	ClerkPassword string // the core console's initial clerk password
	// ReviewerPassword is the console's second user's (reviewer) initial password; empty: the
	// core generates one and logs it once.
	ReviewerPassword string
	// WindowAPIToken is the window platform's bearer token at the core's window API, given to
	// the core and to the window simulator; empty: a random one for this run.
	WindowAPIToken string
	Env            map[string]string // extra environment for every process (e.g. SANDBOX_WECHAT_SCHEDULE_SCALE, GATEWAY_ORDER_QUERY_AFTER)
	Logs           io.Writer         // every process's output, each line prefixed with its name
}

// System is a running FinePay.
type System struct {
	SandboxURL, GatewayURL, CoreURL   string
	DMZMetricsURL, IntranetMetricsURL string
	procs                             []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func pick(p *int) error {
	if *p != 0 {
		return nil
	}
	var err error
	*p, err = FreePort()
	return err
}

// Start starts every process and waits until each answers /healthz. On failure it stops what it
// started.
func Start(ctx context.Context, o Options) (*System, error) {
	for _, p := range []*int{&o.SandboxPort, &o.GatewayPort, &o.CorePort, &o.LinkPort, &o.DMZMetricsPort, &o.IntranetMetricsPort} {
		if err := pick(p); err != nil {
			return nil, err
		}
	}
	if o.Logs == nil {
		o.Logs = io.Discard
	}
	if o.WindowAPIToken == "" {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		o.WindowAPIToken = hex.EncodeToString(b)
	}
	url := func(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) }
	s := &System{
		SandboxURL: url(o.SandboxPort), GatewayURL: url(o.GatewayPort), CoreURL: url(o.CorePort),
		DMZMetricsURL: url(o.DMZMetricsPort), IntranetMetricsURL: url(o.IntranetMetricsPort),
	}
	lw := &lineWriter{out: o.Logs}
	type spec struct {
		name, bin string
		env       map[string]string
		health    string
	}
	specs := []spec{
		{"sandbox", "sandbox", map[string]string{
			"SANDBOX_LISTEN": addr(o.SandboxPort), "SANDBOX_CERTS": o.Certs, "SANDBOX_PUBLIC_URL": s.SandboxURL,
			"SANDBOX_CORE_URL": s.CoreURL, "SANDBOX_WINDOW_API_TOKEN": o.WindowAPIToken,
		}, s.SandboxURL},
		{"gateway", "gateway", map[string]string{
			"GATEWAY_LISTEN": addr(o.GatewayPort), "GATEWAY_DB": o.GatewayDB, "GATEWAY_REDIS": o.Redis, "GATEWAY_REDIS_PREFIX": o.RedisPfx,
			"GATEWAY_PUBLIC_URL": s.GatewayURL, "GATEWAY_CERTS": o.Certs, "GATEWAY_WECHAT_BASE_URL": s.SandboxURL,
			"GATEWAY_SANDBOX_PAY_URL":          s.SandboxURL + "/wechat/pay",
			"GATEWAY_ALIPAY_GATEWAY_URL":       s.SandboxURL + "/alipay/gateway.do",
			"GATEWAY_ALIPAY_SANDBOX_PAY_URL":   s.SandboxURL + "/alipay/pay",
			"GATEWAY_UNIONPAY_BASE_URL":        s.SandboxURL + "/unionpay",
			"GATEWAY_UNIONPAY_SANDBOX_PAY_URL": s.SandboxURL + "/unionpay/pay",
		}, s.GatewayURL},
		{"core", "core", map[string]string{
			"CORE_LISTEN": addr(o.CorePort), "CORE_DB": o.CoreDB, "CORE_CERTS": o.Certs, "CORE_GATEWAY_URL": s.GatewayURL,
			"CORE_NONTAX_URL": s.SandboxURL, "CORE_ERECEIPT_URL": s.SandboxURL, "CORE_WINDOW_URL": s.SandboxURL, "CORE_POLICE_URL": s.SandboxURL,
			"CORE_ISP_URL": s.SandboxURL, "CORE_UNIFIED_URL": s.SandboxURL, "CORE_BANK_ADAPTER_URL": s.SandboxURL,
			"CORE_API_TOKEN": o.WindowAPIToken, "CORE_CONSOLE_PASSWORD": o.ClerkPassword, "CORE_REVIEWER_PASSWORD": o.ReviewerPassword, "CORE_DATA_KEY_FILE": filepath.Join(o.VarDir, "core-data.key"),
		}, s.CoreURL},
		{"ferry-dmz", "ferryd", map[string]string{
			"FERRYD_SIDE": "dmz", "FERRYD_DB": o.GatewayDB, "FERRYD_CERTS": o.Certs, "FERRYD_LISTEN": addr(o.LinkPort),
			"FERRYD_METRICS_LISTEN": addr(o.DMZMetricsPort), "FERRYD_QUARANTINE": filepath.Join(o.VarDir, "quarantine", "ferry-dmz"),
		}, s.DMZMetricsURL},
		{"ferry-intranet", "ferryd", map[string]string{
			"FERRYD_SIDE": "intranet", "FERRYD_DB": o.CoreDB, "FERRYD_CERTS": o.Certs, "FERRYD_PEER_URL": "https://127.0.0.1:" + strconv.Itoa(o.LinkPort),
			"FERRYD_METRICS_LISTEN": addr(o.IntranetMetricsPort), "FERRYD_QUARANTINE": filepath.Join(o.VarDir, "quarantine", "ferry-intranet"),
		}, s.IntranetMetricsURL},
	}
	if err := os.MkdirAll(o.VarDir, 0o755); err != nil {
		return nil, err
	}
	for _, sp := range specs {
		env := os.Environ()
		for k, v := range o.Env {
			env = append(env, k+"="+v)
		}
		for k, v := range sp.env {
			env = append(env, k+"="+v)
		}
		p, err := startProc(sp.name, filepath.Join(o.BinDir, sp.bin), env, lw)
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.procs = append(s.procs, p)
		if err := waitHealthy(ctx, p, sp.health+"/healthz"); err != nil {
			s.Stop()
			return nil, err
		}
	}
	return s, nil
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func startProc(name, bin string, env []string, lw *lineWriter) (*proc, error) {
	cmd := exec.Command(bin)
	cmd.Env = env
	pw := lw.prefixed(name)
	cmd.Stdout, cmd.Stderr = pw, pw
	// Each process gets its own group (a terminal's Ctrl-C reaches the launcher, which stops them
	// in order) and dies with the launcher if the launcher is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("launch: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	return p, nil
}

// waitHealthy polls url until it answers 200, the process exits, or 60 s pass.
func waitHealthy(ctx context.Context, p *proc, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("launch: %s exited before it was healthy: %v", p.name, p.err)
		case <-ctx.Done():
			return fmt.Errorf("launch: %s not healthy at %s: %w", p.name, url, ctx.Err())
		case <-tick.C:
		}
	}
}

// Kill sends SIGKILL to the named process (for crash tests) and waits for it to exit.
func (s *System) Kill(name string) error {
	for _, p := range s.procs {
		if p.name == name {
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
			return nil
		}
	}
	return fmt.Errorf("launch: no process %s", name)
}

// Exited returns a channel closed when any process exits on its own.
func (s *System) Exited() <-chan string {
	ch := make(chan string, len(s.procs))
	for _, p := range s.procs {
		go func() { <-p.done; ch <- p.name }()
	}
	return ch
}

// Stop asks every process to stop (SIGTERM), in reverse start order, and kills those still
// running after 15 s.
func (s *System) Stop() error {
	var errs []error
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		select {
		case <-p.done:
			continue
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
			errs = append(errs, fmt.Errorf("launch: %s did not stop in 15 s", p.name))
		}
	}
	return errors.Join(errs...)
}

// lineWriter serialises the output of all processes, line by line, with a name prefix.
type lineWriter struct {
	mu  sync.Mutex
	out io.Writer
}

func (l *lineWriter) prefixed(name string) *io.PipeWriter {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l.mu.Lock()
			fmt.Fprintf(l.out, "%-15s %s\n", name, strings.TrimRight(sc.Text(), "\r"))
			l.mu.Unlock()
		}
	}()
	return pw
}
