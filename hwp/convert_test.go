package hwp

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/hwp/hwppb"
)

func TestNegotiate(t *testing.T) {
	got, err := Negotiate(Version{1, 3}, Version{1, 1})
	if err != nil || got != (Version{1, 1}) {
		t.Fatalf("Negotiate(1.3, 1.1) = %v, %v; want 1.1", got, err)
	}
	_, err = Negotiate(Version{1, 0}, Version{2, 0})
	if !errors.Is(err, ErrIncompatibleVersion) {
		t.Fatalf("Negotiate(1.0, 2.0) = %v, want ErrIncompatibleVersion", err)
	}
	if want := "incompatible protocol version: agent speaks HWP 2.0, server speaks HWP 1.x: upgrade the server"; err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err, want)
	}
	r := RefusedFor(err)
	if r.Code != RefuseIncompatibleVersion || r.ServerVersion != (Version{1, 0}) || !strings.Contains(r.Message, "upgrade the server") {
		t.Fatalf("RefusedFor() = %+v", r)
	}
	if ProtocolVersion.Major != hwppb.ProtocolMajor {
		t.Fatalf("ProtocolVersion = %v", ProtocolVersion)
	}
}

var t0 = time.Date(2026, 8, 22, 10, 0, 0, 123, time.UTC)

func TestAgentMessagesRoundTrip(t *testing.T) {
	ref := JobRef{JobID: "job-1", Attempt: 2}
	msgs := []AgentMessage{
		&Hello{Version: Version{1, 0}, JoinToken: "j", AgentID: "w-1", Name: "a", Labels: map[string]string{"os": "linux"},
			Capacity: Capacity{Slots: 2, CPUMillis: 2000, MemoryBytes: 1 << 30}, AgentVersion: "dev", Hostname: "h", OS: "linux", Arch: "amd64",
			Running: []RunningJob{{JobRef: ref, AckedOffset: 10, SentOffset: 20, Finished: true, StartedAt: t0}}},
		&Heartbeat{Seq: 3, Time: t0, CPUPercent: 12.5, MemoryUsedBytes: 1, MemoryTotalBytes: 2, ProcessCPUPercent: 150, ProcessRSSBytes: 5,
			FreeSlots: 1, Running: []JobRef{ref}, Draining: true},
		&JobAccepted{JobRef: ref},
		&JobRejected{JobRef: ref, Reason: RejectDraining, Message: "m"},
		&JobStarted{JobRef: ref, PID: 42, StartedAt: t0},
		&LogChunk{JobRef: ref, Seq: 9, Offset: 100, Data: []byte("\x1b[31mred")},
		&JobFinished{JobRef: ref, ExitCode: -1, Signal: "SIGKILL", Reason: FinishCancelled, Message: "m", StartedAt: t0, FinishedAt: t0.Add(time.Second),
			LogBytes: 108, LogCRC32C: 7},
		&Draining{Reason: "r"},
		&Goodbye{Reason: GoodbyeDrained, Message: "bye"},
	}
	for _, m := range msgs {
		wire, err := proto.Marshal(AgentMessageToProto(m))
		if err != nil {
			t.Fatalf("Marshal(%T) = %v", m, err)
		}
		var p hwppb.AgentMessage
		if err := proto.Unmarshal(wire, &p); err != nil {
			t.Fatal(err)
		}
		got, err := AgentMessageFromProto(&p)
		if err != nil {
			t.Fatalf("AgentMessageFromProto(%T) = %v", m, err)
		}
		if d := cmp.Diff(m, got); d != "" {
			t.Errorf("round trip %T (-want +got):\n%s", m, d)
		}
	}
}

func TestServerMessagesRoundTrip(t *testing.T) {
	ref := JobRef{JobID: "job-1", Attempt: 1}
	msgs := []ServerMessage{
		&Welcome{WorkerID: "w", Version: Version{1, 0}, HeartbeatInterval: 5 * time.Second,
			Limits:        Limits{MaxLogChunkBytes: 1 << 16, LogFlushInterval: 2 * time.Millisecond, MaxMessageBytes: 4 << 20, MaxInflightLogBytes: 1 << 20},
			IdentityToken: "id", IdentityExpiresAt: t0, Resume: []JobOffset{{JobRef: ref, Offset: 5}}, ServerVersion: "s"},
		&Refused{Code: RefuseUnauthenticated, Message: "no", ServerVersion: Version{1, 0}, RetryAfter: time.Second},
		&Assign{JobRef: ref, Script: "echo", Env: map[string]string{"A": "b"}, Secrets: map[string]string{"S": "secret-value"},
			WorkingDir: "/w", Timeout: time.Minute, CancelGrace: 10 * time.Second, Shell: []string{"/bin/bash", "-c"}},
		&Cancel{JobRef: ref, Reason: "user", Grace: time.Second},
		&Fence{JobRef: ref, Reason: "stale"},
		&Drain{Reason: "upgrade", CancelRunning: true},
		&TokenRefresh{Token: "t", ExpiresAt: t0},
		&LogAck{JobRef: ref, Offset: 99, Finished: true},
	}
	for _, m := range msgs {
		got, err := ServerMessageFromProto(ServerMessageToProto(m))
		if err != nil {
			t.Fatalf("ServerMessageFromProto(%T) = %v", m, err)
		}
		if d := cmp.Diff(m, got); d != "" {
			t.Errorf("round trip %T (-want +got):\n%s", m, d)
		}
	}
}

func TestBadAgentMessagesNameTheField(t *testing.T) {
	cases := []struct {
		m     *hwppb.AgentMessage
		field string
	}{
		{&hwppb.AgentMessage{}, "agent_message.msg"},
		{&hwppb.AgentMessage{Msg: &hwppb.AgentMessage_Hello{Hello: &hwppb.Hello{}}}, "hello.protocol_version"},
		{&hwppb.AgentMessage{Msg: &hwppb.AgentMessage_Hello{Hello: &hwppb.Hello{ProtocolVersion: &hwppb.Version{Major: 1}}}}, "hello.name"},
		{&hwppb.AgentMessage{Msg: &hwppb.AgentMessage_LogChunk{LogChunk: &hwppb.LogChunk{JobId: "j"}}}, "log_chunk.attempt"},
		{&hwppb.AgentMessage{Msg: &hwppb.AgentMessage_LogChunk{LogChunk: &hwppb.LogChunk{Attempt: 1}}}, "log_chunk.job_id"},
		{&hwppb.AgentMessage{Msg: &hwppb.AgentMessage_JobFinished{JobFinished: &hwppb.JobFinished{JobId: "j", Attempt: 1}}}, "job_finished.reason"},
		{&hwppb.AgentMessage{Msg: &hwppb.AgentMessage_Heartbeat{Heartbeat: &hwppb.Heartbeat{MemoryUsedBytes: 2, MemoryTotalBytes: 1}}}, "heartbeat.memory_used_bytes"},
	}
	for _, c := range cases {
		_, err := AgentMessageFromProto(c.m)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("AgentMessageFromProto(%v) = %v, want a FieldError for %s", c.m, err, c.field)
		}
	}
}

// FuzzAgentMessageFromProto feeds arbitrary wire bytes: never a panic, and
// whatever is accepted survives a round trip.
func FuzzAgentMessageFromProto(f *testing.F) {
	for _, m := range []AgentMessage{
		&LogChunk{JobRef: JobRef{"j", 1}, Offset: 3, Data: []byte("abc")},
		&Hello{Version: Version{1, 0}, JoinToken: "t", Name: "n", Capacity: Capacity{Slots: 1}},
		&JobFinished{JobRef: JobRef{"j", 1}, Reason: FinishExited, FinishedAt: t0},
	} {
		b, _ := proto.Marshal(AgentMessageToProto(m))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p hwppb.AgentMessage
		if proto.Unmarshal(b, &p) != nil {
			return
		}
		m, err := AgentMessageFromProto(&p)
		if err != nil {
			return
		}
		again, err := AgentMessageFromProto(AgentMessageToProto(m))
		if err != nil {
			t.Fatalf("re-decoding %v: %v", m, err)
		}
		if d := cmp.Diff(m, again); d != "" {
			t.Fatalf("round trip differs:\n%s", d)
		}
	})
}
