package server

import (
	"context"
	"fmt"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/hwp"
)

// identityLog records worker identity events through a command handler of
// its own over the core's store: the handlers share nothing but the log, and
// each reloads and retries when the other appended to a worker's stream
// first.
type identityLog struct{ h *command.Handler }

var _ hwp.IdentityLog = identityLog{}

// IdentityCommand implements hwp.IdentityLog.
func (l identityLog) IdentityCommand(ctx context.Context, workerID string, cmd domain.WorkerCommand, actor string) (domain.Worker, error) {
	res, err := l.h.Worker(ctx, workerID, cmd, command.Meta{Actor: actor})
	if err != nil {
		return res.State, fmt.Errorf("%s worker %s: %w", cmd.CommandName(), workerID, err)
	}
	return res.State, nil
}

// LoadWorker implements hwp.IdentityLog.
func (l identityLog) LoadWorker(ctx context.Context, workerID string) (domain.Worker, error) {
	return l.h.LoadWorker(ctx, workerID)
}
