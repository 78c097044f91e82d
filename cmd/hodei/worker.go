package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/api"
	"github.com/hodei-jobs/hodei/api/jobpb"
	"github.com/hodei-jobs/hodei/auth"
)

func init() {
	register("worker", newWorkerListCmd)
	register("worker", newWorkerDrainCmd)
	register("worker", newWorkerRevokeCmd)
}

func newWorkerRevokeCmd() *cobra.Command {
	var data, by, reason string
	c := &cobra.Command{
		Use:   "revoke WORKER_ID",
		Short: "Revoke a worker's identity: its stream is cut and its certificate refused for good",
		Long: `Revoke a worker's identity (an admin action on the server's data dir, like
hodei token revoke). Within one heartbeat interval the server cuts the
worker's stream, records worker.identity_revoked, and from then on refuses
the worker's client certificate and identity tokens; its agent needs a new
join token to come back, as a new worker.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := auth.Open(data, nil)
			if err != nil {
				return err
			}
			if err := store.RevokeWorker(args[0], by, reason); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "revoked worker %s\n", args[0])
			return err
		},
	}
	addDataFlag(c, &data)
	c.Flags().StringVar(&by, "by", "admin", "who revokes (recorded in the worker's events)")
	c.Flags().StringVar(&reason, "reason", "", "why (recorded in the worker's events)")
	return c
}

func newWorkerListCmd() *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List workers with their live CPU and memory",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := dial(cmd, &f)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := cl.call(cmd.Context())
			defer cancel()
			resp, err := cl.ListWorkers(ctx, &jobpb.ListWorkersRequest{})
			if err != nil {
				return cl.callError("list workers", err)
			}
			if f.output == "json" {
				out := struct {
					Workers []api.Worker `json:"workers"`
				}{Workers: []api.Worker{}}
				for _, w := range resp.GetWorkers() {
					out.Workers = append(out.Workers, api.WorkerFromPB(w))
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tJOBS\tSLOTS\tCPU\tMEMORY\tLABELS\tSEEN")
			now := time.Now()
			for _, w := range resp.GetWorkers() {
				st := api.WorkerStatusName(w.GetStatus())
				if w.GetDraining() {
					st += ",draining"
				}
				if w.GetStatus() == jobpb.WorkerStatus_WORKER_STATUS_ONLINE && !w.GetConnected() {
					st += ",disconnected"
				}
				cpu, mem, seen := "-", "-", "-"
				if t := w.GetTelemetry(); t != nil {
					cpu = fmt.Sprintf("%.0f%%", t.GetCpuPercent())
					mem = humanBytes(t.GetMemoryUsedBytes()) + "/" + humanBytes(t.GetMemoryTotalBytes())
					if t.GetAt() != nil {
						seen = age(now, t.GetAt().AsTime()) + " ago"
					}
				}
				cp := w.GetCapacity()
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d/%d\t%s\t%s\t%s\t%s\n", w.GetId(), trunc(w.GetName(), 24), st, w.GetActiveJobs(),
					w.GetReserved().GetSlots(), cp.GetSlots(), cpu, mem, dash(strings.ReplaceAll(pairs(w.GetLabels()), " ", "")), seen)
			}
			return tw.Flush()
		},
	}
	addClientFlags(c, &f)
	return c
}

func newWorkerDrainCmd() *cobra.Command {
	var (
		f      clientFlags
		reason string
	)
	c := &cobra.Command{
		Use:               "drain WORKER_ID",
		Short:             "Stop new jobs going to a worker; its agent finishes the running ones and exits",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeWorkers(&f),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := dial(cmd, &f)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := cl.call(cmd.Context())
			defer cancel()
			w, err := cl.DrainWorker(ctx, &jobpb.DrainWorkerRequest{WorkerId: args[0], Reason: reason})
			if err != nil {
				return cl.callError("drain worker", err)
			}
			if f.output == "json" {
				return writeJSON(cmd.OutOrStdout(), api.WorkerFromPB(w))
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "worker %s draining: %d job(s) still running there\n", w.GetId(), w.GetActiveJobs())
			return err
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why (recorded in the worker's events)")
	addClientFlags(c, &f)
	return c
}
