package tlsgm

import "github.com/tjfoc/gmsm/gmtls"

// ClientGMConfig exposes the gmtls client configuration built from cfg, so
// tests can alter it (e.g. offer other cipher suites).
func ClientGMConfig(cfg Config, serverName string) (*gmtls.Config, error) {
	id, err := load(&cfg)
	if err != nil {
		return nil, err
	}
	return id.clientConfig(serverName), nil
}
