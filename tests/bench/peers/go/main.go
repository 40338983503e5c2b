// grpc-go peer for the Moonwire benchmark: bench.Echo with native handlers.
//
// Usage: bench-go PORT   (listens on 127.0.0.1:PORT)
//
// Threads: Go schedules goroutines on GOMAXPROCS OS threads. The runner sets
// GOMAXPROCS=1; when the variable is absent this server sets it to 1 itself,
// so by default one OS thread runs Go code (the runtime keeps a few mostly idle
// threads for sysmon, the netpoller and blocking syscalls). grpc-go starts one
// goroutine per connection reader and one per stream (handler).
//
// The package moonwire.dev/bench/benchpb is generated into the build dir by
// tests/bench/build.sh (protoc-gen-go APIv2 + protoc-gen-go-grpc from
// grpc-go 1.33) and compiled in GOPATH mode against Debian's /usr/share/gocode.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"google.golang.org/grpc"

	pb "moonwire.dev/bench/benchpb"
)

type echoServer struct {
	pb.UnimplementedEchoServer
}

func (echoServer) Unary(ctx context.Context, req *pb.Msg) (*pb.Msg, error) {
	return req, nil
}

func (echoServer) ServerStream(req *pb.Msg, stream pb.Echo_ServerStreamServer) error {
	for i := int64(0); i < req.GetN(); i++ {
		if err := stream.Send(req); err != nil {
			return err
		}
	}
	return nil
}

func (echoServer) ClientStream(stream pb.Echo_ClientStreamServer) error {
	var n int64
	var last []byte
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		n++
		last = msg.GetPayload()
	}
	if last == nil {
		last = []byte{}
	}
	return stream.SendAndClose(&pb.Msg{N: n, Payload: last})
}

func (echoServer) Bidi(stream pb.Echo_BidiServer) error {
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bench-go PORT")
		os.Exit(2)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	addr := "127.0.0.1:" + os.Args[1]
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-go: listen:", err)
		os.Exit(1)
	}
	s := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	pb.RegisterEchoServer(s, echoServer{})

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		done := make(chan struct{})
		go func() { s.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(1 * time.Second):
			s.Stop()
		}
	}()

	fmt.Fprintf(os.Stdout, "listening on %s\n", addr)
	os.Stdout.Sync()
	if err := s.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, "bench-go: serve:", err)
		os.Exit(1)
	}
}
