// Package agentbench measures the agent end to end, for `hodei bench logs`,
// `hodei bench connect` and the Benchmark functions here.
//
//   - LogLatency: from a write into a job's PTY to a server-side log
//     subscriber, idle and while other jobs flood output, plus the flood's
//     stored throughput.
//   - ConnectLatency: from starting an agent (a process, usually) to the
//     server having registered it.
//
// Both run against a Server: Fake adapts the loopback fake server in
// agenttest; the real hodei server implements the same small interface when
// `hodei bench` wires it. Measurements use the wall clock of one host, so the
// agent, the server and the bench must run on the same machine.
//
// How a probe works: the probe job runs `cat FIFO`; the bench writes a unique
// marker line into the FIFO and notes the time, cat copies it into the PTY
// within microseconds, and the latency is the time until the subscriber
// receives the chunk that completes the marker.
package agentbench
