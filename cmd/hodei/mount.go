package main

import (
	"log/slog"
	"os"

	"github.com/hodei-jobs/hodei/api"
	"github.com/hodei-jobs/hodei/logstore"
	"github.com/hodei-jobs/hodei/secrets"
	"github.com/hodei-jobs/hodei/server"
	"github.com/hodei-jobs/hodei/web"
)

// openSecrets opens the encrypted secret store in dataDir, with the key
// from HODEI_SECRET_KEY or the key file beside it (created on first start).
func openSecrets(dataDir string) (*secrets.Store, error) {
	key, err := secrets.KeyFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	return secrets.Open(dataDir, secrets.Options{Key: key})
}

// mountAPI adds the job API (gRPC JobService, REST, SSE) and the web UI.
// authn nil accepts anonymous calls (--insecure-anonymous only); providers
// (nil without --providers) reports the providers' state.
func mountAPI(srv *server.Server, logs logstore.Logs, sec *secrets.Store, authn api.Authenticator, providers func() any, log *slog.Logger) {
	svc := api.New(srv.Core(), logs, sec, api.Options{Logger: log, UI: web.Handler(), Authenticator: authn, Providers: providers})
	srv.Mount(svc)
}
