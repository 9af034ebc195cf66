#pragma once

// An owned libnftables context. The daemon talks to nftables through the library (which
// sends netlink batches itself), never through the nft binary.

#include <memory>
#include <string>

#include "base/error.h"

struct nft_ctx;

namespace kiln::kilnd::net {

// One libnftables context. Not thread-safe: callers serialize (HostNetwork holds a mutex).
class NftContext {
 public:
  static Result<NftContext> Create();

  // Runs `commands` (nft syntax, may span several lines) as one transaction: all of it
  // applies or none does. Returns nft's error text on failure.
  Status Run(const std::string& commands);
  // Like Run, and returns what the commands print (for `list ...`).
  Result<std::string> Query(const std::string& commands);

 private:
  struct Deleter {
    void operator()(nft_ctx* ctx) const;
  };
  explicit NftContext(std::unique_ptr<nft_ctx, Deleter> ctx) : ctx_(std::move(ctx)) {}
  std::unique_ptr<nft_ctx, Deleter> ctx_;
};

}  // namespace kiln::kilnd::net
