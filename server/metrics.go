package server

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
)

// metrics is the server's Prometheus registry and the instruments the core,
// the store wrapper and the gRPC interceptors feed.
type metrics struct {
	reg        *prometheus.Registry
	queueWait  prometheus.Histogram
	round      prometheus.Histogram
	placed     prometheus.Counter
	parked     prometheus.Counter
	appendSecs *prometheus.HistogramVec
	appendReqs prometheus.Histogram
	streams    *prometheus.GaugeVec
}

var _ core.Metrics = (*metrics)(nil)

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.queueWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "hodei_job_queue_wait_seconds", Help: "Time from a job's submit to its first scheduling.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)})
	m.round = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "hodei_scheduling_round_seconds", Help: "Time to decide and commit one scheduling round.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10)})
	m.placed = prometheus.NewCounter(prometheus.CounterOpts{Name: "hodei_scheduler_placements_total", Help: "Job attempts placed on workers."})
	m.parked = prometheus.NewCounter(prometheus.CounterOpts{Name: "hodei_scheduler_parked_total", Help: "Jobs reported unschedulable (parked) with a reason."})
	m.appendSecs = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "hodei_store_append_seconds", Help: "Latency of durable appends to the event log, by call.",
		Buckets: prometheus.ExponentialBuckets(0.0002, 3, 10)}, []string{"call"})
	m.appendReqs = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "hodei_store_append_requests", Help: "Stream appends carried by one store call (AppendMany batches).",
		Buckets: prometheus.ExponentialBuckets(1, 4, 7)})
	m.streams = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hodei_grpc_streams", Help: "Open gRPC streams, by method."}, []string{"method"})
	m.reg.MustRegister(m.queueWait, m.round, m.placed, m.parked, m.appendSecs, m.appendReqs, m.streams,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// QueueWait implements core.Metrics.
func (m *metrics) QueueWait(d time.Duration) { m.queueWait.Observe(d.Seconds()) }

// Round implements core.Metrics.
func (m *metrics) Round(d time.Duration, placed, parked int) {
	m.round.Observe(d.Seconds())
	m.placed.Add(float64(placed))
	m.parked.Add(float64(parked))
}

// streamInterceptor counts open streams by method.
func (m *metrics) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	g := m.streams.WithLabelValues(info.FullMethod)
	g.Inc()
	defer g.Dec()
	return h(srv, ss)
}

// stateCollector reports gauges read from the read models at scrape time.
type stateCollector struct {
	c          *core.Core
	storeStats func() (commits, events uint64)
	jobs       *prometheus.Desc
	queued     *prometheus.Desc
	workers    *prometheus.Desc
	agents     *prometheus.Desc
	position   *prometheus.Desc
	commits    *prometheus.Desc
	events     *prometheus.Desc
	instances  *prometheus.Desc
	ended      *prometheus.Desc
}

func newStateCollector(c *core.Core, storeStats func() (uint64, uint64)) *stateCollector {
	return &stateCollector{c: c, storeStats: storeStats,
		jobs:     prometheus.NewDesc("hodei_jobs", "Jobs by status.", []string{"status"}, nil),
		queued:   prometheus.NewDesc("hodei_queue_depth", "Pending jobs in the scheduler's queues, by state.", []string{"state"}, nil),
		workers:  prometheus.NewDesc("hodei_workers", "Workers by status.", []string{"status"}, nil),
		agents:   prometheus.NewDesc("hodei_agent_streams", "Connected agent streams.", nil, nil),
		position: prometheus.NewDesc("hodei_log_position", "Log position the read models reflect.", nil, nil),
		commits:  prometheus.NewDesc("hodei_store_commits_total", "Commits of appended events (group commits).", nil, nil),
		events:   prometheus.NewDesc("hodei_store_events_total", "Events committed; divided by commits it is the batch size.", nil, nil),
		instances: prometheus.NewDesc("hodei_provider_instances", "Live agent instances started by providers, by provider and status.",
			[]string{"provider", "status"}, nil),
		ended: prometheus.NewDesc("hodei_provider_instances_ended_total", "Provider instances that failed or were terminated.", nil, nil),
	}
}

func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.jobs, s.queued, s.workers, s.agents, s.position, s.commits, s.events, s.instances, s.ended} {
		ch <- d
	}
}

func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	counts := s.c.Jobs().Counts()
	for _, st := range []domain.JobStatus{domain.JobStatusQueued, domain.JobStatusScheduled, domain.JobStatusAccepted,
		domain.JobStatusRunning, domain.JobStatusSucceeded, domain.JobStatusFailed, domain.JobStatusCancelled, domain.JobStatusTimedOut} {
		ch <- prometheus.MustNewConstMetric(s.jobs, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
	q := s.c.SchedulerStats()
	ch <- prometheus.MustNewConstMetric(s.queued, prometheus.GaugeValue, float64(q.Active), "ready")
	ch <- prometheus.MustNewConstMetric(s.queued, prometheus.GaugeValue, float64(q.Blocked), "blocked")
	ch <- prometheus.MustNewConstMetric(s.queued, prometheus.GaugeValue, float64(q.Parked), "parked")
	byStatus := map[string]int{"online": 0, "draining": 0, "lost": 0, "deregistered": 0}
	for _, w := range s.c.Workers().List() {
		st := string(w.Status)
		if w.Draining && w.Status == domain.WorkerStatusOnline {
			st = "draining"
		}
		byStatus[st]++
	}
	for st, n := range byStatus {
		ch <- prometheus.MustNewConstMetric(s.workers, prometheus.GaugeValue, float64(n), st)
	}
	type provStatus struct{ provider, status string }
	insts := map[provStatus]int{}
	for _, v := range s.c.Instances().List() {
		insts[provStatus{v.Provider, string(v.Status)}]++
	}
	for k, n := range insts {
		ch <- prometheus.MustNewConstMetric(s.instances, prometheus.GaugeValue, float64(n), k.provider, k.status)
	}
	ch <- prometheus.MustNewConstMetric(s.ended, prometheus.CounterValue, float64(s.c.Instances().Ended()))
	ch <- prometheus.MustNewConstMetric(s.agents, prometheus.GaugeValue, float64(s.c.AgentStreams()))
	ch <- prometheus.MustNewConstMetric(s.position, prometheus.GaugeValue, float64(s.c.Position()))
	if s.storeStats != nil {
		commits, events := s.storeStats()
		ch <- prometheus.MustNewConstMetric(s.commits, prometheus.CounterValue, float64(commits))
		ch <- prometheus.MustNewConstMetric(s.events, prometheus.CounterValue, float64(events))
	}
}

// timedStore measures the latency of appends to the event log.
type timedStore struct {
	eventstore.Store
	m *metrics
}

func (t timedStore) Append(ctx context.Context, stream string, exp eventstore.ExpectedVersion, evs []eventstore.EventData) (eventstore.AppendResult, error) {
	start := time.Now()
	res, err := t.Store.Append(ctx, stream, exp, evs)
	t.m.appendSecs.WithLabelValues("append").Observe(time.Since(start).Seconds())
	t.m.appendReqs.Observe(1)
	return res, err
}

func (t timedStore) AppendMany(ctx context.Context, reqs []eventstore.AppendRequest) ([]eventstore.AppendOutcome, error) {
	start := time.Now()
	out, err := t.Store.AppendMany(ctx, reqs)
	t.m.appendSecs.WithLabelValues("append_many").Observe(time.Since(start).Seconds())
	t.m.appendReqs.Observe(float64(len(reqs)))
	return out, err
}

// Subscribe must subscribe the wrapped store, not the wrapper.
func (t timedStore) Subscribe(after uint64) *eventstore.Subscription { return t.Store.Subscribe(after) }

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
