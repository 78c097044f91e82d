package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/projections"
	"github.com/hodei-jobs/hodei/replay"
)

func init() { register("replay", newReplayStateCmd) }

// replayCacheDir is replay's snapshot cache inside a data dir.
const replayCacheDir = "replay-cache"

func newReplayStateCmd() *cobra.Command {
	var data, dsn, output, at, job, cache string
	var all, noCache bool
	var cacheEvery uint64
	c := &cobra.Command{
		Use:   "state --at POSITION|TIME [--job ID]",
		Short: "Show the cluster and the jobs as they were at a past position or time",
		Long: `Rebuild the read models (workers, jobs) as they were right after a past
position of the event log, or after the last event at or before a time
(RFC 3339, e.g. 2026-01-02T15:04:05Z), and show them: every worker, the job
counts and the jobs that were not finished (--all: every job).

--job ID narrows it to one job: its full state folded from its own stream up to
that point (spec, attempts, cancel request...) and its read-model view.

The replay starts from the nearest snapshot at or before the point that belongs
to this log: the server's (DATA/snapshots) or replay's own cache
(DATA/replay-cache), where it leaves a snapshot every --cache-every events it
passes, so later questions about the same part of the log are fast.

The bbolt file is opened read-only: stop the server first, or use a copy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			if at == "" {
				return usageError("--at is required: a position (e.g. 1500) or an RFC 3339 time")
			}
			batchGC()
			ctx := cmd.Context()
			store, err := openStore(ctx, data, dsn, true)
			if err != nil {
				return err
			}
			defer store.Close()
			pos, err := strconv.ParseUint(at, 10, 64)
			if err != nil {
				t, terr := time.Parse(time.RFC3339Nano, at)
				if terr != nil {
					return usageError("--at %q: want a position (digits) or an RFC 3339 time", at)
				}
				if pos, err = replay.PositionAt(ctx, store, t); err != nil {
					return &exitError{code: exitFailure, err: err}
				}
			}
			opts := replay.StateOptions{CacheEvery: cacheEvery}
			if st, err := os.Stat(data); err == nil && st.IsDir() {
				opts.SnapshotDirs = []string{filepath.Join(data, "snapshots")}
				if cache == "" {
					cache = filepath.Join(data, replayCacheDir)
				}
			}
			if !noCache {
				opts.CacheDir = cache
			}
			head, err := store.Head(ctx)
			if err != nil {
				return err
			}
			if pos == 0 || pos > head.Position {
				return &exitError{code: exitFailure, err: fmt.Errorf("--at %s: the log holds positions 1 to %d", at, head.Position)}
			}
			bar := newProgress(cmd.ErrOrStderr(), "replay", 0)
			opts.Progress = func(done, total uint64) { bar.total = total; bar.update(done) }
			start := time.Now()
			st, err := replay.StateAt(ctx, store, command.NewCodec(), pos, opts)
			bar.finish()
			if err != nil {
				return err
			}
			elapsed := time.Since(start)
			if st.CacheErr != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "hodei: warning: %v (the answer is right; the next one will not be faster)\n", st.CacheErr)
			}
			if len(st.Stale) > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "hodei: warning: replay cache snapshots at positions %v did not match this log "+
					"(it was replaced or rewritten since they were written); they were replaced\n", st.Stale)
			}
			if job != "" {
				return showJobState(cmd, store, st, job, output)
			}
			return showState(cmd.OutOrStdout(), st, all, output, elapsed)
		},
	}
	c.Flags().StringVar(&at, "at", "", "position, or RFC 3339 time (the last event at or before it)")
	c.Flags().StringVar(&job, "job", "", "show only this job: its full state and its view")
	c.Flags().BoolVar(&all, "all", false, "list every job, not only the unfinished ones")
	c.Flags().StringVar(&cache, "cache", "", "replay snapshot cache directory (default DATA/replay-cache)")
	c.Flags().BoolVar(&noCache, "no-cache", false, "neither use nor write the replay cache")
	c.Flags().Uint64Var(&cacheEvery, "cache-every", replay.DefaultCacheEvery, "events between cache snapshots")
	c.Flags().StringVar(&data, "data", "data", "data directory holding events.db")
	c.Flags().StringVar(&dsn, "postgres", "", "read the PostgreSQL event log at this DSN instead")
	addOutputFlag(c, &output)
	return c
}

// stateHeader is what every state output says about the point in the log.
type stateHeader struct {
	Position     uint64 `json:"position"`
	Time         string `json:"time"`
	Hash         string `json:"hash"`
	FromSnapshot uint64 `json:"from_snapshot"`
	Replayed     uint64 `json:"replayed"`
}

func stateHeaderOf(st *replay.State) stateHeader {
	return stateHeader{Position: st.Position, Time: st.Time.UTC().Format(replay.NanoTimeFormat), Hash: st.Hash.String(),
		FromSnapshot: st.From, Replayed: st.Replayed}
}

func showState(w io.Writer, st *replay.State, all bool, output string, elapsed time.Duration) error {
	workers := st.Workers.List()
	var jobs []projections.JobView
	st.Jobs.Each(func(v projections.JobView) bool {
		if all || !v.Status.Terminal() {
			jobs = append(jobs, v)
		}
		return true
	})
	counts := st.Jobs.Counts()
	if output == "json" {
		return writeJSON(w, struct {
			stateHeader
			ElapsedMS float64                  `json:"elapsed_ms"`
			Workers   []projections.WorkerView `json:"workers"`
			JobCounts map[domain.JobStatus]int `json:"job_counts"`
			Jobs      []projections.JobView    `json:"jobs"`
		}{stateHeaderOf(st), float64(elapsed.Microseconds()) / 1000, workers, counts, jobs})
	}
	from := "from position 1"
	if st.From > 0 {
		from = fmt.Sprintf("on top of the snapshot at %d (%s)", st.From, st.FromDir)
	}
	fmt.Fprintf(w, "state at position %d (%s), hash %s\n", st.Position, st.Time.UTC().Format(replay.TimeFormat), st.Hash)
	fmt.Fprintf(w, "%d events replayed %s in %s\n\n", st.Replayed, from, elapsed.Round(time.Millisecond))

	byStatus := map[domain.WorkerStatus]int{}
	draining := 0
	for _, v := range workers {
		byStatus[v.Status]++
		if v.Draining {
			draining++
		}
	}
	fmt.Fprintf(w, "workers: %d (%d online, %d lost, %d deregistered; %d draining)\n", len(workers),
		byStatus[domain.WorkerStatusOnline], byStatus[domain.WorkerStatusLost], byStatus[domain.WorkerStatusDeregistered], draining)
	if len(workers) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tDRAINING\tJOBS\tSLOTS\tCPU\tMEMORY\tLAST CHANGE")
		for _, v := range workers {
			drain := "-"
			if v.Draining {
				drain = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d/%d\t%dm/%dm\t%s/%s\t%s\n", v.ID, v.Name, v.Status, drain, v.ActiveJobs,
				v.Reserved.Slots, v.Capacity.Slots, v.Reserved.CPUMillis, v.Capacity.CPUMillis,
				humanBytes(v.Reserved.MemoryBytes), humanBytes(v.Capacity.MemoryBytes), v.LastChange.UTC().Format(replay.TimeFormat))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	total := 0
	var parts []string
	for _, s := range []domain.JobStatus{domain.JobStatusQueued, domain.JobStatusScheduled, domain.JobStatusAccepted, domain.JobStatusRunning,
		domain.JobStatusSucceeded, domain.JobStatusFailed, domain.JobStatusCancelled, domain.JobStatusTimedOut} {
		total += counts[s]
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, counts[s]))
		}
	}
	fmt.Fprintf(w, "\njobs: %d (%s)\n", total, strings.Join(parts, ", "))
	if len(jobs) == 0 {
		return nil
	}
	if all {
		fmt.Fprintln(w, "every job:")
	} else {
		fmt.Fprintln(w, "unfinished jobs (--all lists every job):")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tQUEUE\tWORKER\tATTEMPT\tSUBMITTED\tLAST POSITION")
	for _, v := range jobs {
		status := string(v.Status)
		if v.Parked != "" {
			status += " (parked)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", v.ID, v.Name, status, v.Queue, dash(v.Worker), v.Attempt,
			v.SubmittedAt.UTC().Format(replay.TimeFormat), v.Position)
	}
	return tw.Flush()
}

func showJobState(cmd *cobra.Command, store replay.StreamReader, st *replay.State, id, output string) error {
	job, ok, err := replay.JobAt(cmd.Context(), store, command.NewCodec(), id, st.Position)
	if err != nil {
		return err
	}
	view, _ := st.Jobs.Get(id)
	if !ok {
		if output == "json" {
			_ = writeJSON(cmd.OutOrStdout(), struct {
				stateHeader
				Exists bool `json:"exists"`
			}{stateHeaderOf(st), false})
		}
		return &exitError{code: exitFailure, err: fmt.Errorf("job %s had not been submitted by position %d", id, st.Position)}
	}
	if output == "json" {
		return writeJSON(cmd.OutOrStdout(), struct {
			stateHeader
			Exists bool                `json:"exists"`
			Job    domain.Job          `json:"job"`
			View   projections.JobView `json:"view"`
		}{stateHeaderOf(st), true, job, view})
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "job %s at position %d (%s)\n", id, st.Position, st.Time.UTC().Format(replay.TimeFormat))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
	s := job.Spec
	row("name", s.Name)
	row("status", string(job.Status)+parkedSuffix(job.Parked))
	row("submitted", job.SubmittedAt.UTC().Format(replay.TimeFormat)+" by "+job.Submitter)
	row("queue", fmt.Sprintf("%s, priority %d (submission #%d)", s.Queue, s.Priority, view.Seq))
	row("resources", fmt.Sprintf("slots %d, CPU %dm, memory %s", s.Resources.Slots, s.Resources.CPUMillis, humanBytes(s.Resources.MemoryBytes)))
	if len(s.Labels) > 0 {
		row("labels", pairs(s.Labels))
	}
	if len(s.Selector) > 0 {
		row("selector", pairs(s.Selector))
	}
	if len(s.Secrets) > 0 {
		row("secrets", pairs(s.Secrets)+" (names only)")
	}
	if s.Timeout > 0 {
		row("timeout", s.Timeout.String())
	}
	row("attempt", fmt.Sprintf("%d of at most %d", job.Attempt, s.MaxAttempts))
	if job.Worker != "" {
		row("worker", job.Worker)
	}
	if job.CancelRequested {
		row("cancel", "requested by "+job.CancelledBy+": "+job.CancelReason)
	}
	if job.Status.Terminal() {
		row("ended", fmt.Sprintf("%s, exit %d %s %s (ran %s)", job.EndedAt.UTC().Format(replay.TimeFormat), job.ExitCode, job.Signal, job.Reason, job.Runtime))
	}
	row("version", fmt.Sprintf("%d events (last at position %d)", job.Version, view.Position))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(job.Attempts) > 0 {
		fmt.Fprintln(w, "attempts:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tWORKER\tSCHEDULED\tACCEPTED\tSTARTED\tENDED\tRESULT")
		for _, a := range job.Attempts {
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Number, a.Worker, whenOrDash(a.ScheduledAt), whenOrDash(a.AcceptedAt),
				whenOrDash(a.StartedAt), whenOrDash(a.EndedAt), dash(strings.TrimSpace(a.Result+" "+a.Reason)))
		}
		return tw.Flush()
	}
	return nil
}

func parkedSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return " (parked: " + reason + ")"
}

func whenOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(replay.TimeFormat)
}
