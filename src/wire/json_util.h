#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

// Typed, non-throwing access to proto3-JSON request fields. Every getter takes the
// lowerCamelCase json name and the snake_case proto name (both are accepted on the wire),
// returns nullopt when the field is absent or null, and kInvalidArgument on a wrong type.
namespace kiln::wire {

using nlohmann::json;

const json* FindField(const json& obj, std::string_view camel, std::string_view snake = {});

Result<std::optional<std::string>> GetString(const json& obj, std::string_view camel,
                                             std::string_view snake = {});
Result<std::optional<bool>> GetBool(const json& obj, std::string_view camel,
                                    std::string_view snake = {});
// Accepts a JSON number or a decimal string (int64/uint32 proto mapping).
Result<std::optional<int64_t>> GetInt(const json& obj, std::string_view camel,
                                      std::string_view snake = {});
Result<std::optional<json>> GetObject(const json& obj, std::string_view camel,
                                      std::string_view snake = {});
Result<std::optional<std::vector<std::string>>> GetStringList(const json& obj,
                                                              std::string_view camel,
                                                              std::string_view snake = {});
Result<std::optional<std::map<std::string, std::string>>> GetStringMap(
    const json& obj, std::string_view camel, std::string_view snake = {});
// proto `bytes`: base64 (standard or URL-safe, padding optional).
Result<std::optional<std::string>> GetBytes(const json& obj, std::string_view camel,
                                            std::string_view snake = {});

}  // namespace kiln::wire
