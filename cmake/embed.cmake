# Writes OUT, a C++ source defining `std::string_view NAME()` that returns the bytes of IN, so that
# assets (the status page) are part of the binary: no files to install, no CDN.
#   cmake -DIN=file -DOUT=file.cc -DNAME=function -DNAMESPACE=ns -P embed.cmake
file(READ "${IN}" content)
string(FIND "${content}" ")dotproxy_embed\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )dotproxy_embed\"")
endif()
file(WRITE "${OUT}.tmp"
  "// Generated from ${IN} by cmake/embed.cmake; do not edit.\n"
  "#include <string_view>\n"
  "namespace ${NAMESPACE} {\n"
  "std::string_view ${NAME}() {\n"
  "  static constexpr char kBytes[] = R\"dotproxy_embed(${content})dotproxy_embed\";\n"
  "  return {kBytes, sizeof kBytes - 1};\n"
  "}\n"
  "}  // namespace ${NAMESPACE}\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
