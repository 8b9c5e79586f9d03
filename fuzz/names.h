#pragma once
// Helpers shared by the harnesses.

#include <string>

#include "dotproxy/dns/name.h"

namespace dotproxy::fuzz {

// The same name with the case of every ASCII letter swapped: what a client may send for the name
// an upstream answered in its own spelling.
inline dns::Name flipCase(const dns::Name& n) {
  std::string text = n.toText();
  for (char& c : text) {
    if (c >= 'a' && c <= 'z') {
      c = static_cast<char>(c - 'a' + 'A');
    } else if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  auto flipped = dns::Name::fromText(text);
  return flipped ? *flipped : n;
}

}  // namespace dotproxy::fuzz
