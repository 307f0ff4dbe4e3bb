package server

import (
	"fmt"
	"path/filepath"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/adaptersim"
	"finepay/sandbox/internal/banksim"
	"finepay/sandbox/internal/nontaxsim"
	"finepay/sandbox/internal/policesim"
	"finepay/shared/gm"
)

// P3Sims are the simulators of flow P3, agency bank by decision number: the police business
// system (called by the core), the finance adapter (calls the core as bankadapter, and takes the
// core's refund instructions of flow R4), the agency bank (drives the adapter, refunds) and the
// non-tax system's reconciliation side.
type P3Sims struct {
	Police  *policesim.Sim
	Adapter *adaptersim.Adapter
	Bank    *banksim.Sim
	Recon   *nontaxsim.Reconciler
}

// P3State is the flow's part of /_sandbox/state.
type P3State struct {
	PoliceDecisions []policesim.Decision       `json:"police_decisions"`
	PoliceResults   []policesim.Result         `json:"police_results"`
	PoliceRefunds   []policesim.RefundResult   `json:"police_refund_results"`
	Bank            banksim.State              `json:"bank"`
	Reconciliations []nontaxsim.Reconciliation `json:"nontax_reconciliations"`
}

// newP3 builds the flow's simulators. The core's certificates come from the certificates
// directory: core-sign.pem verifies its answers to the adapter, core-enc.pem is what the police
// system encrypts the party's name and plate to.
func newP3(cfg Config, m Material, d Deps, nt *nontaxsim.Sim) (*P3Sims, error) {
	ca, err := gm.LoadCertificate(filepath.Join(cfg.CertsDir, "ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("loading the CA: %w", err)
	}
	load := func(name string) (*gm.PublicKey, error) {
		c, err := gm.LoadCertificate(filepath.Join(cfg.CertsDir, name))
		if err != nil {
			return nil, fmt.Errorf("loading %s (flow P3): %w", name, err)
		}
		if err := c.VerifySignedBy(ca); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return c.PublicKey(), nil
	}
	coreSign, err := load("core-sign.pem")
	if err != nil {
		return nil, err
	}
	coreEnc, err := load("core-enc.pem")
	if err != nil {
		return nil, err
	}
	p := &P3Sims{
		Police: policesim.New(policesim.Config{CoreEnc: coreEnc, NonTaxPaid: nt.HasPayment, Now: d.Now, Rand: d.Rand,
			Log: d.Log.With("sim", "police")}),
		Adapter: adaptersim.New(adaptersim.Config{CoreURL: cfg.CoreURL, Key: m.SignKey, CoreKey: coreSign, Now: d.Now,
			Rand: d.Rand, Log: d.Log.With("sim", "adapter")}),
		Recon: nontaxsim.NewReconciler(nontaxsim.Config{Now: d.Now, Log: d.Log.With("sim", "nontax")}),
	}
	p.Bank = banksim.New(banksim.Config{BankCode: cfg.BankCode, Adapter: p.Adapter, Now: d.Now, Rand: d.Rand,
		Log: d.Log.With("sim", "bank")})
	p.Adapter.SetBank(p.Bank)
	return p, nil
}

func (p *P3Sims) register(e *echo.Echo, guard echo.MiddlewareFunc) {
	p.Police.Register(e.Group("/police/v1", guard))
	p.Police.RegisterSandbox(e)
	p.Recon.Register(e.Group("/nontax/v1", guard))
	p.Bank.Register(e)
	// R4: the core's refund instructions to the adapter, forwarded to the bank.
	p.Adapter.Register(e.Group("/adapter/v1", guard))
}

func (p *P3Sims) state() P3State {
	ps := p.Police.Snapshot()
	return P3State{PoliceDecisions: ps.Decisions, PoliceResults: ps.Results, PoliceRefunds: ps.RefundResults, Bank: p.Bank.Snapshot(),
		Reconciliations: p.Recon.Reconciliations()}
}
