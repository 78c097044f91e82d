package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/api"
	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/hwp"
	"github.com/hodei-jobs/hodei/pki"
)

// serverSecurity is what setupSecurity wires into the server.
type serverSecurity struct {
	tls    *tls.Config       // nil: --insecure-plaintext
	joiner hwp.Joiner        // nil: --join-token (static) decides
	ids    hwp.Identities    // with joiner: 15-minute worker identities
	authn  api.Authenticator // nil: --insecure-anonymous
	// With joiner: client certificates for agents (nil without TLS or a CA
	// key) and the token store's worker revocations.
	certifier   hwp.Certifier
	revocations hwp.Revocations
	// tokens and caFingerprint let providers mint one-time join tokens for
	// the agents they start (tokens nil: --join-token; fingerprint "":
	// plaintext).
	tokens        *auth.Store
	caFingerprint string
}

// setupSecurity loads or creates the CA and server certificate, opens the
// token store, and on first start creates and prints the admin token.
func setupSecurity(cmd *cobra.Command, f serverFlags, log *slog.Logger) (serverSecurity, error) {
	var out serverSecurity
	store, err := auth.Open(f.data, nil)
	if err != nil {
		return out, err
	}
	if f.joinToken == "" {
		out.joiner, out.tokens = store, store
		if out.ids, err = auth.OpenIdentities(f.data, nil, store.WorkerRevoked); err != nil {
			return out, err
		}
		out.revocations = store
	} else {
		log.Warn("--join-token: every agent shares one static token; prefer hodei token create --agent")
	}
	if f.insecureAnonymous {
		log.Warn("INSECURE: --insecure-anonymous: anyone who reaches the server may call the API with full rights")
	} else {
		out.authn = store
		tok, err := store.Bootstrap()
		if err != nil {
			return out, err
		}
		if tok != "" {
			fmt.Fprintf(cmd.OutOrStdout(), "admin API token (shown once; also in %s/%s, mode 0600):\n  %s\n", f.data, auth.AdminTokenFile, tok)
		}
	}
	if f.insecurePlaintext {
		log.Warn("INSECURE: --insecure-plaintext: both listeners speak plaintext; tokens, secrets and job output cross the network unencrypted")
		return out, nil
	}
	var b *pki.Bundle
	if f.tlsCert != "" {
		b, err = pki.LoadFiles(f.tlsCert, f.tlsKey, f.tlsCA)
	} else {
		b, err = pki.LoadOrCreate(f.data, pki.DefaultSANs(f.tlsSANs...), time.Now())
	}
	if err != nil {
		return out, err
	}
	out.tls = b.ServerTLS()
	out.caFingerprint = b.Fingerprint()
	if out.joiner != nil && b.CAKey != nil {
		out.certifier = b // agents get client certificates: mutual TLS
	}
	log.Info("tls on", "ca_sha256", b.Fingerprint(), "client_certificates", out.certifier != nil)
	return out, nil
}
