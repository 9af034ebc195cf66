#include "kilnd/net/nftables.h"

#include <nftables/libnftables.h>

#include <string_view>

namespace kiln::kilnd::net {
namespace {

// nft's messages end with a newline and may span lines; keep them readable in one Error.
std::string Trimmed(const char* text) {
  std::string out = text == nullptr ? "" : text;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

void NftContext::Deleter::operator()(nft_ctx* ctx) const { nft_ctx_free(ctx); }

Result<NftContext> NftContext::Create() {
  std::unique_ptr<nft_ctx, Deleter> ctx(nft_ctx_new(NFT_CTX_DEFAULT));
  if (!ctx) return Fail(Errc::kInternal, "nft_ctx_new failed");
  // Capture output and errors instead of letting the library print to stdout/stderr.
  if (nft_ctx_buffer_output(ctx.get()) != 0 || nft_ctx_buffer_error(ctx.get()) != 0) {
    return Fail(Errc::kInternal, "nftables: cannot buffer output");
  }
  return NftContext(std::move(ctx));
}

Status NftContext::Run(const std::string& commands) {
  KILN_TRY(Query(commands));
  return {};
}

Result<std::string> NftContext::Query(const std::string& commands) {
  int rc = nft_run_cmd_from_buffer(ctx_.get(), commands.c_str());
  // Fetching a buffer also resets it for the next command.
  std::string output = nft_ctx_get_output_buffer(ctx_.get());
  std::string error = Trimmed(nft_ctx_get_error_buffer(ctx_.get()));
  if (rc != 0) {
    if (error.empty()) error = "failed";
    return Fail(Errc::kInternal, "nftables: " + error);
  }
  return output;
}

}  // namespace kiln::kilnd::net
