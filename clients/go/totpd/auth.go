package totpd

import (
	"errors"
	"net"
	"net/netip"
	"strings"
)

// Metadata keys of the caller's identity.
const (
	authorizationHeader = "authorization"
	// TenantHeader is the request metadata naming the tenant a call acts in.
	TenantHeader = "x-totpd-tenant"
)

// WithToken sends "authorization: Bearer <token>" on every call: the
// caller's identity when TLS ends at a sidecar (or instead of a client
// certificate). With WithInsecure the token is refused for a target beyond
// loopback unless WithTokenOverPlaintext is given; with WithConn it is sent
// as given.
func WithToken(token string) Option { return func(c *config) { c.token = &token } }

// WithTenant sends "x-totpd-tenant: <tenant>" on every call. Only a caller
// holding several tenants needs it (without it such a caller gets
// ErrTenantRequired).
func WithTenant(tenant string) Option { return func(c *config) { c.tenant = &tenant } }

// WithTokenOverPlaintext allows WithToken with WithInsecure to a target
// beyond loopback: for a path whose TLS is terminated by a proxy you trust.
func WithTokenOverPlaintext() Option { return func(c *config) { c.tokenOverPlaintext = true } }

// validHeaderValue reports whether v can travel as gRPC metadata: printable
// ASCII without surrounding spaces. Errors name the option, never the value.
func validHeaderValue(v string) bool {
	if v == "" || strings.TrimSpace(v) != v {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < ' ' || v[i] > '~' {
			return false
		}
	}
	return true
}

// identityMetadata is the key-value list sent with every call.
func (cfg *config) identityMetadata(target string) ([]string, error) {
	var kv []string
	if cfg.token != nil {
		if !validHeaderValue(*cfg.token) {
			return nil, errors.New("totpd: the token must be non-empty printable ASCII without surrounding spaces")
		}
		if cfg.insecure && cfg.conn == nil && !cfg.tokenOverPlaintext && !IsLoopback(target) {
			return nil, errors.New("totpd: refusing to send the token in plaintext to " + target +
				": use TLS, or WithTokenOverPlaintext if TLS ends at a proxy on the way")
		}
		kv = append(kv, authorizationHeader, "Bearer "+*cfg.token)
	}
	if cfg.tenant != nil {
		if !validHeaderValue(*cfg.tenant) {
			return nil, errors.New("totpd: the tenant must be non-empty printable ASCII without surrounding spaces")
		}
		kv = append(kv, TenantHeader, *cfg.tenant)
	}
	return kv, nil
}

// IsLoopback reports whether a gRPC target (host:port, [v6]:port, dns:///,
// ipv4:, unix:) names this machine.
func IsLoopback(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	for _, scheme := range []string{"dns:///", "dns:", "ipv4:", "ipv6:"} {
		if rest, ok := strings.CutPrefix(target, scheme); ok {
			target = rest
			break
		}
	}
	host := target
	if h, _, err := net.SplitHostPort(target); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && addr.IsLoopback()
}
