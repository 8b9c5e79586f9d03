// LLVMFuzzerCustomMutator for the harnesses that take one whole DNS message (message, response);
// linked into their libFuzzer binaries only. The structure-aware mutations of message_mutator.h
// are opt-in, with DOTPROXY_FUZZ_STRUCTURED=1 in the environment: measured against libFuzzer's
// byte mutations for the same time they reached no more coverage, at a fraction of the executions
// per second (fuzz/README.md). Without it every mutation is libFuzzer's own.

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "message_mutator.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  static const bool structured = std::getenv("DOTPROXY_FUZZ_STRUCTURED") != nullptr;
  if (!structured) return LLVMFuzzerMutate(data, size, max_size);
  return dotproxy::fuzz::mutateMessage(data, size, max_size, seed, LLVMFuzzerMutate);
}
