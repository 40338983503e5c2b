// C++ gRPC (libgrpc++ 1.51) peer for the Moonwire benchmark: bench.Echo with
// the callback API (reactors) and protoc + grpc_cpp_plugin generated code.
//
// usage: bench-cpp PORT          (listens on 127.0.0.1:PORT)
//
// Threads: the service has callback methods only, so no sync-server thread
// pool is created (a ResourceQuota with SetMaxThreads(1) caps the sync pool
// should one ever be built; it does not touch the callback path). On Linux
// grpc++ 1.51 runs callback reactions on the "callback alternative CQ", polled
// by clamp(cores / 2, 2, 16) "nexting_thread"s: 2 is the fixed minimum and
// no option lowers it. Core adds its helpers (timer manager, executor and
// resolver executor sized from the CPUs allowed: 1 each under `taskset -c 0`,
// a small EventEngine pool), mostly idle. The main thread only waits.

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/server_builder.h>

#include "bench.grpc.pb.h"

namespace {

using bench::Msg;
using grpc::CallbackServerContext;
using grpc::ServerBidiReactor;
using grpc::ServerReadReactor;
using grpc::ServerUnaryReactor;
using grpc::ServerWriteReactor;
using grpc::Status;

// Sends the request back request.n times, one write in flight at a time.
class StreamWriter final : public ServerWriteReactor<Msg> {
 public:
  explicit StreamWriter(const Msg* req) : req_(req), left_(req->n()) { Next(); }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(Status(grpc::StatusCode::UNKNOWN, "write failed"));
      return;
    }
    Next();
  }

  void OnDone() override { delete this; }

 private:
  void Next() {
    if (left_ <= 0) {
      Finish(Status::OK);
      return;
    }
    left_--;
    StartWrite(req_);
  }

  const Msg* req_;
  int64_t left_;
};

// Counts the messages; answers {n = count, payload = last payload}.
class StreamReader final : public ServerReadReactor<Msg> {
 public:
  explicit StreamReader(Msg* resp) : resp_(resp) { StartRead(&msg_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      resp_->set_n(n_);
      Finish(Status::OK);
      return;
    }
    n_++;
    resp_->mutable_payload()->swap(*msg_.mutable_payload());
    StartRead(&msg_);
  }

  void OnDone() override { delete this; }

 private:
  Msg* resp_;
  Msg msg_;
  int64_t n_ = 0;
};

// Echoes each message as it arrives: read, write it back, read the next.
class Echoer final : public ServerBidiReactor<Msg, Msg> {
 public:
  Echoer() { StartRead(&msg_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(Status::OK);
      return;
    }
    StartWrite(&msg_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(Status(grpc::StatusCode::UNKNOWN, "write failed"));
      return;
    }
    StartRead(&msg_);
  }

  void OnDone() override { delete this; }

 private:
  Msg msg_;
};

class EchoService final : public bench::Echo::CallbackService {
  ServerUnaryReactor* Unary(CallbackServerContext* ctx, const Msg* req,
                            Msg* resp) override {
    *resp = *req;
    ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(Status::OK);
    return r;
  }

  ServerWriteReactor<Msg>* ServerStream(CallbackServerContext*,
                                        const Msg* req) override {
    return new StreamWriter(req);
  }

  ServerReadReactor<Msg>* ClientStream(CallbackServerContext*,
                                       Msg* resp) override {
    return new StreamReader(resp);
  }

  ServerBidiReactor<Msg, Msg>* Bidi(CallbackServerContext*) override {
    return new Echoer();
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || std::atoi(argv[1]) <= 0) {
    std::fprintf(stderr, "usage: bench-cpp PORT\n");
    return 2;
  }
  std::string addr = std::string("127.0.0.1:") + argv[1];

  // Block SIGTERM/SIGINT in every thread (gRPC's threads inherit the mask);
  // a dedicated thread waits for them and shuts the server down.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  EchoService service;
  grpc::ResourceQuota quota("bench-cpp");
  quota.SetMaxThreads(1);

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(addr, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  builder.SetResourceQuota(quota);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "bench-cpp: cannot listen on %s\n", addr.c_str());
    return 1;
  }

  std::thread waiter([&server, &sigs] {
    int sig = 0;
    sigwait(&sigs, &sig);
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  });

  std::printf("listening on %s\n", addr.c_str());
  std::fflush(stdout);
  server->Wait();
  waiter.join();
  return 0;
}
