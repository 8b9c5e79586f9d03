// Target 3: tls::DotFramer (RFC 7858 / RFC 1035 4.2.2 length-prefixed framing) fed one stream in
// arbitrary chunkings. The first byte gives how many chunk sizes follow (1..8), each size one byte
// (a zero is a zero-length feed); the rest is the stream. The messages out, and the bytes left
// buffered, must be those of one feed of the whole stream; re-framing the messages with
// appendFrame must give back the stream's consumed prefix.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "check.h"
#include "dotproxy/tls/framer.h"

namespace {

using namespace dotproxy;

std::vector<PacketBuffer> drain(tls::DotFramer& f) {
  std::vector<PacketBuffer> out;
  while (auto m = f.next()) out.push_back(std::move(*m));
  return out;
}

bool same(const PacketBuffer& a, const PacketBuffer& b) {
  return a.size() == b.size() && std::equal(a.view().begin(), a.view().end(), b.view().begin());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t n_sizes = std::min<size_t>(1 + data[0] % 8, size - 1);
  std::vector<size_t> sizes(data + 1, data + 1 + n_sizes);
  if (sizes.empty()) sizes.push_back(1);
  const WireView stream(reinterpret_cast<const std::byte*>(data) + 1 + n_sizes, size - 1 - n_sizes);

  tls::DotFramer whole;
  whole.feed(stream);
  const std::vector<PacketBuffer> expected = drain(whole);

  tls::DotFramer chunked;
  std::vector<PacketBuffer> got;
  size_t at = 0;
  for (size_t i = 0; at < stream.size(); ++i) {
    const size_t n = std::min(sizes[i % sizes.size()], stream.size() - at);
    chunked.feed(stream.subspan(at, n));
    at += n;
    for (auto& m : drain(chunked)) got.push_back(std::move(m));
    // The buffer stays bounded: what is buffered plus a compaction's slack, never the stream.
    FUZZ_CHECK(chunked.buffered() <= 2 + 65535);
    if (i > stream.size() + 8) break;  // only zero-size chunks: stop (checked below)
  }
  if (at < stream.size()) {  // every size was zero: feed the rest at once
    chunked.feed(stream.subspan(at));
    for (auto& m : drain(chunked)) got.push_back(std::move(m));
  }

  FUZZ_CHECK(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) FUZZ_CHECK(same(got[i], expected[i]));
  FUZZ_CHECK(chunked.buffered() == whole.buffered());
  FUZZ_CHECK(chunked.midMessage() == whole.midMessage());

  PacketBuffer reframed;
  for (const auto& m : expected) FUZZ_CHECK(tls::appendFrame(reframed, m).has_value());
  FUZZ_CHECK(reframed.size() + whole.buffered() == stream.size());
  FUZZ_CHECK(std::equal(reframed.view().begin(), reframed.view().end(), stream.begin()));
  return 0;
}
