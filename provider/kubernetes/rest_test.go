package kubernetes

import "k8s.io/client-go/rest"

// ConnectionFromREST converts the client-go configuration of a test API
// server (k8stest's RESTConfig) into a Connection: host, TLS settings,
// bearer token and impersonation, which is all k8stest uses. It exists
// only in tests, which may link client-go; the driver does not.
func ConnectionFromREST(rc *rest.Config) Connection {
	return Connection{
		Server:            rc.Host,
		TLSServerName:     rc.ServerName,
		Insecure:          rc.Insecure,
		CAData:            rc.CAData,
		CertData:          rc.CertData,
		KeyData:           rc.KeyData,
		BearerToken:       rc.BearerToken,
		TokenFile:         rc.BearerTokenFile,
		Username:          rc.Username,
		Password:          rc.Password,
		Impersonate:       rc.Impersonate.UserName,
		ImpersonateUID:    rc.Impersonate.UID,
		ImpersonateGroups: rc.Impersonate.Groups,
	}
}
