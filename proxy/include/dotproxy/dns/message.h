#pragma once
// The general message model: a full parse of any message into sections, and a builder. Used by the
// tools (dotmock, dotq), tests and fuzzers; the daemon's per-query path uses dns/query.h instead.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dotproxy/dns/name.h"
#include "dotproxy/dns/types.h"
#include "dotproxy/util/result.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy::dns {

struct Question {
  Name name;
  uint16_t type = 0;
  uint16_t klass = klass::IN;
};

struct Record {
  Name name;
  uint16_t type = 0;
  uint16_t klass = 0;
  uint32_t ttl = 0;
  size_t rdata_offset = 0;  // into the parsed message; rdata may hold compression pointers
  uint16_t rdlength = 0;
};

struct EdnsOption {
  uint16_t code = 0;
  std::vector<std::byte> data;
};

struct Edns {
  uint16_t udp_size = 0;
  uint8_t ext_rcode = 0;  // upper 8 bits of the 12-bit RCODE
  uint8_t version = 0;
  bool do_bit = false;
  std::vector<EdnsOption> options;
};

struct Message {
  Header header;
  std::vector<Question> questions;
  std::vector<Record> answer, authority, additional;  // additional excludes the OPT record
  std::optional<Edns> edns;
  // Full 12-bit RCODE (header low 4 bits + OPT extended bits).
  uint16_t rcode() const noexcept {
    return static_cast<uint16_t>(header.rcode() | (edns ? edns->ext_rcode << 4 : 0));
  }
};

// Parses a whole message. Header counts never size an allocation beyond what the message length
// allows. Two OPT records, an OPT outside the additional section or not at the root, or OPT options
// that overrun its rdata: FormErr. Bytes after the last record are ignored.
Result<Message> parseMessage(WireView wire) noexcept;

// Where parseMessage failed: the element being read ("header", "question", "answer record",
// "authority record", "additional record", "OPT record"), its index within its section and the
// offset of its first byte.
struct ParseFailure {
  Errc error = Errc::FormErr;
  const char* element = "header";
  unsigned index = 0;
  size_t offset = 0;
};
// Same, and on failure fills *failure (if given).
Result<Message> parseMessage(WireView wire, ParseFailure* failure) noexcept;

enum class Section : uint8_t { Answer, Authority, Additional };

// Builds a message field by field; names are written uncompressed. Counts are kept by the builder
// and written by finish(). Exceeding `limit` makes finish() return TooLarge.
class MessageBuilder {
 public:
  explicit MessageBuilder(PacketBuffer& out, size_t limit = kMaxMessage);
  void header(const Header& h);  // counts in h are ignored
  void question(const Name& name, uint16_t type, uint16_t klass = klass::IN);
  void record(Section s, const Name& name, uint16_t type, uint16_t klass, uint32_t ttl,
              WireView rdata);
  // OPT pseudo-record; must come last. Options are written in the given order.
  void opt(const Edns& edns);
  Result<void> finish();

 private:
  PacketBuffer& out_;
  WireWriter w_;
  size_t start_;
  uint16_t counts_[4] = {0, 0, 0, 0};
  std::optional<Errc> error_;  // set by a field that cannot be encoded (rdata over 65535 bytes)
};

// TXT rdata from text: split into character-strings of at most 255 bytes.
PacketBuffer txtRdata(std::string_view text);
// TXT rdata with one character-string per element (each cut at 255 bytes).
PacketBuffer txtRdata(std::span<const std::string> strings);

}  // namespace dotproxy::dns
