package domain_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/domain"
)

func TestInstanceLifecycle(t *testing.T) {
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	var i domain.Instance
	step := func(c domain.InstanceCommand) []domain.Event {
		t.Helper()
		evs, err := i.Decide(c)
		if err != nil {
			t.Fatalf("%s: %v", c.CommandName(), err)
		}
		i = domain.Fold(i, evs)
		return evs
	}
	if _, err := i.Decide(domain.MarkInstanceStarted{Handle: "c1", At: at}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("start before request = %v, want ErrNotFound", err)
	}
	step(domain.RequestInstance{InstanceID: "docker-0a1b", Provider: "docker", Driver: "docker", Jobs: []string{"j1"}, Reason: "1 queued job", At: at})
	if _, err := i.Decide(domain.RequestInstance{InstanceID: "docker-0a1b", Provider: "docker", Driver: "docker", Reason: "again", At: at}); !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("second request = %v, want ErrAlreadyExists", err)
	}
	step(domain.MarkInstanceStarted{Handle: "c1", At: at})
	if evs := step(domain.MarkInstanceStarted{Handle: "c1", At: at}); len(evs) != 0 {
		t.Errorf("repeated start with the same handle decided %v", evs)
	}
	step(domain.MarkInstanceConnected{WorkerID: "w-1", At: at})
	if evs := step(domain.MarkInstanceConnected{WorkerID: "w-1", At: at}); len(evs) != 0 {
		t.Errorf("repeated connect decided %v", evs)
	}
	step(domain.TerminateInstance{Reason: "idle for 1m0s", At: at})
	if i.Status != domain.InstanceStatusTerminated || i.Reason != "idle for 1m0s" || i.WorkerID != "w-1" || i.Handle != "c1" {
		t.Errorf("state = %+v", i)
	}
	if evs := step(domain.FailInstance{Reason: "late", At: at}); len(evs) != 0 {
		t.Errorf("ending an ended instance decided %v", evs)
	}
	if _, err := i.Decide(domain.MarkInstanceConnected{WorkerID: "w-2", At: at}); !errors.Is(err, domain.ErrInvalidTransition) {
		t.Errorf("connect after terminate = %v, want ErrInvalidTransition", err)
	}
}

func TestInstanceCommandsNameTheBadField(t *testing.T) {
	at := time.Now()
	for _, tc := range []struct {
		cmd   domain.InstanceCommand
		field string
	}{
		{domain.RequestInstance{InstanceID: "", Provider: "p", Driver: "d", Reason: "r", At: at}, "instance_id"},
		{domain.RequestInstance{InstanceID: "i1", Driver: "d", Reason: "r", At: at}, "provider"},
		{domain.RequestInstance{InstanceID: "i1", Provider: "p", Driver: "d", Reason: "r", Jobs: []string{"bad id"}, At: at}, "jobs[0]"},
		{domain.RequestInstance{InstanceID: "i1", Provider: "p", Driver: "d", Reason: "r"}, "at"},
	} {
		_, err := domain.Instance{}.Decide(tc.cmd)
		var fe *domain.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.cmd.CommandName()+"."+tc.field {
			t.Errorf("%+v: err = %v, want a field error on %s", tc.cmd, err, tc.field)
		}
	}
}
