#pragma once
// Presentation of a reply: dig-like text, or +short. Records go through ldns so that every RR type
// prints as DNS tools print it; the header, flags and EDNS come from the core's parse.

#include <cstddef>
#include <string>
#include <vector>

#include "client.h"
#include "options.h"

namespace dotproxy::dotq {

struct RenderContext {
  const Options& options;
  std::string command_line;                   // for the "; <<>> dotq <<>>" banner
  std::string server;                         // "127.0.0.1#53"
  std::vector<std::byte> client_cookie = {};  // the one sent (+cookie), to judge the echo
};

// The whole text to print (ends with a newline), or an error line if ldns refuses the reply.
std::expected<std::string, std::string> render(const RenderContext& ctx, const Reply& reply);

}  // namespace dotproxy::dotq
