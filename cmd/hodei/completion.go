package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/api"
	"github.com/hodei-jobs/hodei/api/jobpb"
)

// Dynamic shell completion: job, worker and secret names from the server.
// `hodei completion bash|zsh|fish|powershell` (cobra's) prints the scripts.
// Completion asks the server with a short deadline and offers nothing when
// it cannot answer.

const completionTimeout = 2 * time.Second

type completer func(ctx context.Context, cl *client, toComplete string) []string

func complete(f *clientFlags, fn completer) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		cl, err := dial(cmd, f)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		return fn(ctx, cl, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeJobs offers the ids of recent jobs, newest first, with their
// names and statuses as descriptions.
func completeJobs(f *clientFlags) cobra.CompletionFunc {
	return complete(f, func(ctx context.Context, cl *client, prefix string) []string {
		resp, err := cl.ListJobs(ctx, &jobpb.ListJobsRequest{PageSize: 200})
		if err != nil {
			return nil
		}
		var out []string
		for _, j := range resp.GetJobs() {
			if strings.HasPrefix(j.GetId(), prefix) {
				out = append(out, j.GetId()+"\t"+j.GetName()+" ("+api.StatusName(j.GetStatus())+")")
			}
		}
		return out
	})
}

func completeWorkers(f *clientFlags) cobra.CompletionFunc {
	return complete(f, func(ctx context.Context, cl *client, prefix string) []string {
		resp, err := cl.ListWorkers(ctx, &jobpb.ListWorkersRequest{})
		if err != nil {
			return nil
		}
		var out []string
		for _, w := range resp.GetWorkers() {
			if strings.HasPrefix(w.GetId(), prefix) {
				out = append(out, w.GetId()+"\t"+w.GetName()+" ("+api.WorkerStatusName(w.GetStatus())+")")
			}
		}
		return out
	})
}

func secretNames(ctx context.Context, cl *client) []string {
	resp, err := cl.ListSecrets(ctx, &jobpb.ListSecretsRequest{})
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range resp.GetSecrets() {
		out = append(out, s.GetName())
	}
	return out
}

func completeSecrets(f *clientFlags) cobra.CompletionFunc {
	return complete(f, func(ctx context.Context, cl *client, prefix string) []string {
		var out []string
		for _, n := range secretNames(ctx, cl) {
			if strings.HasPrefix(n, prefix) {
				out = append(out, n)
			}
		}
		return out
	})
}

// completeSecretEnv completes --secret ENV=NAME after the '='.
func completeSecretEnv(f *clientFlags) cobra.CompletionFunc {
	return complete(f, func(ctx context.Context, cl *client, toComplete string) []string {
		env, prefix, ok := strings.Cut(toComplete, "=")
		if !ok {
			return nil
		}
		var out []string
		for _, n := range secretNames(ctx, cl) {
			if strings.HasPrefix(n, prefix) {
				out = append(out, env+"="+n)
			}
		}
		return out
	})
}
