// Package hwppb holds the Hodei Worker Protocol: hwp.proto and the Go code
// protoc generates from it (hwp.pb.go, hwp_grpc.pb.go), committed.
//
// Do not edit the *.pb.go files: change hwp.proto and run `make generate`
// (tools/protogen.sh). `make check-generate` regenerates into a temp dir and
// fails when the committed code has drifted. The tools are pinned: Debian's
// protoc 3.21.12 and the protoc-gen-go / protoc-gen-go-grpc versions in
// go.mod's tool directives.
//
// The only hand-written code here is version.go: the protocol version both the
// agent and the server compile in. The agent imports this package and nothing
// else of the server; the server converts these types to plain Go types in
// package hwp so generated types stop at the edge.
package hwppb

//go:generate ../../tools/protogen.sh generate hwp/hwppb
