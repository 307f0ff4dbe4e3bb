package server

import (
	"fmt"
	"path/filepath"

	"finepay/sandbox/internal/alipaysim"
	"finepay/sandbox/internal/ispsim"
	"finepay/sandbox/internal/partnerapi"
	"finepay/sandbox/internal/unionpaysim"
	"finepay/sandbox/internal/wechatsim"
	"finepay/shared/gm"
)

// Node is the sandbox's node name in the partner envelope and in its certificate file names.
const Node = "sandbox"

// Material is the key material the sandbox runs with.
type Material struct {
	// SignKey signs partner responses and e-receipt seals (sandbox-sign.key).
	SignKey *gm.PrivateKey
	// EncKey opens payer_name_enc (sandbox-enc.key).
	EncKey *gm.PrivateKey
	// UnitKey verifies the e-receipt issuing unit's signatures (unit-sign.pem).
	UnitKey *gm.PublicKey
	// Callers are the nodes allowed to call the partner simulators.
	Callers []partnerapi.Caller
	// WeChat are the merchant's and platform's WeChat keys.
	WeChat wechatsim.Keys
	// Alipay are the application's certificate and Alipay's keys.
	Alipay alipaysim.Keys
	// UnionPay are the merchant's certificate and UnionPay's signing keys.
	UnionPay unionpaysim.Keys
	// ISP are the core's certificates the 12123 platform simulator uses (core-sign.pem, core-enc.pem).
	ISP ispsim.Keys
}

// LoadMaterial reads the development PKI from dir: ca.pem; sandbox-sign.key/.pem and
// sandbox-enc.key/.pem; NAME-sign.pem of every caller and unit-sign.pem (the e-receipt issuing
// unit), which must be issued by the CA; and the WeChat, Alipay and UnionPay files.
func LoadMaterial(dir string, callers []string) (Material, error) {
	var m Material
	path := func(name string) string { return filepath.Join(dir, name) }
	ca, err := gm.LoadCertificate(path("ca.pem"))
	if err != nil {
		return m, fmt.Errorf("loading the CA: %w", err)
	}
	if m.SignKey, err = loadPair(path(Node+"-sign.key"), path(Node+"-sign.pem")); err != nil {
		return m, err
	}
	if m.EncKey, err = loadPair(path(Node+"-enc.key"), path(Node+"-enc.pem")); err != nil {
		return m, err
	}
	unit, err := gm.LoadCertificate(path("unit-sign.pem"))
	if err != nil {
		return m, fmt.Errorf("loading the e-receipt issuing unit's certificate (make certs adds it): %w", err)
	}
	if err := unit.VerifySignedBy(ca); err != nil {
		return m, fmt.Errorf("unit-sign.pem: %w", err)
	}
	m.UnitKey = unit.PublicKey()
	for _, name := range callers {
		cert, err := gm.LoadCertificate(path(name + "-sign.pem"))
		if err != nil {
			return m, fmt.Errorf("loading caller %s: %w", name, err)
		}
		if err := cert.VerifySignedBy(ca); err != nil {
			return m, fmt.Errorf("caller %s: %w", name, err)
		}
		m.Callers = append(m.Callers, partnerapi.Caller{Name: name, Key: cert.PublicKey(), Fingerprint: cert.Fingerprint()})
	}
	if m.WeChat, err = wechatsim.LoadKeys(dir); err != nil {
		return m, err
	}
	if m.Alipay, err = alipaysim.LoadKeys(dir); err != nil {
		return m, err
	}
	if m.UnionPay, err = unionpaysim.LoadKeys(dir); err != nil {
		return m, err
	}
	if m.ISP, err = ispsim.LoadKeys(dir); err != nil {
		return m, err
	}
	return m, nil
}

// loadPair loads a private key and checks it against its certificate.
func loadPair(keyPath, certPath string) (*gm.PrivateKey, error) {
	key, err := gm.LoadPrivateKey(keyPath)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", filepath.Base(keyPath), err)
	}
	cert, err := gm.LoadCertificate(certPath)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", filepath.Base(certPath), err)
	}
	if !cert.PublicKey().Equal(key.Public()) {
		return nil, fmt.Errorf("%s does not match %s", filepath.Base(keyPath), filepath.Base(certPath))
	}
	return key, nil
}
