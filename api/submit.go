package api

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"

	"github.com/hodei-jobs/hodei/api/jobpb"
	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
)

// Limits on submits.
const (
	// MaxSubmitBatch is the most jobs one SubmitJobs call takes.
	MaxSubmitBatch = 1000
	// MaxIdempotencyKeyBytes bounds an idempotency key.
	MaxIdempotencyKeyBytes = 200
)

// keyIDs encodes key hashes in lower-case Crockford base32, like core's ids.
var keyIDs = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// JobIDForKey returns the job id a submit with idempotency key gets from
// caller: "k" followed by 26 base32 digits of SHA-256(caller, key).
func JobIDForKey(caller, key string) string {
	h := sha256.Sum256([]byte("hodei/idempotency-key/v1\x00" + caller + "\x00" + key))
	return "k" + keyIDs.EncodeToString(h[:16])
}

// submitItem is one validated job of a submit.
type submitItem struct {
	key   string
	field string // "jobs[i]"
	spec  domain.JobSpec
}

// parseSubmit validates every job of req before anything is written, so a
// batch with one bad job submits none.
func parseSubmit(req *jobpb.SubmitJobsRequest) ([]submitItem, error) {
	jobs := req.GetJobs()
	switch {
	case len(jobs) == 0:
		return nil, badInput("jobs", "empty: submit at least one job")
	case len(jobs) > MaxSubmitBatch:
		return nil, badInput("jobs", "%d jobs, at most %d per call", len(jobs), MaxSubmitBatch)
	}
	items := make([]submitItem, len(jobs))
	keys := make(map[string]int, len(jobs))
	for i, j := range jobs {
		field := fmt.Sprintf("jobs[%d]", i)
		key := j.GetIdempotencyKey()
		if key != "" {
			if reason := checkKey(key); reason != "" {
				return nil, badInput(field+".idempotency_key", "%s", reason)
			}
			if first, dup := keys[key]; dup {
				return nil, badInput(field+".idempotency_key", "%q is also the key of jobs[%d]", key, first)
			}
			keys[key] = i
		}
		spec, err := specFromPB(j.GetSpec(), field+".spec")
		if err != nil {
			return nil, err
		}
		if err := spec.Validate(); err != nil {
			var fe *domain.FieldError
			if errors.As(err, &fe) {
				return nil, badInput(field+".spec."+fe.Field, "%s", fe.Reason)
			}
			return nil, badInput(field+".spec", "%v", err)
		}
		items[i] = submitItem{key: key, field: field, spec: spec}
	}
	return items, nil
}

func checkKey(k string) string {
	if len(k) > MaxIdempotencyKeyBytes {
		return fmt.Sprintf("%d bytes, at most %d", len(k), MaxIdempotencyKeyBytes)
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x20 || c > 0x7e {
			return fmt.Sprintf("byte %d is not printable ASCII", i)
		}
	}
	return ""
}

// submit submits items for caller. Jobs whose key already names a job with
// the same spec are not submitted again; a key that names a job with another
// spec fails the whole call before anything is written.
func (s *Service) submit(ctx context.Context, caller Caller, items []submitItem) ([]*jobpb.SubmitJobResult, uint64, error) {
	results := make([]*jobpb.SubmitJobResult, len(items))
	var reqs []core.SubmitRequest
	var idx []int // reqs[k] is items[idx[k]]
	for i, it := range items {
		if it.key == "" {
			reqs, idx = append(reqs, core.SubmitRequest{Spec: it.spec}), append(idx, i)
			continue
		}
		id := JobIDForKey(caller.Name, it.key)
		j, err := s.core.Job(ctx, id)
		switch {
		case err == nil:
			if !specEqual(it.spec.WithDefaults(), j.Spec.WithDefaults()) {
				return nil, 0, &conflictError{Field: it.field + ".idempotency_key", Key: it.key, JobID: id}
			}
			results[i] = &jobpb.SubmitJobResult{Job: jobToPB(j)}
		case errors.Is(err, domain.ErrNotFound):
			reqs, idx = append(reqs, core.SubmitRequest{JobID: id, Spec: it.spec}), append(idx, i)
		default:
			return nil, 0, fmt.Errorf("submit: load job %s: %w", id, err)
		}
	}
	var last uint64
	if len(reqs) > 0 {
		for k, r := range s.core.Submit(ctx, caller.Name, reqs) {
			it := items[idx[k]]
			switch {
			case r.Err == nil:
				results[idx[k]] = &jobpb.SubmitJobResult{Job: jobToPB(r.Job), Created: true}
				last = max(last, r.Position)
			case errors.Is(r.Err, domain.ErrAlreadyExists) && it.key != "":
				// A concurrent submit with the same key won the race.
				j, err := s.core.Job(ctx, r.JobID)
				if err != nil {
					return nil, 0, fmt.Errorf("submit: load job %s: %w", r.JobID, err)
				}
				if !specEqual(it.spec.WithDefaults(), j.Spec.WithDefaults()) {
					return nil, 0, &conflictError{Field: it.field + ".idempotency_key", Key: it.key, JobID: r.JobID}
				}
				results[idx[k]] = &jobpb.SubmitJobResult{Job: jobToPB(j)}
			default:
				var fe *domain.FieldError
				if errors.As(r.Err, &fe) && errors.Is(r.Err, domain.ErrInvalidJobSpec) {
					return nil, 0, badInput(it.field+".spec."+fe.Field, "%s", fe.Reason)
				}
				// Other jobs of the batch may be submitted: a retry with the
				// same idempotency keys finds them.
				return nil, 0, fmt.Errorf("submit %s: %w", it.field, r.Err)
			}
		}
	}
	if last == 0 {
		last = s.core.Position()
	} else if err := s.core.WaitFor(ctx, last); err != nil {
		return nil, 0, fmt.Errorf("submit: wait for read models: %w", err)
	}
	return results, last, nil
}
