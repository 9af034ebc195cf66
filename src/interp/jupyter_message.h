#pragma once

// The Jupyter messaging protocol (v5.3) on the wire: a message is a ZeroMQ multipart message
//   [identities..., "<IDS|MSG>", signature, header, parent_header, metadata, content, buffers...]
// whose signature is the hex HMAC-SHA256 of the four JSON frames under the connection key.

#include <openssl/types.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln::interp {

inline constexpr std::string_view kMessageDelimiter = "<IDS|MSG>";
inline constexpr std::string_view kProtocolVersion = "5.3";
// Deeper JSON from a kernel is rejected (nlohmann's dump and destructor recurse).
inline constexpr int kMaxJsonDepth = 256;

// One Jupyter message. The JSON parts are objects (possibly empty); every string in them is
// valid UTF-8, so they can always be dumped again.
struct Message {
  std::vector<std::string> identities;  // ZeroMQ routing prefix (empty on DEALER/SUB sockets)
  nlohmann::json header = nlohmann::json::object();
  nlohmann::json parent_header = nlohmann::json::object();
  nlohmann::json metadata = nlohmann::json::object();
  nlohmann::json content = nlohmann::json::object();
  std::vector<std::string> buffers;  // raw binary frames after content

  // header.msg_type / header.msg_id / parent_header.msg_id, or "" when absent or no string.
  std::string_view msg_type() const;
  std::string_view msg_id() const;
  std::string_view parent_msg_id() const;
};

// Signs and verifies messages with HMAC-SHA256 under one key (signature_scheme
// "hmac-sha256"). An empty key means no authentication: signatures are empty and any
// signature is accepted, as the protocol specifies. Immutable after construction, so it may
// be shared by the sockets of one kernel.
class MessageSigner {
 public:
  explicit MessageSigner(std::string_view key);
  MessageSigner(MessageSigner&&) noexcept;
  MessageSigner& operator=(MessageSigner&&) noexcept;
  ~MessageSigner();

  // Lower-case hex HMAC over the concatenated frames; "" with an empty key.
  std::string Sign(std::string_view header, std::string_view parent_header,
                   std::string_view metadata, std::string_view content) const;
  // Constant-time comparison of `signature` with Sign(...).
  bool Verify(std::string_view signature, std::string_view header,
              std::string_view parent_header, std::string_view metadata,
              std::string_view content) const;

 private:
  struct MacDeleter {
    void operator()(EVP_MAC_CTX* ctx) const;
  };
  bool enabled_ = false;
  // Initialised with the key once; every signature works on a duplicate.
  std::unique_ptr<EVP_MAC_CTX, MacDeleter> ctx_;
};

// A random UUID4 string ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx").
std::string NewMessageId();
// Now in UTC as ISO 8601 with microseconds: "2024-05-01T12:00:00.123456Z".
std::string IsoTimestampNow();

// A message with a fresh header (new msg_id, `session`, username "kiln", date, `msg_type`,
// version 5.3) and `content`.
Message MakeMessage(std::string_view msg_type, std::string_view session, nlohmann::json content);

// The wire frames of `message`, signed with `signer`.
std::vector<std::string> SerializeMessage(const Message& message, const MessageSigner& signer);

// SECURITY: the frames come from a kernel inside the sandbox, i.e. from the user. Parses and
// verifies them; never throws. kUnauthenticated when the signature does not match,
// kInvalidArgument for anything malformed (no delimiter, missing frames, JSON that does not
// parse or is not an object, nesting deeper than kMaxJsonDepth). Invalid UTF-8 and lone
// surrogate escapes in the JSON are replaced by U+FFFD instead of failing.
Result<Message> ParseMessage(std::vector<std::string> frames, const MessageSigner& signer);

// Parses JSON the way ParseMessage does (tolerant of bad UTF-8, depth-limited, no throw).
Result<nlohmann::json> ParseJsonTolerant(std::string_view text);

// Compact JSON; anything that is not valid UTF-8 becomes U+FFFD instead of throwing.
std::string DumpJson(const nlohmann::json& value);

}  // namespace kiln::interp
