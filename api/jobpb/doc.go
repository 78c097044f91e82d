// Package jobpb holds the Hodei Jobs API: job.proto (service
// hodei.api.v1.JobService) and the Go code protoc generates from it
// (job.pb.go, job_grpc.pb.go), committed.
//
// Do not edit the *.pb.go files: change job.proto and run `make generate`
// (tools/protogen.sh; or `go generate ./api/jobpb`). `make check-generate`
// regenerates into a temp dir and fails when the committed code has
// drifted. The tools are pinned as for hwp/hwppb: Debian's protoc 3.21.12
// and the protoc-gen-go / protoc-gen-go-grpc versions in go.mod's tool
// directives.
//
// Generated types stop at the edge: package api converts them to and from
// domain types; the CLI (cmd/hodei) is a client of this package.
package jobpb

//go:generate ../../tools/protogen.sh generate api/jobpb
