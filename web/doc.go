// Package web is Hodei's web UI: plain HTML, CSS and JavaScript embedded in
// the binary (no npm, no CDN, no build step), served under /ui/ by Handler.
// It is a client of the REST API (package api) and nothing else:
//
//	#/jobs        jobs list, kept live by the /api/v1/events stream (SSE)
//	#/jobs/<id>   a job: its spec, live log (ANSI colours rendered) and its
//	              event timeline, with a cancel button
//	#/workers     workers with live CPU and memory (polled: telemetry is
//	              not an event)
//	#/submit      a submit form (an idempotency key per form, so a double
//	              click submits once)
//
// static/ansi.js turns a PTY byte stream into DOM nodes: SGR colours and
// styles become spans; other escape sequences are dropped; text is only ever
// inserted as text nodes, so job output cannot inject HTML. It keeps its
// state across chunks (a sequence split between two chunks still parses).
//
// The handler sends a strict Content-Security-Policy (everything from
// 'self'), so nothing is loaded from elsewhere and no inline script runs.
package web
