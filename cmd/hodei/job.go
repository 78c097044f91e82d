package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/hodei-jobs/hodei/api"
	"github.com/hodei-jobs/hodei/api/jobpb"
	"github.com/hodei-jobs/hodei/domain"
)

func init() {
	register("job", newJobSubmitCmd)
	register("job", newJobListCmd)
	register("job", newJobGetCmd)
	register("job", newJobLogsCmd)
	register("job", newJobCancelCmd)
	register("job", newJobEventsCmd)
}

type submitFlags struct {
	client                        clientFlags
	command, name, queue, key     string
	env, secrets, labels, selects []string
	cpu, memory                   string
	slots                         int64
	priority, attempts            int32
	timeout                       time.Duration
	wait                          bool
}

func newJobSubmitCmd() *cobra.Command {
	var f submitFlags
	c := &cobra.Command{
		Use:   "submit [SCRIPT_FILE | -]",
		Short: "Submit a job: a shell script from a file, stdin or -c",
		Long: `Submit a job: a shell script run by /bin/sh in a PTY on a worker.

The script comes from SCRIPT_FILE, from stdin ("-", or when stdin is not a
terminal), or from -c 'command'. Without --wait it prints the job's id (or,
with -o json, the job). With --wait it follows the job's log to stdout and
exits with the job's exit code: the script's own code when it failed, 128+N
when a signal N killed it, 124 when it timed out, 1 when it was cancelled or
never ran; 0 when it succeeded. Ctrl-C stops following (exit 130); the job
keeps running.

An --idempotency-key makes the submit safe to retry: submitting the same key
and script again returns the existing job instead of starting another.`,
		Example: `  hodei job submit -c 'echo hello' --wait
  hodei job submit build.sh --cpu 2 --memory 4Gi --label team=infra --selector os=linux
  echo 'make test' | hodei job submit --secret GITHUB_TOKEN=ci/github --timeout 30m`,
		Args: cobra.MaximumNArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveDefault // script files
		},
		RunE: func(cmd *cobra.Command, args []string) error { return runSubmit(cmd, args, &f) },
	}
	fl := c.Flags()
	fl.StringVarP(&f.command, "command", "c", "", "the script as a string instead of a file")
	fl.StringVar(&f.name, "name", "", "job name (default: the script file's name or the command)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	fl.StringArrayVar(&f.secrets, "secret", nil, "secret as an environment variable: ENV=SECRET_NAME (repeatable)")
	fl.StringArrayVarP(&f.labels, "label", "l", nil, "job label key=value (repeatable)")
	fl.StringArrayVar(&f.selects, "selector", nil, "required worker label key=value (repeatable)")
	fl.StringVar(&f.cpu, "cpu", "", `CPU to reserve: cores ("2", "0.5") or millicores ("500m")`)
	fl.StringVar(&f.memory, "memory", "", `memory to reserve: bytes or with a unit ("512Mi", "4Gi", "1G")`)
	fl.Int64Var(&f.slots, "slots", 0, "job slots to reserve (default 1)")
	fl.Int32Var(&f.priority, "priority", 0, "priority 1..100, higher runs first (default 50)")
	fl.DurationVar(&f.timeout, "timeout", 0, `time limit of one attempt, e.g. "30m" (default none)`)
	fl.Int32Var(&f.attempts, "attempts", 0, "attempts when workers are lost, 1..20 (default 3)")
	fl.StringVar(&f.queue, "queue", "", `queue (tenant) the job is accounted to (default "default")`)
	fl.StringVar(&f.key, "idempotency-key", "", "makes the submit safe to retry: the same key returns the same job")
	fl.BoolVarP(&f.wait, "wait", "w", false, "follow the job's log and exit with its exit code")
	addClientFlags(c, &f.client)
	for _, name := range []string{"command", "name", "env", "secret", "label", "selector", "cpu", "memory", "queue", "idempotency-key"} {
		_ = c.RegisterFlagCompletionFunc(name, cobra.NoFileCompletions)
	}
	_ = c.RegisterFlagCompletionFunc("secret", completeSecretEnv(&f.client))
	return c
}

func runSubmit(cmd *cobra.Command, args []string, f *submitFlags) error {
	script, name, err := readScript(cmd, args, f)
	if err != nil {
		return err
	}
	spec := &jobpb.JobSpec{Name: name, Script: script, Priority: f.priority, MaxAttempts: f.attempts, Queue: f.queue,
		Resources: &jobpb.Resources{Slots: f.slots}}
	if f.name != "" {
		spec.Name = f.name
	}
	for _, kv := range []struct {
		flag string
		in   []string
		out  *map[string]string
	}{{"--env", f.env, &spec.Env}, {"--secret", f.secrets, &spec.Secrets}, {"--label", f.labels, &spec.Labels}, {"--selector", f.selects, &spec.Selector}} {
		if *kv.out, err = parsePairs(kv.flag, kv.in); err != nil {
			return err
		}
	}
	if f.cpu != "" {
		if spec.Resources.CpuMillis, err = parseCPU(f.cpu); err != nil {
			return usageError("--cpu %q: %v", f.cpu, err)
		}
	}
	if f.memory != "" {
		if spec.Resources.MemoryBytes, err = parseBytes(f.memory); err != nil {
			return usageError("--memory %q: %v", f.memory, err)
		}
	}
	if f.timeout < 0 {
		return usageError("--timeout %s: want a positive duration", f.timeout)
	}
	if f.timeout > 0 {
		spec.Timeout = durationpb.New(f.timeout)
	}
	cl, err := dial(cmd, &f.client)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := cmd.Context()
	cctx, cancel := cl.call(ctx)
	resp, err := cl.SubmitJobs(cctx, &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{{IdempotencyKey: f.key, Spec: spec}}})
	cancel()
	if err != nil {
		return cl.callError("submit job", err)
	}
	res := resp.GetResults()[0]
	job := res.GetJob()
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if !f.wait {
		if f.client.output == "json" {
			return writeJSON(out, api.SubmitJobResult{Job: api.JobFromPB(job), Created: res.GetCreated()})
		}
		if !res.GetCreated() {
			fmt.Fprintf(errOut, "hodei: idempotency key %q already names job %s (%s); not submitted again\n", f.key, job.GetId(), api.StatusName(job.GetStatus()))
		}
		_, err := fmt.Fprintln(out, job.GetId())
		return err
	}
	if res.GetCreated() {
		fmt.Fprintf(errOut, "hodei: job %s submitted; following its log (Ctrl-C stops following, the job goes on)\n", job.GetId())
	} else {
		fmt.Fprintf(errOut, "hodei: idempotency key %q already names job %s; following its log\n", f.key, job.GetId())
	}
	logOut := out
	if f.client.output == "json" {
		logOut = io.Discard // only the job, as JSON, at the end
	}
	return waitJob(ctx, cmd, cl, job.GetId(), logOut, f.client.output)
}

// waitJob follows job id's log to w until the job ends, then reports its
// outcome and returns its exit code as the command's.
func waitJob(ctx context.Context, cmd *cobra.Command, cl *client, id string, w io.Writer, output string) error {
	if err := streamLog(ctx, cl, &jobpb.WatchLogRequest{JobId: id, Follow: true}, w, "text"); err != nil {
		if interrupted(ctx, err) {
			return &exitError{code: 130, err: fmt.Errorf("stopped following job %s; it goes on (cancel it with `hodei job cancel %s`)", id, id)}
		}
		return err
	}
	cctx, cancel := cl.call(context.WithoutCancel(ctx))
	defer cancel()
	job, err := cl.GetJob(cctx, &jobpb.GetJobRequest{JobId: id})
	if err != nil {
		return cl.callError("get job", err)
	}
	if output == "json" {
		if err := writeJSON(cmd.OutOrStdout(), api.JobFromPB(job)); err != nil {
			return err
		}
	}
	code := jobExitCode(job)
	if code == 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "hodei: job %s succeeded%s\n", id, inRuntime(job))
		return nil
	}
	return &exitError{code: code, err: fmt.Errorf("job %s %s", id, outcome(job))}
}

// jobExitCode is the exit code `hodei job submit --wait` passes on.
func jobExitCode(j *jobpb.Job) int {
	switch j.GetStatus() {
	case jobpb.JobStatus_JOB_STATUS_SUCCEEDED:
		return 0
	case jobpb.JobStatus_JOB_STATUS_TIMED_OUT:
		return 124
	case jobpb.JobStatus_JOB_STATUS_FAILED:
		if c := j.GetExitCode(); c > 0 {
			if c&0xff == 0 {
				return 1
			}
			return int(c & 0xff)
		}
		if n, ok := signals[j.GetSignal()]; ok {
			return 128 + n
		}
	}
	return exitFailure
}

// signals numbers the signals a job is usually killed by (Linux numbering).
var signals = map[string]int{"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6, "SIGBUS": 7,
	"SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12, "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15}

// outcome describes how a job ended: "failed: exit code 3".
func outcome(j *jobpb.Job) string {
	s := api.StatusName(j.GetStatus())
	var detail []string
	if c := j.GetExitCode(); c >= 0 && j.GetStatus() != jobpb.JobStatus_JOB_STATUS_SUCCEEDED {
		detail = append(detail, fmt.Sprintf("exit code %d", c))
	}
	if sig := j.GetSignal(); sig != "" {
		detail = append(detail, "signal "+sig)
	}
	if r := j.GetReason(); r != "" && r != fmt.Sprintf("exit status %d", j.GetExitCode()) {
		detail = append(detail, r)
	}
	if len(detail) > 0 {
		s += ": " + strings.Join(detail, ", ")
	}
	return s + inRuntime(j)
}

func inRuntime(j *jobpb.Job) string {
	if rt := j.GetRuntime(); rt != nil {
		return " in " + rt.AsDuration().Round(time.Millisecond).String()
	}
	return ""
}

// readScript returns the script and a default name for it.
func readScript(cmd *cobra.Command, args []string, f *submitFlags) (string, string, error) {
	limit := int64(domain.MaxScriptBytes)
	read := func(r io.Reader, what string) (string, error) {
		b, err := io.ReadAll(io.LimitReader(r, limit+1))
		if err != nil {
			return "", fmt.Errorf("read %s: %w", what, err)
		}
		if int64(len(b)) > limit {
			return "", usageError("%s: larger than %d KiB, the most a job's script may be", what, limit>>10)
		}
		return string(b), nil
	}
	switch {
	case f.command != "" && len(args) > 0:
		return "", "", usageError("give either a script file or -c, not both")
	case f.command != "":
		name, _, _ := strings.Cut(strings.TrimSpace(f.command), "\n")
		if len(name) > 60 {
			name = name[:60]
		}
		return f.command, strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return ' '
			}
			return r
		}, name), nil
	case len(args) == 1 && args[0] != "-":
		fh, err := os.Open(args[0])
		if err != nil {
			return "", "", usageError("script file: %v", err)
		}
		defer fh.Close()
		s, err := read(fh, "script file "+args[0])
		return s, filepath.Base(args[0]), err
	case len(args) == 1 || !isTerminal(cmd.InOrStdin()):
		s, err := read(cmd.InOrStdin(), "script on stdin")
		if err == nil && strings.TrimSpace(s) == "" {
			err = usageError("the script on stdin is empty: give a script file, -c 'command', or pipe a script in")
		}
		return s, "stdin", err
	}
	return "", "", usageError("no script: give a script file, -c 'command', or pipe a script on stdin")
}

// parsePairs parses repeated KEY=VALUE flags.
func parsePairs(flag string, in []string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(in))
	for _, kv := range in {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError("%s %q: want KEY=VALUE", flag, kv)
		}
		if _, dup := out[k]; dup {
			return nil, usageError("%s: %s is given twice", flag, k)
		}
		out[k] = v
	}
	return out, nil
}

// parseCPU parses cores ("2", "0.5") or millicores ("500m").
func parseCPU(s string) (int64, error) {
	if m, ok := strings.CutSuffix(s, "m"); ok {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil || n < 0 {
			return 0, errors.New(`want millicores like "500m"`)
		}
		return n, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) || v*1000 > math.MaxInt64/2 {
		return 0, errors.New(`want cores like "2" or "0.5", or millicores like "500m"`)
	}
	return int64(math.Round(v * 1000)), nil
}

// byteUnits are the suffixes parseBytes knows.
var byteUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
	"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20, "gi": 1 << 30, "gib": 1 << 30, "ti": 1 << 40, "tib": 1 << 40,
}

// parseBytes parses a size: bytes, or a number with a decimal (K, M, G, T)
// or binary (Ki, Mi, Gi, Ti) unit, case-insensitive, "B" optional.
func parseBytes(s string) (int64, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	}
	mul, ok := byteUnits[unit]
	v, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || v < 0 {
		return 0, errors.New(`want bytes or a size like "512Mi", "4Gi" or "1G"`)
	}
	b := v * mul
	if b >= math.MaxInt64/2 {
		return 0, errors.New("too large")
	}
	return int64(math.Round(b)), nil
}

func newJobListCmd() *cobra.Command {
	var (
		f                clientFlags
		statuses, labels []string
		queue, worker    string
		limit            int32
		all, oldest      bool
	)
	c := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List jobs, newest first",
		Example: `  hodei job ls --status running,queued
  hodei job ls --label team=infra --all -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &jobpb.ListJobsRequest{Queue: queue, Worker: worker, PageSize: limit, OldestFirst: oldest}
			for _, s := range statuses {
				for name := range strings.SplitSeq(s, ",") {
					st, ok := api.ParseStatus(strings.TrimSpace(name))
					if !ok {
						return usageError("--status %q: want one of queued, scheduled, accepted, running, succeeded, failed, cancelled, timed_out", name)
					}
					req.Statuses = append(req.Statuses, st)
				}
			}
			var err error
			if req.Labels, err = parsePairs("--label", labels); err != nil {
				return err
			}
			if limit < 0 {
				return usageError("--limit %d: want a positive number", limit)
			}
			cl, err := dial(cmd, &f)
			if err != nil {
				return err
			}
			defer cl.Close()
			var jobs []*jobpb.JobSummary
			var last *jobpb.ListJobsResponse
			for {
				ctx, cancel := cl.call(cmd.Context())
				resp, err := cl.ListJobs(ctx, req)
				cancel()
				if err != nil {
					return cl.callError("list jobs", err)
				}
				jobs, last = append(jobs, resp.GetJobs()...), resp
				if !all || resp.GetNextPageToken() == "" {
					break
				}
				req.PageToken = resp.GetNextPageToken()
			}
			out := cmd.OutOrStdout()
			if f.output == "json" {
				res := api.ListJobsFromPB(&jobpb.ListJobsResponse{Jobs: jobs, NextPageToken: last.GetNextPageToken(), Position: last.GetPosition()})
				return writeJSON(out, res)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tQUEUE\tWORKER\tATTEMPT\tEXIT\tAGE")
			now := time.Now()
			for _, j := range jobs {
				exit := "-"
				if j.GetStatus() >= jobpb.JobStatus_JOB_STATUS_SUCCEEDED && j.GetExitCode() >= 0 {
					exit = strconv.Itoa(int(j.GetExitCode()))
				}
				st := api.StatusName(j.GetStatus())
				if j.GetParked() != "" {
					st += " (parked)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", j.GetId(), trunc(j.GetName(), 30), st, j.GetQueue(),
					dash(j.GetWorker()), j.GetAttempt(), exit, age(now, j.GetSubmittedAt().AsTime()))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if last.GetNextPageToken() != "" && !all {
				fmt.Fprintf(cmd.ErrOrStderr(), "hodei: more jobs than --limit %d: use --all, or a filter\n", len(jobs))
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.StringSliceVar(&statuses, "status", nil, "only jobs in these statuses (comma-separated)")
	fl.StringVar(&queue, "queue", "", "only jobs of this queue")
	fl.StringVar(&worker, "worker", "", "only jobs running on this worker")
	fl.StringArrayVarP(&labels, "label", "l", nil, "only jobs with label key=value (repeatable)")
	fl.Int32Var(&limit, "limit", api.DefaultPageSize, fmt.Sprintf("jobs per page (at most %d)", api.MaxPageSize))
	fl.BoolVar(&all, "all", false, "list every page")
	fl.BoolVar(&oldest, "oldest-first", false, "oldest jobs first")
	addClientFlags(c, &f)
	_ = c.RegisterFlagCompletionFunc("status", cobra.FixedCompletions([]string{"queued", "scheduled", "accepted", "running",
		"succeeded", "failed", "cancelled", "timed_out"}, cobra.ShellCompDirectiveNoFileComp))
	_ = c.RegisterFlagCompletionFunc("worker", completeWorkers(&f))
	return c
}

func newJobGetCmd() *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:               "get JOB_ID",
		Short:             "Show a job: its spec, status and attempts",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeJobs(&f),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := dial(cmd, &f)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := cl.call(cmd.Context())
			defer cancel()
			j, err := cl.GetJob(ctx, &jobpb.GetJobRequest{JobId: args[0]})
			if err != nil {
				return cl.callError("get job", err)
			}
			if f.output == "json" {
				return writeJSON(cmd.OutOrStdout(), api.JobFromPB(j))
			}
			return printJob(cmd.OutOrStdout(), j)
		},
	}
	addClientFlags(c, &f)
	return c
}

func printJob(w io.Writer, j *jobpb.Job) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	s := j.GetSpec()
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	now := time.Now()
	when := func(t interface{ AsTime() time.Time }, ok bool) string {
		if !ok {
			return ""
		}
		at := t.AsTime()
		return at.Local().Format(time.DateTime) + " (" + age(now, at) + " ago)"
	}
	st := api.StatusName(j.GetStatus())
	if j.GetStatus() >= jobpb.JobStatus_JOB_STATUS_SUCCEEDED {
		st = outcome(j)
	}
	if j.GetCancelRequested() && j.GetStatus() < jobpb.JobStatus_JOB_STATUS_SUCCEEDED {
		st += " (cancel requested)"
	}
	row("id", j.GetId())
	row("name", s.GetName())
	row("status", st)
	row("parked", j.GetParked())
	row("submitter", j.GetSubmitter())
	row("queue", fmt.Sprintf("%s (priority %d)", s.GetQueue(), s.GetPriority()))
	row("submitted", when(j.GetSubmittedAt(), j.GetSubmittedAt() != nil))
	row("started", when(j.GetStartedAt(), j.GetStartedAt() != nil))
	row("ended", when(j.GetEndedAt(), j.GetEndedAt() != nil))
	row("worker", j.GetWorker())
	row("attempt", fmt.Sprintf("%d of at most %d", j.GetAttempt(), s.GetMaxAttempts()))
	r := s.GetResources()
	res := fmt.Sprintf("%d slot(s)", r.GetSlots())
	if r.GetCpuMillis() > 0 {
		res += fmt.Sprintf(", %dm CPU", r.GetCpuMillis())
	}
	if r.GetMemoryBytes() > 0 {
		res += ", " + humanBytes(r.GetMemoryBytes()) + " memory"
	}
	row("resources", res)
	if t := s.GetTimeout(); t != nil {
		row("timeout", t.AsDuration().String())
	}
	row("labels", pairs(s.GetLabels()))
	row("selector", pairs(s.GetSelector()))
	row("env", pairs(s.GetEnv()))
	row("secrets", pairs(s.GetSecrets()))
	row("cancelled by", j.GetCancelledBy())
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "script:")
	for line := range strings.SplitSeq(strings.TrimRight(s.GetScript(), "\n"), "\n") {
		fmt.Fprintln(w, "  "+line)
	}
	if len(j.GetAttempts()) > 0 {
		fmt.Fprintln(w, "attempts:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tWORKER\tSTARTED\tENDED\tRESULT\tREASON")
		for _, a := range j.GetAttempts() {
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\n", a.GetNumber(), dash(a.GetWorker()), stamp(a.GetStartedAt().AsTime(), a.GetStartedAt() != nil),
				stamp(a.GetEndedAt().AsTime(), a.GetEndedAt() != nil), dash(a.GetResult()), dash(a.GetReason()))
		}
		return tw.Flush()
	}
	return nil
}

func newJobLogsCmd() *cobra.Command {
	var (
		f       clientFlags
		follow  bool
		attempt uint32
		offset  uint64
	)
	c := &cobra.Command{
		Use:   "logs JOB_ID",
		Short: "Print a job's log (with -f, follow it until the job ends)",
		Long: `Print a job's log: the output of its latest attempt (or --attempt N), colours
included. With -f it follows the live output until the log ends; for the
latest attempt it goes on to the next attempt when the job is re-queued.
With -o json it prints one JSON object per chunk: {"attempt", "offset", "text"}.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeJobs(&f),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := dial(cmd, &f)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx := cmd.Context()
			err = streamLog(ctx, cl, &jobpb.WatchLogRequest{JobId: args[0], Attempt: attempt, Offset: offset, Follow: follow},
				cmd.OutOrStdout(), f.output)
			if interrupted(ctx, err) {
				return nil
			}
			return err
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "follow the live output until the log ends")
	c.Flags().Uint32Var(&attempt, "attempt", 0, "the attempt (default: the latest)")
	c.Flags().Uint64Var(&offset, "offset", 0, "start at this byte offset")
	addClientFlags(c, &f)
	return c
}

// streamLog copies a WatchLog stream to w: raw bytes, or (output "json")
// one api.LogChunk per line.
func streamLog(ctx context.Context, cl *client, req *jobpb.WatchLogRequest, w io.Writer, output string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stream jobpb.JobService_WatchLogClient
	var err error
	if req.GetFollow() {
		stream, err = cl.WatchLog(ctx, req)
	} else {
		cctx, ccancel := cl.call(ctx)
		defer ccancel()
		stream, err = cl.WatchLog(cctx, req)
	}
	if err != nil {
		return cl.callError("watch log", err)
	}
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if interrupted(ctx, err) {
				return context.Canceled
			}
			return cl.callError("watch log", err)
		}
		if output == "json" {
			err = writeJSON(w, api.LogChunk{Attempt: c.GetAttempt(), Offset: c.GetOffset(), Text: string(c.GetData())})
		} else {
			_, err = w.Write(c.GetData())
		}
		if err != nil {
			return fmt.Errorf("write log: %w", err)
		}
	}
}

func newJobCancelCmd() *cobra.Command {
	var (
		f      clientFlags
		reason string
	)
	c := &cobra.Command{
		Use:               "cancel JOB_ID...",
		Short:             "Cancel jobs: queued ones at once, running ones are stopped by their agent",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeJobs(&f),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := dial(cmd, &f)
			if err != nil {
				return err
			}
			defer cl.Close()
			var failed error
			nfail := 0
			for _, id := range args {
				ctx, cancel := cl.call(cmd.Context())
				j, err := cl.CancelJob(ctx, &jobpb.CancelJobRequest{JobId: id, Reason: reason})
				cancel()
				if err != nil {
					err = cl.callError("cancel job "+id, err)
					if len(args) == 1 {
						return err
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "hodei: %v\n", err)
					nfail++
					failed = fmt.Errorf("%d of %d jobs not cancelled", nfail, len(args))
					continue
				}
				if f.output == "json" {
					if err := writeJSON(cmd.OutOrStdout(), api.JobFromPB(j)); err != nil {
						return err
					}
					continue
				}
				if j.GetStatus() == jobpb.JobStatus_JOB_STATUS_CANCELLED {
					fmt.Fprintf(cmd.OutOrStdout(), "job %s cancelled\n", id)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "job %s: cancel requested; its agent is stopping it\n", id)
				}
			}
			return failed
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why (recorded in the job's events)")
	addClientFlags(c, &f)
	return c
}

func newJobEventsCmd() *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:               "events JOB_ID",
		Short:             "Show a job's timeline: every event of its stream",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeJobs(&f),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := dial(cmd, &f)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := cl.call(cmd.Context())
			defer cancel()
			resp, err := cl.ListJobEvents(ctx, &jobpb.ListJobEventsRequest{JobId: args[0]})
			if err != nil {
				return cl.callError("job events", err)
			}
			if f.output == "json" {
				out := struct {
					Events []api.Event `json:"events"`
				}{}
				for _, e := range resp.GetEvents() {
					out.Events = append(out.Events, api.EventFromPB(e))
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "POSITION\tTIME\tTYPE\tACTOR")
			for _, e := range resp.GetEvents() {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.GetPosition(), e.GetTime().AsTime().Local().Format("2006-01-02 15:04:05.000"), e.GetType(), e.GetActor())
			}
			return tw.Flush()
		},
	}
	addClientFlags(c, &f)
	return c
}

// Small formatting helpers for tables.

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func pairs(m map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return strings.Join(out, ", ")
}

func stamp(t time.Time, ok bool) string {
	if !ok {
		return "-"
	}
	return t.Local().Format(time.TimeOnly)
}

// age is a short duration since t: "12s", "5m", "3h", "2d".
func age(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(int(d.Seconds()), 0))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + []string{"Ki", "Mi", "Gi", "Ti", "Pi"}[exp]
}
