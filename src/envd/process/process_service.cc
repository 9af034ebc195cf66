#include "envd/process/process_service.h"

#include <signal.h>

#include <algorithm>
#include <charconv>

#include "base/log.h"
#include "envd/process/exec_plan.h"
#include "wire/process.h"

namespace kiln::envd {
namespace net = boost::asio;
using http::connect::CallContext;
using http::connect::ServerStream;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

http::Task<Result<json>> Ready(Result<json> r) { co_return r; }

std::unexpected<Error> DeadlineExceeded(pid_t pid) {
  return Fail(Errc::kTimeout,
              "process " + std::to_string(pid) + ": deadline exceeded (Connect-Timeout-Ms)");
}

}  // namespace

http::Task<Status> StreamProcessEvents(const CallContext& ctx,
                                       std::shared_ptr<ManagedProcess> proc,
                                       std::shared_ptr<Subscriber> sub, ServerStream& out,
                                       bool kill_at_deadline) {
  const auto keepalive = http::connect::KeepaliveInterval(ctx.head, ProcessService::kDefaultKeepalive);
  const auto deadline = ctx.deadline;
  // A failed Send means the client is gone: only this stream ends, the process runs on.
  KILN_CO_TRY(co_await out.Send(wire::StartEventJson(static_cast<uint32_t>(proc->pid()))));
  auto last_sent = Clock::now();
  for (;;) {
    while (std::shared_ptr<const ProcessEvent> ev = sub->Pop()) {
      if (ev->end) {
        // Killed at the deadline: the client is told so, not "signal: killed".
        if (kill_at_deadline && proc->timed_out()) co_return DeadlineExceeded(proc->pid());
        co_return co_await out.Send(wire::EndEventJson(*ev->end));
      }
      KILN_CO_TRY(co_await out.Send(wire::DataEventJson(ev->kind, ev->data)));
      last_sent = Clock::now();
    }
    if (sub->overflowed()) {
      co_return Fail(Errc::kResourceExhausted,
                     "the client reads output too slowly; stream of process " +
                         std::to_string(proc->pid()) + " dropped");
    }
    auto now = Clock::now();
    if (deadline && now >= *deadline) {
      if (kill_at_deadline) (void)proc->Signal(SIGKILL);
      co_return DeadlineExceeded(proc->pid());
    }
    if (now - last_sent >= keepalive) {
      KILN_CO_TRY(co_await out.Send(wire::KeepaliveEventJson()));
      last_sent = now;
      continue;
    }
    auto until = last_sent + keepalive;
    if (deadline) until = std::min(until, *deadline);
    co_await sub->WaitUntil(until);
  }
}

ProcessService::ProcessService(net::io_context& io, AgentState& state)
    : io_(io),
      state_(state),
      reaper_(io, [this](pid_t pid, int status) { OnChildExit(pid, status); }) {}

ProcessService::~ProcessService() { table_.KillAll(); }

void ProcessService::OnChildExit(pid_t pid, int wait_status) {
  // Untracked children are orphans the agent inherited as PID 1: collected, nothing else.
  if (std::shared_ptr<ManagedProcess> proc = table_.FindUnreaped(pid)) proc->OnExit(wait_status);
}

void ProcessService::Register(http::Router& router) {
  using http::connect::AddServerStream;
  using http::connect::AddUnary;
  AddServerStream(router, "/process.Process/Start",
                  [this](const CallContext& c, const json& r, ServerStream& o) {
                    return Start(c, r, o);
                  });
  AddServerStream(router, "/process.Process/Connect",
                  [this](const CallContext& c, const json& r, ServerStream& o) {
                    return Connect(c, r, o);
                  });
  AddUnary(router, "/process.Process/List",
           [this](const CallContext&, const json&) { return Ready(List()); });
  AddUnary(router, "/process.Process/SendInput",
           [this](const CallContext&, const json& r) { return SendInput(r); });
  AddUnary(router, "/process.Process/SendSignal",
           [this](const CallContext&, const json& r) { return Ready(SendSignal(r)); });
  AddUnary(router, "/process.Process/CloseStdin",
           [this](const CallContext&, const json& r) { return Ready(CloseStdin(r)); });
  AddUnary(router, "/process.Process/Update",
           [this](const CallContext&, const json& r) { return Ready(Update(r)); });
}

Result<std::shared_ptr<ManagedProcess>> ProcessService::Launch(const CallContext& ctx,
                                                               const json& req) {
  KILN_ASSIGN_OR_RETURN(sys::UserInfo user, state_.UserForRequest(ctx.head));
  KILN_ASSIGN_OR_RETURN(wire::StartRequest start, wire::ParseStartRequest(req));
  KILN_ASSIGN_OR_RETURN(sys::SpawnSpec spawn, BuildSpawnSpec(start.process, user, state_));
  LaunchSpec spec;
  spec.config = std::move(start.process);
  spec.config.cwd = spawn.cwd;
  spec.spawn = std::move(spawn);
  spec.pty = start.pty;
  spec.stdin_pipe = start.stdin.value_or(true);
  spec.tag = std::move(start.tag);
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<ManagedProcess> proc, LaunchProcess(io_, std::move(spec)));
  // Registered before the io_context runs again, so the reaper cannot miss the exit.
  table_.Add(proc);
  if (ctx.deadline) proc->KillAt(*ctx.deadline);
  KILN_LOG(Debug, "process started", {"pid", proc->pid()}, {"user", user.name},
           {"cmd", log::Sanitize(proc->info().config.cmd)});
  return proc;
}

http::Task<Status> ProcessService::Start(const CallContext& ctx, const json& req,
                                         ServerStream& out) {
  KILN_CO_ASSIGN_OR_RETURN(std::shared_ptr<ManagedProcess> proc, Launch(ctx, req));
  std::shared_ptr<Subscriber> sub = proc->Subscribe();
  co_return co_await StreamProcessEvents(ctx, std::move(proc), std::move(sub), out,
                                         /*kill_at_deadline=*/true);
}

http::Task<Status> ProcessService::Connect(const CallContext& ctx, const json& req,
                                           ServerStream& out) {
  KILN_CO_ASSIGN_OR_RETURN(wire::ProcessSelector selector, wire::ParseSelectorField(req));
  KILN_CO_ASSIGN_OR_RETURN(std::shared_ptr<ManagedProcess> proc,
                           table_.Find(selector, /*include_exited=*/true));
  std::shared_ptr<Subscriber> sub = proc->Subscribe();
  co_return co_await StreamProcessEvents(ctx, std::move(proc), std::move(sub), out,
                                         /*kill_at_deadline=*/false);
}

Result<std::shared_ptr<ManagedProcess>> ProcessService::FindRunning(const json& req) {
  KILN_ASSIGN_OR_RETURN(wire::ProcessSelector selector, wire::ParseSelectorField(req));
  return table_.Find(selector, /*include_exited=*/false);
}

Result<json> ProcessService::List() {
  std::vector<wire::ProcessInfo> infos;
  for (const auto& proc : table_.Running()) infos.push_back(proc->info());
  return wire::ListResponseJson(infos);
}

http::Task<Result<json>> ProcessService::SendInput(const json& req) {
  KILN_CO_ASSIGN_OR_RETURN(wire::SendInputRequest in, wire::ParseSendInputRequest(req));
  KILN_CO_ASSIGN_OR_RETURN(std::shared_ptr<ManagedProcess> proc,
                           table_.Find(in.process, /*include_exited=*/false));
  KILN_CO_TRY(co_await proc->WriteInput(std::move(in.input)));
  co_return json::object();
}

Result<json> ProcessService::SendSignal(const json& req) {
  KILN_ASSIGN_OR_RETURN(wire::SendSignalRequest sig, wire::ParseSendSignalRequest(req));
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<ManagedProcess> proc,
                        table_.Find(sig.process, /*include_exited=*/false));
  KILN_TRY(proc->Signal(sig.signal));
  return json::object();
}

Result<json> ProcessService::CloseStdin(const json& req) {
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<ManagedProcess> proc, FindRunning(req));
  KILN_TRY(proc->CloseStdin());
  return json::object();
}

Result<json> ProcessService::Update(const json& req) {
  KILN_ASSIGN_OR_RETURN(wire::UpdateRequest update, wire::ParseUpdateRequest(req));
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<ManagedProcess> proc,
                        table_.Find(update.process, /*include_exited=*/false));
  if (update.pty) KILN_TRY(proc->Resize(*update.pty));
  return json::object();
}

}  // namespace kiln::envd
